"""Issue 20, items 4 and 5: every file read names the file; run directories are never left blocked.

Item 4: a file that is not netCDF, netCDF from another tool, a config.json without its keys, a
truncated weights file, a header-only CSV pool and a tampered base checkpoint each give one line
naming the file (the CLI: exit code 2, no traceback). Item 5: one writer per run directory
(an flock on DIR/.lock naming the holder's pid, released when the holder dies), a resumed run's
metadata accumulates over sessions, and an interrupted base checkpoint save does not block pretrain.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import jax
import numpy as np
import pytest
import xarray as xr
from conftest import tiny_raw, toml_text

from difftrade.cli.main import main
from difftrade.config import run_config as config
from difftrade.config.model_config import ModelConfig
from difftrade.model import checkpoint
from difftrade.model.transformer import init_params
from difftrade.recommender import pool_files
from difftrade.results import schema as results
from difftrade.runner import chunks, experiment, rundir
from difftrade.tasks import configs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "runs" / "tradeoff_v1.nc"


class Trained(RuntimeError):
    """Raised by a stubbed trainer: the run got past every check into training."""


def _no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise Trained("training started")

    monkeypatch.setattr(experiment, "train_population", refuse)


def _one_error_line(capsys: pytest.CaptureFixture[str], *names: object) -> str:
    """The one ``difftrade: error:`` line on stderr, checked to name each of ``names``; no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("difftrade: error: ")]
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


def _not_netcdf(kind: str, path: Path) -> Path:
    """A results file that is not one: text, empty, or a real results.nc cut to 300 bytes or in half."""
    data = RESULTS.read_bytes()
    path.write_bytes(
        {
            "text": b"difficulty,budget\n1,2\n",
            "empty": b"",
            "head": data[:300],
            "half": data[: len(data) // 2],
        }[kind]
    )
    return path


def _run_dir(tmp_path: Path, tiny_cfg: config.RunConfig) -> Path:
    """A run directory with a valid config.json and nothing else."""
    out = tmp_path / "run"
    out.mkdir()
    (out / rundir.META).write_text(
        json.dumps({"config_hash": tiny_cfg.hash(), "config": tiny_cfg.to_dict()})
    )
    return out


# ---- item 4: every file read names the file -------------------------------------------------------
@pytest.mark.parametrize("kind", ["text", "empty", "head", "half"])
@pytest.mark.parametrize("command", ["report", "recommend", "select", "transfer"])
def test_a_file_that_is_not_netcdf_is_named_in_one_line(kind, command, tmp_path, capsys):
    bad = _not_netcdf(kind, tmp_path / "results.nc")
    scores = tmp_path / "scores.csv"
    scores.write_text("score\n" + "\n".join(map(str, range(20))) + "\n")
    argv = {
        "report": ["report", str(bad), "--out", str(tmp_path / "rep")],
        "recommend": ["recommend", str(bad), "--budget", "64"],
        "select": ["select", str(scores), "--budget", "4", "--results", str(bad)],
        "transfer": ["transfer", str(bad)],
    }[command]
    assert main(argv) == 2
    line = _one_error_line(capsys, bad)
    assert "is not a difftrade results file (not a readable netCDF3 file" in line
    assert not (tmp_path / "rep").exists()


def test_bound_names_a_results_file_that_is_not_netcdf(tiny_cfg, tmp_path, capsys):
    out = _run_dir(tmp_path, tiny_cfg)
    _not_netcdf("text", out / "results.nc")
    assert main(["bound", str(out)]) == 2
    _one_error_line(capsys, out / "results.nc", "is not a difftrade results file")


def test_netcdf_from_another_tool_names_the_file_and_the_missing_variables(tmp_path, capsys):
    foreign = tmp_path / "climate.nc"
    xr.Dataset({"temperature": (("time", "lat"), np.zeros((3, 2)))}).to_netcdf(
        foreign, engine="scipy"
    )
    for argv in (["report", str(foreign)], ["recommend", str(foreign), "--budget", "64"]):
        assert main(argv) == 2
        line = _one_error_line(
            capsys, foreign, "is not a difftrade results file", "'target_risk'", "'difficulty'"
        )
        assert "'temperature'" in line  # what it holds instead
    with pytest.raises(
        ValueError, match=r"climate\.nc is not a difftrade results file \(lacks the dims"
    ):
        results.load(foreign)


def test_report_names_the_variables_a_grid_file_lacks(tmp_path, capsys):
    """A file with difftrade's grid but not the risks report reads: the file and each variable named."""
    partial = tmp_path / "partial.nc"
    dims = ("difficulty", "budget", "seed", "level")
    xr.Dataset(
        {"level_exact": (dims, np.zeros((2, 2, 2, 2)))}, coords={d: [1, 2] for d in dims}
    ).to_netcdf(partial, engine="scipy")
    assert main(["report", str(partial), "--out", str(tmp_path / "rep")]) == 2
    _one_error_line(capsys, partial, "'target_risk'", "'generalization_gap'", "difftrade report")


def test_every_difftrade_file_still_loads():
    """results.nc of every vintage, a bounds.nc: the check refuses none of them."""
    for path in sorted((ROOT / "docs" / "runs").rglob("*.nc")):
        ds = results.load(path)
        assert results.file_kind(ds) in ("results", "bounds"), path


@pytest.mark.parametrize(
    "text,missing",
    [
        ('{"config": {}}', "['config_hash']"),
        ('{"config_hash": "abc"}', "['config']"),
        ("[1, 2]", "['config_hash', 'config']"),
        ('{"config_hash": "ab', "JSONDecodeError"),
    ],
)
def test_config_json_without_its_keys_is_named(text, missing, tmp_path, capsys, monkeypatch):
    _no_training(monkeypatch)
    path = tmp_path / "tiny.toml"
    path.write_text(toml_text(tiny_raw()))
    out = tmp_path / "run"
    (out / "chunks").mkdir(parents=True)
    (out / rundir.META).write_text(text)
    assert main(["run", str(path), "--out", str(out), "--resume"]) == 2
    _one_error_line(capsys, out / rundir.META, missing)
    assert (out / rundir.META).read_text() == text  # left as it was
    assert not (out / rundir.LOCK).exists()  # the lock file this call made is gone again
    with pytest.raises(ValueError, match=re.escape(str(out / rundir.META))):
        chunks.grid_size(out)


def test_a_truncated_params_file_outside_resume_is_named(tiny_cfg, tmp_path):
    """load_params (bound, pretrain) names a cut weights file (already so before issue 20: a guard)."""
    out = _run_dir(tmp_path, tiny_cfg)
    (out / "chunks").mkdir()
    (out / "chunks" / "chunk_m000000-000007.nc").write_bytes(b"")
    weights = out / "chunks" / "chunk_m000000-000007.params.npz"
    np.savez(weights, member=np.arange(8), leaf_000=np.zeros((8, 3)))
    weights.write_bytes(weights.read_bytes()[:60])
    with pytest.raises(
        ValueError, match=rf"^{re.escape(str(weights))} is unreadable \(.*\); allowed"
    ):
        chunks.load_params(out, None)


@pytest.mark.parametrize(
    "name,content,expected",
    [
        ("header.csv", b"score\n", "holds no scores"),
        ("blank.csv", b"score\n\n\n", "holds no scores"),
        ("latin.csv", b"score\n\xff\xfe1.0\n", "is not text"),
        ("empty.npy", None, "holds no scores"),
        ("text.npy", b"0.1 0.2 0.3\n", "is not a readable .npy array"),
    ],
)
def test_a_pool_file_without_scores_is_named(name, content, expected, tmp_path, capsys):
    path = tmp_path / name
    if content is None:
        np.save(path, np.zeros(0))
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=expected):
        pool_files.load_scores(path)
    assert main(["select", str(path), "--budget", "2", "--weights", "0.5,0.5"]) == 2
    _one_error_line(capsys, path, expected)


@pytest.fixture(scope="module")
def tampered_bases(tmp_path_factory):
    """(small model, {kind: base directory}) whose base.json says the small model but whose params are
    of a wider model ("shapes"), a deeper one ("leaves"), float16 ("dtype"), or gone ("missing")."""
    tmp = tmp_path_factory.mktemp("bases")
    small = configs.from_dict(tiny_raw()).model
    bases = {}
    for kind, params in (
        ("shapes", init_params(dataclasses.replace(small, d_model=32), jax.random.key(0))),
        ("leaves", init_params(dataclasses.replace(small, num_layers=2), jax.random.key(0))),
        (
            "dtype",
            jax.tree.map(lambda x: x.astype(np.float16), init_params(small, jax.random.key(0))),
        ),
        ("missing", init_params(small, jax.random.key(0))),
    ):
        bases[kind] = checkpoint.save_base(tmp / kind, params, small, {"config_hash": "x"})
    shutil.rmtree(bases["missing"] / "params")
    return small, bases


@pytest.mark.parametrize(
    "kind,says",
    [
        ("shapes", "is float32[32], the config's model needs float32[16]"),
        ("leaves", "holds parameters unlike the config's model (extra ['blocks.1."),
        ("dtype", "is float16[16], the config's model needs float32[16]"),
        ("missing", "has no params/ directory"),
    ],
)
def test_a_tampered_base_checkpoint_is_named_before_compiling(
    tampered_bases, kind, says, tmp_path, capsys, monkeypatch
):
    small, bases = tampered_bases
    with pytest.raises(ValueError, match=r"^base checkpoint '.*'.*; allowed") as err:
        checkpoint.load_base(bases[kind], small)
    assert (
        str(bases[kind]) in str(err.value) and says in str(err.value) and "\n" not in str(err.value)
    )
    _no_training(monkeypatch)
    path = tmp_path / "ft.toml"
    path.write_text(toml_text(tiny_raw(run={"init": str(bases[kind])})))
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    _one_error_line(capsys, bases[kind], says)
    assert not (tmp_path / "run").exists()


def test_a_base_json_that_is_not_json_is_named(tampered_bases, tmp_path):
    small, bases = tampered_bases
    broken = tmp_path / "broken"
    shutil.copytree(bases["shapes"], broken)
    (broken / "base.json").write_text('{"model": ')
    with pytest.raises(
        ValueError,
        match=rf"^{re.escape(str(broken / 'base.json'))} is not a base checkpoint's base\.json",
    ):
        checkpoint.load_base(broken, small)


# ---- item 5: directories left blocked ---------------------------------------------------------------
HOLDER = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0); os.pwrite(fd, f"{os.getpid()}\\n".encode(), 0)
    print("locked", flush=True)
    time.sleep(600)
""")


@pytest.fixture
def holder(tmp_path):
    """A run directory whose lock another process holds: (directory, that process)."""
    out = tmp_path / "run"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield out, proc
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_second_writer_is_refused_naming_the_directory_and_the_holder(
    holder, tiny_cfg, tmp_path, capsys, monkeypatch
):
    out, proc = holder
    _no_training(monkeypatch)
    for resume in (False, True):
        with pytest.raises(
            ValueError,
            match=rf"^--out '{re.escape(str(out))}' is being written by another difftrade "
            rf"process \(pid {proc.pid} ",
        ):
            experiment.run(tiny_cfg, out, resume=resume, progress=False)
    path = tmp_path / "tiny.toml"
    path.write_text(toml_text(tiny_raw()))
    assert main(["run", str(path), "--out", str(out), "--resume"]) == 2
    _one_error_line(capsys, out, f"pid {proc.pid}")
    assert sorted(p.name for p in out.iterdir()) == [
        ".lock"
    ]  # nothing written beside the holder's lock


def test_the_lock_is_released_when_its_holder_is_killed(holder, tiny_cfg, monkeypatch):
    out, proc = holder
    lock = rundir.DirLock(out)
    with pytest.raises(ValueError, match=f"pid {proc.pid}"):
        lock.acquire()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    lock.acquire()  # the OS dropped the dead holder's lock
    assert (out / ".lock").read_text().strip() == str(os.getpid())
    lock.release()
    _no_training(monkeypatch)
    with pytest.raises(Trained):  # a run gets past the lock into training
        experiment.run(tiny_cfg, out, resume=True, progress=False)


def test_a_refused_run_leaves_a_new_directory_as_it_was(tiny_cfg, tmp_path, monkeypatch):
    """The lock file and directories a run made go again when it stops before its first chunk."""
    _no_training(monkeypatch)
    out = tmp_path / "a" / "b"
    with pytest.raises(Trained):
        experiment.run(tiny_cfg, out, progress=False)
    assert not (tmp_path / "a").exists()


def _short_cfg() -> config.RunConfig:
    """The tiny grid at 8 steps with one seed per device: ``4 x jax.device_count()`` members (an earlier
    `difftrade run` in this process may have split the CPU into one device per core)."""
    raw = tiny_raw(
        grid={"seeds": list(range(jax.device_count()))},
        train={"steps": 8, "warmup_steps": 2, "num_checkpoints": 2},
        eval={"n_test": 16, "n_train_eval": 8, "batch_size": 8},
    )
    return configs.from_dict(raw)


@pytest.fixture(scope="module")
def two_sessions(tmp_path_factory):
    """A run of 4 members per device (8 steps) trained in two sessions: half of them in chunks of one
    per device (interrupted after 2 chunks), then the other half in one chunk; while the second session
    ran, a second DirLock was refused. (cfg, run directory, results)."""
    cfg, dc = _short_cfg(), jax.device_count()
    out = tmp_path_factory.mktemp("sessions") / "run"
    first = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, chunk_size=dc))
    assert experiment.run(first, out, progress=False, stop_after_chunks=2) is None
    refusals = []

    def try_second_writer(chunk: int, ds: xr.Dataset) -> None:
        try:
            rundir.DirLock(out).acquire()
        except ValueError as err:
            refusals.append(str(err))

    second = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, chunk_size=2 * dc))
    ds = experiment.run(second, out, resume=True, progress=False, on_chunk=try_second_writer)
    assert len(refusals) == 1 and f"pid {os.getpid()}" in refusals[0], (
        refusals
    )  # held while training
    return second, out, ds


def _utc(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    assert when.utcoffset().total_seconds() == 0, text
    return when


@pytest.mark.slow  # shares a two-session training fixture (~25 s)
def test_resumed_metadata_accumulates_over_sessions(two_sessions):
    _, out, ds = two_sessions
    sessions = json.loads(ds.attrs["sessions"])
    dc = jax.device_count()
    assert [s["members"] for s in sessions] == [2 * dc, 2 * dc]
    assert [s["chunk_size"] for s in sessions] == [dc, 2 * dc]
    assert [s["device_count"] for s in sessions] == [dc] * 2
    assert all(s["wall_seconds"] > 0 for s in sessions)
    assert ds.attrs["wall_seconds"] == pytest.approx(sum(s["wall_seconds"] for s in sessions))
    assert (int(ds.attrs["chunk_size"]), int(ds.attrs["device_count"])) == (2 * dc, dc)
    start, end = _utc(ds.attrs["started_utc"]), _utc(ds.attrs["finished_utc"])
    assert (
        ds.attrs["started_utc"] == sessions[0]["start_utc"]
        and ds.attrs["finished_utc"] == sessions[1]["end_utc"]
    )
    assert start <= _utc(sessions[0]["end_utc"]) <= _utc(sessions[1]["start_utc"]) <= end
    assert json.loads((out / rundir.SESSIONS).read_text()) == sessions
    on_disk = results.load(out / "results.nc")
    assert on_disk.attrs["sessions"] == ds.attrs["sessions"]


@pytest.mark.slow  # shares a two-session training fixture (~25 s)
def test_the_source_revision_is_recorded(two_sessions):
    _, _, ds = two_sessions
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=ROOT / "difftrade",
        capture_output=True,
        text=True,
        check=False,
    )
    if head.returncode == 0:
        assert ds.attrs["source_revision"].removesuffix("+dirty") == head.stdout.strip()
    else:
        assert ds.attrs["source_revision"].startswith("difftrade ")


@pytest.mark.slow  # shares a two-session training fixture (~25 s)
def test_rerunning_a_finished_run_keeps_its_metadata(two_sessions, tmp_path):
    """Re-running a finished run (results.nc there, or deleted) trains nothing and changes no metadata:
    the wall time stays the sessions' sum, not 0 s, and chunk size and devices stay those that trained."""
    cfg, run, ds = two_sessions
    out = tmp_path / "run"
    shutil.copytree(run, out)
    keys = (
        "wall_seconds",
        "sessions",
        "started_utc",
        "finished_utc",
        "chunk_size",
        "device_count",
        "device",
        "source_revision",
    )
    other = dataclasses.replace(
        cfg, run=dataclasses.replace(cfg.run, chunk_size=4 * jax.device_count())
    )
    for delete in (False, True):
        if delete:
            (out / "results.nc").unlink()
        again = experiment.run(other, out, resume=True, progress=False)
        for key in keys:
            assert again.attrs[key] == ds.attrs[key], key


@pytest.mark.slow  # shares a two-session training fixture (~25 s)
def test_a_run_from_before_the_sessions_file_keeps_its_wall_time(two_sessions, tmp_path):
    """A finished run without sessions.json (written before it existed): its results.nc's wall time,
    chunk size and device are kept as one session when it is re-run."""
    cfg, run, ds = two_sessions
    out = tmp_path / "run"
    shutil.copytree(run, out)
    (out / rundir.SESSIONS).unlink()
    again = experiment.run(cfg, out, resume=True, progress=False)
    (only,) = json.loads(again.attrs["sessions"])
    assert only["from"] == "results.nc" and again.attrs["wall_seconds"] == pytest.approx(
        ds.attrs["wall_seconds"]
    )
    assert int(again.attrs["chunk_size"]) == 2 * jax.device_count()


def _params(model: ModelConfig) -> object:
    return init_params(model, jax.random.key(0))


def test_an_interrupted_base_save_leaves_no_base_and_is_cleared(tmp_path, monkeypatch):
    """A save killed mid-write leaves only a temporary sibling, which the next save removes."""
    small = configs.from_dict(tiny_raw()).model
    target = tmp_path / "base"
    real_rename = os.rename

    def killed(src: object, dst: object) -> None:
        raise KeyboardInterrupt  # the kill arrives between the params and the rename

    monkeypatch.setattr(checkpoint.os, "rename", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_base(target, _params(small), small, {"config_hash": "x"})
    monkeypatch.setattr(checkpoint.os, "rename", real_rename)
    assert not target.exists() and not list(
        tmp_path.iterdir()
    )  # the temporary directory is gone too
    stale = tmp_path / ".base.tmp999999999"  # a killed process's temporary directory (no such pid)
    (stale / "params").mkdir(parents=True)
    checkpoint.save_base(target, _params(small), small, {"config_hash": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]
    jax.tree.map(np.testing.assert_array_equal, checkpoint.load_base(target, small), _params(small))


def test_an_incomplete_base_is_replaced_naming_what_was_removed(tmp_path, capsys):
    """A base directory without base.json (a save killed before it was written) no longer blocks
    pretrain: the next save removes it with a line on stderr; a complete base is still refused."""
    small = configs.from_dict(tiny_raw()).model
    target = tmp_path / "base"
    (target / "params" / "d").mkdir(parents=True)
    (target / "params" / "d" / "junk").write_bytes(b"\0" * 10)
    checkpoint.save_base(target, _params(small), small, {"config_hash": "x"})
    err = capsys.readouterr().err
    assert f"removed {target} (an incomplete base checkpoint: no base.json" in err
    assert (target / "base.json").exists()
    with pytest.raises(ValueError, match="already exists"):
        checkpoint.save_base(target, _params(small), small, {"config_hash": "x"})


@pytest.mark.slow
def test_pretrain_after_an_interrupted_save(tmp_path, capsys):
    """`difftrade pretrain` into a directory whose base/ a kill left without base.json writes the base."""
    raw = tiny_raw(grid={"difficulties": [1], "budgets": [32], "seeds": [0]})
    path = tmp_path / "one.toml"
    path.write_text(toml_text(raw))
    out = tmp_path / "pre"
    (out / "base" / "params").mkdir(parents=True)
    assert main(["pretrain", str(path), "--out", str(out)]) == 0
    assert f"removed {out.resolve() / 'base'}" in capsys.readouterr().err
    assert (out / "base" / "base.json").exists()


def test_an_os_error_is_one_line_naming_the_file(monkeypatch, capsys):
    """A full disk (or any OSError) in a command: exit 1 with one line naming the file, no traceback."""
    import errno

    from difftrade.cli import main as cli

    def full_disk(args):
        raise OSError(
            errno.ENOSPC, "No space left on device", "/runs/x/chunks/chunk_m000000-000007.nc"
        )

    parser = cli.build_parser()
    args = parser.parse_args(["report", "somewhere"])
    args.handler = full_disk
    monkeypatch.setattr(
        cli, "build_parser", lambda: type("P", (), {"parse_args": lambda self, argv: args})()
    )
    assert cli.main(["report", "somewhere"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "No space left on device" in err[0]
        and "chunk_m000000-000007.nc" in err[0]
    )


def test_a_released_lock_leaves_no_file_and_a_waiter_locks_a_fresh_one(tmp_path):
    """Release removes .lock while holding it; a second lock that opened the old file before the
    release finds it gone and locks the new file, so two writers never hold the directory."""
    out = tmp_path / "run"
    first = rundir.DirLock(out)
    first.acquire()
    stale = os.open(out / ".lock", os.O_RDWR)  # a waiter that opened the file before the release
    first.release()
    assert not (out / ".lock").exists()
    with rundir.DirLock(out) as second:
        assert (out / ".lock").read_text().strip() == str(os.getpid())
        assert not rundir._same_file(stale, out / ".lock")  # the waiter's file is not the lock
        with pytest.raises(ValueError, match="is being written by another difftrade process"):
            rundir.DirLock(out).acquire()  # flock is per open file: this open is another writer
    assert second.fd is None and not (out / ".lock").exists()
    os.close(stale)


def test_report_into_a_directory_another_process_writes_is_refused(holder, capsys):
    out, proc = holder
    results = Path(__file__).resolve().parents[1] / "docs/runs/study/addition_epochs.nc"
    assert main(["report", str(results), "--out", str(out)]) == 2
    _one_error_line(capsys, out, f"pid {proc.pid}")
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written beside it
