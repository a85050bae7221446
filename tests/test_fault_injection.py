"""Fault injection (issue 20): kill `difftrade run`, `bound` and `pretrain` at several points,
truncate their files and fill the disk, then resume and compare with an uninterrupted run, bit for bit.

Every command runs as its own process (``python -m difftrade.cli.main``), as a user runs it: the CLI
splits the CPU into one jax device per core when it starts, which sets the chunks' padding, so an
interrupted run is only compared with an uninterrupted run made the same way. A kill is a real
SIGKILL, sent either by this test when a file appears in the output directory (polling), or by the
process to itself at an exact point of a write (``KILLER``: the CLI with one writer wrapped so it
leaves what a kill in the middle of that write leaves, the temporary file half written, and
dies). The full disk is simulated in this process (``OSError(ENOSPC)`` from the lowest write, after
half of the bytes), with an uninterrupted in-process run as the reference.

The subprocesses share a persistent XLA compilation cache (a module temporary directory): the
evaluator's and bound's programs compile once (cached programs give the same numbers, bit for bit);
the trainer, which reports progress through a host callback, is not cacheable and compiles in each
process, which is most of this module's time (about 4 minutes on 2 busy cores).
"""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
import xarray as xr
from conftest import tiny_raw, toml_text

from difftrade.model import checkpoint
from difftrade.model.transformer import init_params
from difftrade.results import schema as results
from difftrade.runner import experiment
from difftrade.runner.chunks import chunk_files, load_params, weights_file
from difftrade.tasks import configs

pytestmark = pytest.mark.slow

RAW = tiny_raw(run={"chunk_size": 2})  # 8 members in 4 chunks of 2: kills between and inside chunks
ONE = tiny_raw(grid={"difficulties": [1], "budgets": [32], "seeds": [0]})  # pretrain: one member
BOUND_ARGS = (
    "--bound-set",
    "train",
    "--n-bound",
    "32",
    "--sigmas",
    "0.01,0.03",
    "--prior-sigmas",
    "0.05",
    "--seeds",
    "0",
)
# what a resumed run's sessions change (the source revision too: others may commit while the tests run)
SESSION_ATTRS = (
    "wall_seconds",
    "sessions",
    "started_utc",
    "finished_utc",
    "source_revision",
    "compiled_programs",
)

# The CLI with one write wrapped: at the first such write of the process it leaves what a SIGKILL
# in the middle of (or just before) that write leaves, then kills itself. Installed after the CLI
# has set its devices, so the process trains as `python -m difftrade.cli.main` does.
KILLER = r"""
import os, signal, sys
from pathlib import Path

point, argv = sys.argv[1], sys.argv[2:]
from difftrade.cli import main as cli

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def half(path, write):
    # the writer's temporary file, written whole and cut to half its bytes, then the kill
    write(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    die()

def install():
    import numpy as np
    from difftrade.model import checkpoint
    from difftrade.results import schema as results
    save_npz, write_nc = results.atomic_save_npz, results.atomic_write_netcdf

    def npz(arrays, path):
        path = Path(path)
        if point == "npz-mid-write":  # a chunk's weights file
            half(path.with_name(f".{path.name}.tmp{os.getpid()}.npz"), lambda p: np.savez(p, **arrays))
        save_npz(arrays, path)

    def nc(ds, path):
        path = Path(path)
        chunk = path.name.startswith("chunk_")
        if chunk and point == "before-nc":  # its weights are in place, the .nc that marks the chunk done is not
            die()
        if (chunk and point == "nc-mid-write") or (path.name == "results.nc" and point == "results-mid-write"):
            half(path.with_name(f".{path.name}.tmp{os.getpid()}"), lambda p: ds.to_netcdf(p, engine=results.ENGINE))
        write_nc(ds, path)

    results.atomic_save_npz, results.atomic_write_netcdf = npz, nc
    if point == "base-before-rename":  # the base's params and base.json written, not yet renamed into place
        rename = checkpoint.os.rename
        checkpoint.os.rename = lambda src, dst: die() if Path(src).name.startswith(".base.tmp") else rename(src, dst)

prepare = cli._prepare
def _prepare(args):
    prepare(args)
    install()
cli._prepare = _prepare
sys.exit(cli.main(argv))
"""


@dataclasses.dataclass
class Reference:
    out: Path
    ds: xr.Dataset
    params: object


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The module's folder: the configs and the shared compilation cache."""
    tmp = tmp_path_factory.mktemp("faults")
    (tmp / "tiny.toml").write_text(toml_text(RAW))
    (tmp / "one.toml").write_text(toml_text(ONE))
    return tmp


def _env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(work / "xla-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def _start(work: Path, *args: str, point: str | None = None) -> tuple[subprocess.Popen, Path]:
    """``difftrade ARGS`` as a process (``point``: through ``KILLER``); (process, its log file)."""
    log = work / f"log-{time.monotonic_ns()}.txt"
    cmd = (
        [sys.executable, "-m", "difftrade.cli.main", *args]
        if point is None
        else [sys.executable, "-c", KILLER, point, *args]
    )
    with open(log, "w") as f:
        return subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, env=_env(work), cwd=work
        ), log


def cli(work: Path, *args: str, point: str | None = None, killed: bool = False) -> str:
    """Run ``difftrade ARGS`` to its end; its output. It must exit 0, or (``killed``) die by SIGKILL."""
    proc, log = _start(work, *args, point=point)
    proc.wait(timeout=600)
    text = log.read_text()
    assert proc.returncode == (-signal.SIGKILL if killed else 0), (
        f"{args} exited {proc.returncode}:\n{text[-3000:]}"
    )
    return text


def kill_when(work: Path, ready, *args: str) -> str:
    """Start ``difftrade ARGS``, SIGKILL it as soon as ``ready()`` (polled every 2 ms); its output."""
    proc, log = _start(work, *args)
    deadline = time.monotonic() + 600
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(
                f"{args} ended (rc {proc.returncode}) before the kill point:\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.002)
    proc.kill()
    assert proc.wait(timeout=60) == -signal.SIGKILL
    return log.read_text()


def _like(raw: dict) -> object:
    return init_params(configs.from_dict(raw).model, jax.random.key(0))


@pytest.fixture(scope="module")
def reference(work) -> Reference:
    """An uninterrupted `difftrade run` of the tiny grid (chunks of 2)."""
    out = work / "reference"
    cli(work, "run", "tiny.toml", "--out", str(out))
    members, params = load_params(out, _like(RAW))
    np.testing.assert_array_equal(members, np.arange(8))
    assert len(chunk_files(out)) == 4
    return Reference(out, results.load(out / "results.nc"), params)


def assert_same_run(out: Path, ref: Reference) -> None:
    """``out``'s results.nc and every member's weights equal the reference run's, bit for bit; only the
    session times differ."""
    got = results.load(out / "results.nc")
    assert sorted(got.variables) == sorted(ref.ds.variables)
    for name in ref.ds.variables:
        np.testing.assert_array_equal(got[name].values, ref.ds[name].values, err_msg=name)
    xr.testing.assert_identical(
        got.drop_attrs(), ref.ds.drop_attrs()
    )  # dims, coords and dtypes too
    strip = lambda attrs: {k: v for k, v in attrs.items() if k not in SESSION_ATTRS}
    assert strip(got.attrs) == strip(
        ref.ds.attrs
    )  # same device count, chunk size, config, versions
    members, params = load_params(out, _like(RAW))
    np.testing.assert_array_equal(
        members, np.arange(got["difficulty"].size * got["budget"].size * got["seed"].size)
    )
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref.params), strict=True):
        np.testing.assert_array_equal(a, b)


def temporaries(out: Path) -> list[str]:
    """The writers' temporary files (``.NAME.tmpPID``) left anywhere under ``out``, relative to it."""
    return sorted(str(p.relative_to(out)) for p in out.rglob(".*.tmp*"))


# ---- difftrade run: killed, then resumed ----------------------------------------------------------


def test_run_killed_at_every_stage_then_damaged_resumes_bit_for_bit(work, reference):
    """One run directory through a chain of SIGKILLs, each in a resume of the last: (1) as soon as the
    first chunk's .nc appears (polled, from outside); (2) while the next chunk's weights file is half
    written; (3) while that chunk's .nc is half written; (4) after its weights are in place, before
    its .nc; (5) while results.nc is half written, every chunk done. Then one chunk .nc is emptied,
    one cut in half and one weights file cut: (6) the last resume names and retrains those three,
    and results.nc and every member's weights equal the uninterrupted run's, bit for bit."""
    out = work / "killed"
    run = ("run", "tiny.toml", "--out", str(out))
    kill_when(work, lambda: any(out.glob("chunks/chunk_m*.nc")), *run)  # (1)
    assert not (out / "results.nc").exists()
    first = [p.name for p in chunk_files(out)]
    assert 1 <= len(first) < 4, first
    nxt = chunk_files(reference.out)[len(first)]  # the chunk (2)-(4) are killed in
    orphan = weights_file(out / "chunks" / nxt.name, "params")

    cli(work, *run, "--resume", point="npz-mid-write", killed=True)  # (2)
    assert [p.name for p in chunk_files(out)] == first and not orphan.exists()
    assert any(t.startswith(f"chunks/.{orphan.name}.tmp") for t in temporaries(out)), temporaries(
        out
    )

    cli(work, *run, "--resume", point="nc-mid-write", killed=True)  # (3)
    assert [p.name for p in chunk_files(out)] == first and orphan.exists()
    assert any(t.startswith(f"chunks/.{nxt.name}.tmp") for t in temporaries(out)), temporaries(out)

    text = cli(work, *run, "--resume", point="before-nc", killed=True)  # (4)
    assert f"discarded {orphan} (no chunk .nc beside it" in text, text
    assert [p.name for p in chunk_files(out)] == first and orphan.exists()

    text = cli(work, *run, "--resume", point="results-mid-write", killed=True)  # (5)
    assert f"discarded {orphan} (no chunk .nc beside it" in text, text
    chunks = chunk_files(out)
    assert [p.name for p in chunks] == [p.name for p in chunk_files(reference.out)]
    assert not (out / "results.nc").exists() and any(
        t.startswith(".results.nc.tmp") for t in temporaries(out)
    )

    empty, cut, weights = chunks[0], chunks[2], weights_file(chunks[3], "params")
    empty.write_bytes(b"")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    untouched = chunks[1].read_bytes(), weights_file(chunks[1], "params").read_bytes()
    text = cli(work, *run, "--resume")  # (6)
    for path in (empty, cut, chunks[3]):
        assert f"discarded {path} (" in text, text
    assert (chunks[1].read_bytes(), weights_file(chunks[1], "params").read_bytes()) == untouched
    assert_same_run(out, reference)
    assert (
        json.loads((out / "sessions.json").read_text())[-1]["members"] == 6
    )  # only the damaged chunks again
    assert temporaries(out) == [], "a resume removes the temporary files of the killed writers"


# ---- a full disk (in this process) --------------------------------------------------------------------
@pytest.fixture(scope="module")
def in_process(tmp_path_factory) -> Reference:
    """An uninterrupted in-process run (this process's device count) to compare the full-disk runs with."""
    out = tmp_path_factory.mktemp("disk") / "reference"
    ds = experiment.run(configs.from_dict(RAW), out, progress=False)
    return Reference(out, ds, load_params(out, _like(RAW))[1])


def _full_disk(monkeypatch, target: str) -> list[str]:
    """The first write of a file whose temporary name contains ``target`` stores half its bytes and
    raises ENOSPC, as a write on a full disk does; every other write (and that file's next) succeeds."""
    failed: list[str] = []

    def fail(path: object, data: bytes) -> None:
        Path(path).write_bytes(data[: len(data) // 2])
        failed.append(Path(path).name)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    def hit(path: object) -> bool:
        return target in Path(path).name and not failed

    savez, to_netcdf, write_text = np.savez, xr.Dataset.to_netcdf, Path.write_text

    def fake_savez(file, *args, **arrays):
        if not hit(file):
            return savez(file, *args, **arrays)
        buf = io.BytesIO()
        savez(buf, *args, **arrays)
        fail(file, buf.getvalue())

    def fake_to_netcdf(self, path=None, *args, **kwargs):
        if path is None or not hit(path):
            return to_netcdf(self, path, *args, **kwargs)
        fail(path, bytes(to_netcdf(self, None, *args, **kwargs)))

    def fake_write_text(self, data, *args, **kwargs):
        if not hit(self):
            return write_text(self, data, *args, **kwargs)
        fail(self, data.encode())

    monkeypatch.setattr(np, "savez", fake_savez)
    monkeypatch.setattr(xr.Dataset, "to_netcdf", fake_to_netcdf)
    monkeypatch.setattr(Path, "write_text", fake_write_text)
    return failed


@pytest.mark.parametrize(
    "target",
    [
        ".config.json.tmp",
        ".chunk_m000002-000003.params.npz.tmp",
        ".chunk_m000004-000005.nc.tmp",
        ".sessions.json.tmp",
        ".results.nc.tmp",
    ],
)
def test_a_full_disk_fails_the_write_and_the_resume_is_bit_for_bit(
    in_process, tmp_path, monkeypatch, target
):
    """ENOSPC in the config, a chunk's weights, a chunk's .nc, the sessions file or results.nc: the
    run stops with that OSError, leaves no half-written file, and a resume completes the run."""
    cfg, out = configs.from_dict(RAW), tmp_path / "run"
    failed = _full_disk(monkeypatch, target)
    with pytest.raises(OSError) as err:
        experiment.run(cfg, out, progress=False)
    assert err.value.errno == errno.ENOSPC and len(failed) == 1
    if target == ".config.json.tmp":  # refused before the first chunk: the directory goes again
        assert not out.exists()
    else:
        assert temporaries(out) == [], "a failed write removes its temporary file"
        assert not (out / "results.nc").exists()
    resumed = experiment.run(cfg, out, resume=True, progress=False)
    assert resumed is not None and len(failed) == 1
    assert_same_run(out, in_process)


# ---- difftrade bound: killed, then rerun --------------------------------------------------------------
def _bound_numbers(run: Path) -> xr.Dataset:
    return results.load(run / "bounds.nc")


def test_bound_killed_midway_keeps_its_finished_chunks_and_gives_the_same_bounds(work, reference):
    """`difftrade bound` (two chunks of members: one per budget) is SIGKILLed when its first finished
    chunk appears in bounds.partial/; the rerun loads that chunk, certifies the other and writes the
    numbers of an uninterrupted bound. A copy whose saved chunk was then truncated is recertified."""
    whole, broken = work / "bound-whole", work / "bound-killed"
    for d in (whole, broken):
        shutil.copytree(reference.out, d)
    cli(work, "bound", str(whole), *BOUND_ARGS)
    expected = _bound_numbers(whole)
    assert not (whole / "bounds.partial").exists()

    kill_when(
        work,
        lambda: any((broken / "bounds.partial").glob("*/members_*.npz")),
        "bound",
        str(broken),
        *BOUND_ARGS,
    )
    assert not (broken / "bounds.nc").exists()
    (saved,) = list((broken / "bounds.partial").glob("*/members_*.npz"))
    damaged = work / "bound-truncated"
    shutil.copytree(broken, damaged)
    cut = damaged / saved.relative_to(broken)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])

    text = cli(work, "bound", str(broken), *BOUND_ARGS)
    assert f"(resumed from {saved.parent})" in text, text  # the stored chunks of these settings
    text_damaged = cli(work, "bound", str(damaged), *BOUND_ARGS)
    assert str(cut) in text_damaged and "resumed from" not in text_damaged, text_damaged
    for run in (broken, damaged):
        got = _bound_numbers(run)
        assert sorted(got.data_vars) == sorted(expected.data_vars)
        for name in expected.data_vars:
            np.testing.assert_array_equal(
                got[name].values, expected[name].values, err_msg=f"{run.name}: {name}"
            )
        assert got.attrs == expected.attrs
        assert not (run / "bounds.partial").exists()


# ---- difftrade pretrain: killed, then rerun ----------------------------------------------------------
def test_pretrain_killed_then_rerun_completes(work):
    """`difftrade pretrain` SIGKILLed as soon as its member's chunk .nc appears (polled: it dies while
    writing results.nc or the base), then killed again after the base's params are written but before
    the base is renamed into place: the same command then completes, removes the killed save's
    temporary directory, and the base holds the trained member's weights, bit for bit."""
    out = work / "pretrain"
    args = ("pretrain", "one.toml", "--out", str(out))
    kill_when(work, lambda: any(out.glob("chunks/chunk_m*.nc")), *args)
    assert not (out / "base" / "base.json").exists()
    cli(work, *args, point="base-before-rename", killed=True)
    (stale,) = out.glob(".base.tmp*")
    assert not (out / "base").exists()
    text = cli(work, *args)
    assert f"removed {stale.resolve()} (an interrupted base checkpoint save)" in text, text
    assert "base checkpoint:" in text and not list(out.glob(".base.tmp*"))
    model = configs.from_dict(ONE).model
    base = checkpoint.load_base(out / "base", model)
    members, trained = load_params(out, _like(ONE))
    np.testing.assert_array_equal(members, [0])
    for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(trained), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b[0])
    assert (
        cli(work, *args).count("already written by this config") == 1
    )  # and a rerun leaves it alone
