"""Run loop, results store, resume after an interruption, config validation, CLI."""

import dataclasses
import json

import numpy as np
import pytest
import xarray as xr
from conftest import tiny_raw, toml_text

from difftrade.cli.main import main
from difftrade.results import schema as results
from difftrade.runner import chunks, experiment
from difftrade.tasks import configs
from difftrade.train.run_task import run_task


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_cfg):
    out = tmp_path_factory.mktemp("full")
    cfg = dataclasses.replace(tiny_cfg, run=dataclasses.replace(tiny_cfg.run, chunk_size=3))
    return cfg, out, experiment.run(cfg, out, progress=False)


def test_schema_and_identity(full_run):
    cfg, out, ds = full_run
    assert dict(ds.sizes) == {"difficulty": 2, "budget": 2, "seed": 2, "level": 2, "checkpoint": 4}
    np.testing.assert_allclose(
        ds.target_risk, ds.train_risk + ds.generalization_gap + ds.extrapolation_gap, atol=1e-12
    )
    assert ds.attrs["config_hash"] == cfg.hash()
    assert json.loads(ds.attrs["config"])["task"]["name"] == "addition"
    assert "version_jax" in ds.attrs
    on_disk = results.load(out / "results.nc")
    xr.testing.assert_identical(on_disk, ds)
    assert len(list((out / "chunks").glob("chunk_*.nc"))) == 3  # 8 members in chunks of 3


class Killed(RuntimeError):
    pass


@pytest.mark.slow  # trains the grid again in two sessions
def test_resume_after_kill_equals_uninterrupted(full_run, tmp_path):
    cfg, _, ds = full_run

    seen = []

    def kill_after_first(chunk, chunk_ds):
        seen.append((chunk, chunk_ds["member"].values.tolist(), chunk_ds["train_exact"].shape))
        raise Killed("simulated kill")

    with pytest.raises(Killed):
        experiment.run(cfg, tmp_path, progress=False, on_chunk=kill_after_first)
    assert len(list((tmp_path / "chunks").glob("chunk_*.nc"))) == 1  # the finished chunk survived
    assert seen == [(0, [0, 1, 2], (3,))]  # the hook saw the first chunk's members and results
    assert not (tmp_path / "results.nc").exists()
    # resume with another chunk size: only the 5 missing members are trained
    other = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, chunk_size=5))
    resumed = experiment.run(other, tmp_path, resume=True, progress=False)
    for name in ds.data_vars:
        np.testing.assert_allclose(
            resumed[name].values, ds[name].values, rtol=1e-5, atol=1e-6, err_msg=name
        )


def test_existing_dir_needs_resume_and_same_config(full_run, tmp_path):
    cfg, out, _ = full_run
    with pytest.raises(ValueError, match="--resume"):
        experiment.run(cfg, out, progress=False)
    changed = dataclasses.replace(cfg, grid=dataclasses.replace(cfg.grid, learning_rate=1e-2))
    with pytest.raises(ValueError, match="config hash"):
        experiment.run(changed, out, resume=True, progress=False)


def test_params_saved_for_every_member(full_run, tiny_cfg):
    import jax

    from difftrade.model.transformer import init_params

    cfg, out, _ = full_run
    like = init_params(cfg.model, jax.random.key(0))
    members, params = chunks.load_params(out, like)
    np.testing.assert_array_equal(members, np.arange(8))
    assert jax.tree.leaves(params)[0].shape[0] == 8


@pytest.mark.parametrize(
    "override,match",
    [
        ({"grid": {"difficulties": [1, 5]}}, r"grid.difficulties=\[1, 5\]"),
        ({"grid": {"budgets": [0]}}, r"grid.budgets=\[0\]"),
        ({"grid": {"lerning_rate": 1e-3}}, "did you mean 'learning_rate'"),
        ({"train": {"steps": 0}}, "train.steps=0"),
        ({"task": {"name": "additon"}}, "did you mean 'addition'"),
        ({"task": {"digits": 3}}, "task option 'digits'"),
        ({"grid": {"train_distribution": "pointy"}}, "train_distribution"),
        ({"run": {"target": [0.5, 0.6]}}, "run.target"),
        ({"model": {"num_heads": 3}}, "num_heads"),
        ({"evall": {}}, "section \\[evall\\]"),
    ],
)
def test_bad_config(override, match):
    raw = tiny_raw()
    for section, values in override.items():
        raw.setdefault(section, {}).update(values)
    with pytest.raises(ValueError, match=match):
        configs.from_dict(raw)


def test_invalid_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid\nbudgets = [1")
    with pytest.raises(ValueError, match="not valid TOML"):
        configs.load(bad)


def test_cli_tasks_and_errors(capsys):
    assert main(["tasks"]) == 0
    assert "addition" in capsys.readouterr().out
    assert main(["tasks", "show", "addition", "--difficulty", "3", "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("[0]") == 1 and "<bos>" in out
    assert main(["tasks", "show", "addition", "--difficulty", "99"]) == 2
    assert "--difficulty=99" in capsys.readouterr().err


def test_cli_report_writes_figures(full_run, tmp_path, capsys):
    _, out, _ = full_run
    assert main(["report", str(out / "results.nc"), "--out", str(tmp_path)]) == 0
    for name in ("heatmap", "d_star", "gaps", "learning_curves"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000
    assert "d*(n)" in (tmp_path / "report.md").read_text()


def test_run_directory_stands_for_its_results_file(full_run, tmp_path, capsys):
    _, out, ds = full_run
    xr.testing.assert_identical(results.load(out), ds)
    assert main(["recommend", str(out), "--budget", "4", "--n-boot", "0"]) == 0
    capsys.readouterr()
    assert (
        main(["report", str(tmp_path)]) == 2
    )  # a directory with no results.nc: an error, not a traceback
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "no results.nc" in err
    assert not (tmp_path / "report.md").exists()


def test_automatic_chunking_splits_by_memory(tiny_cfg, tmp_path, monkeypatch):
    """With little device memory the grid is cut into several chunks, and results do not change."""
    from difftrade.train import chunk_sizing

    cfg = tiny_cfg
    per_member = chunk_sizing.bytes_per_member(cfg.model, cfg.train, run_task(cfg).seq_len)
    # room for 3 members at the default 50% fraction
    monkeypatch.setattr(chunk_sizing, "device_memory_bytes", lambda: int(6.5 * per_member))
    assert chunk_sizing.auto_chunk_size(cfg.model, cfg.train, run_task(cfg).seq_len, 8) == 3
    monkeypatch.setattr("difftrade.runner.experiment.auto_chunk_size", chunk_sizing.auto_chunk_size)
    ds = experiment.run(cfg, tmp_path, progress=False)
    assert len(list((tmp_path / "chunks").glob("chunk_*.nc"))) == 3
    assert np.all(np.isfinite(ds["target_risk"].values))


def test_chunk_size_too_large_for_memory_is_refused(tiny_cfg, monkeypatch):
    from difftrade.train import chunk_sizing

    monkeypatch.setattr(chunk_sizing, "device_memory_bytes", lambda: 1000)
    with pytest.raises(ValueError, match="does not fit"):
        chunk_sizing.check_chunk_fits(tiny_cfg.model, tiny_cfg.train, run_task(tiny_cfg).seq_len, 8)


@pytest.mark.parametrize(
    "cores,members,expected", [(2, 24, 2), (16, 24, 12), (64, 1, 1), (4, 7, 1), (8, None, 8)]
)
def test_cpu_device_count(cores, members, expected):
    from difftrade.train.mesh import cpu_device_count

    assert cpu_device_count(cores, members) == expected


def test_compress_splits_members_by_the_runs_grid(monkeypatch, tmp_path):
    """`difftrade compress` chooses the CPU device count from the run's config.json (no jax yet), as
    `run` does from its TOML; a directory without one leaves the count to the cores. `bound` keeps
    jax's default (one CPU device)."""
    import json

    from difftrade.cli import main as cli
    from difftrade.cli.grids import run_dir_members

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config_hash": "x", "config": tiny_raw()}))
    seen = []
    monkeypatch.setattr(cli, "one_cpu_device_per_core", seen.append)
    for argv in (["bound", str(run)], ["compress", str(run)], ["compress", str(tmp_path)]):
        cli._prepare(cli.build_parser().parse_args(argv))
    assert seen == [8, None]  # 2 difficulties x 2 budgets x 2 seeds; bound: not called
    assert run_dir_members(tmp_path / "absent") is None


@pytest.mark.slow
def test_cli_run_splits_members_over_cpu_cores(tmp_path):
    """`difftrade run` on a CPU uses one jax device per core (as many as divide the grid)."""
    import os
    import subprocess
    import sys

    from difftrade.train.mesh import cpu_device_count

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(toml_text(tiny_raw()))
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "difftrade.cli.main",
            "run",
            str(cfg),
            "--out",
            str(tmp_path / "run"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"on {cpu_device_count(os.cpu_count() or 1, 8)} device(s)" in proc.stdout, proc.stdout


def test_netcdf_write_keeps_attributes_beyond_int32(tmp_path):
    """A GPU run's peak_device_bytes (~4e10) made the final results.nc write fail (netCDF3 ints
    are int32); such attributes are stored as float64, exactly, and nothing half-written stays."""
    big = 41 * 2**30 + 12345
    ds = xr.Dataset(
        {"x": ("i", np.arange(3.0), {"count": np.int64(2**40)})},
        attrs={"peak_device_bytes": big, "chunk_size": 956},
    )
    results.atomic_write_netcdf(ds, tmp_path / "r.nc")
    back = results.open_netcdf(
        tmp_path / "r.nc"
    )  # any netCDF; results.load refuses one without difftrade variables
    assert back.attrs["peak_device_bytes"] == float(big)
    assert int(back.attrs["chunk_size"]) == 956 and back["x"].attrs["count"] == 2.0**40
    assert ds.attrs["peak_device_bytes"] == big  # the caller's dataset is unchanged
    with pytest.raises(TypeError, match="bad"):  # xarray refuses the attribute mid-write
        results.atomic_write_netcdf(xr.Dataset(attrs={"bad": object()}), tmp_path / "s.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.nc"]


def test_cli_version(capsys):
    from importlib import metadata

    from difftrade.cli.main import main

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"difftrade {metadata.version('difftrade')}"
