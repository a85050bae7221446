"""`difftrade run --tensorboard`: event files written by hand, read back by TensorBoard itself."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_raw, toml_text
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

from difftrade.cli.main import main
from difftrade.results import schema as results
from difftrade.results import tfevents


def read(logdir) -> EventAccumulator:
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    return acc


def test_checksums_match_tensorboards_own():
    assert tfevents.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    rng = np.random.default_rng(0)
    for size in (0, 1, 8, 100, 4097):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert tfevents.masked_crc(data) == masked_crc32c(data)


def test_tensorboard_reads_every_scalar_back(tmp_path):
    writer = tfevents.EventWriter(tmp_path)
    points = {"a/x": [(1, 0.5), (7, -2.25)], "b/y_z": [(300, 1e-8), (2**40, 3.0)]}
    for tag, series in points.items():
        for step, value in series:
            writer.add_scalar(tag, value, step)
    writer.close()
    acc = read(tmp_path)
    assert sorted(acc.Tags()["scalars"]) == sorted(points)
    for tag, series in points.items():
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert got == [(s, float(np.float32(v))) for s, v in series]


@pytest.mark.slow  # trains a tiny grid
def test_a_run_streams_every_members_curves(tmp_path):
    raw = tiny_raw(train={"steps": 40, "num_checkpoints": 4})
    (tmp_path / "tiny.toml").write_text(toml_text(raw))
    out, logdir = tmp_path / "run", tmp_path / "tb"
    argv = ["run", str(tmp_path / "tiny.toml"), "--out", str(out), "--tensorboard", str(logdir)]
    assert main(argv) == 0
    ds, acc = results.load(out / "results.nc"), read(logdir)
    for d in ds["difficulty"].values:
        for n in ds["budget"].values:
            for s in ds["seed"].values:
                name, cell = f"d{d}_n{n}_s{s}", ds.sel(difficulty=d, budget=n, seed=s)
                loss = acc.Scalars(f"train_loss/{name}")
                assert [e.step for e in loss] == [10, 20, 30, 40]
                np.testing.assert_allclose(
                    [e.value for e in loss], cell["loss_curve"].values, rtol=1e-6
                )
                (last,) = acc.Scalars(f"level_exact/L2/{name}")
                assert last.step == 40
                assert last.value == pytest.approx(float(cell["level_exact"].sel(level=2)))
