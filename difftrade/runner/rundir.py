"""A run directory's config, writers and sessions: its ``config.json`` (``write_meta``, ``read_config``), one process
writes it at a time (``DirLock``), and each session that trains members is recorded with its
times, devices and source revision (``SessionLog``)."""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import jax
import xarray as xr

from difftrade.config.files import META, one_line, read_meta
from difftrade.config.logs import log
from difftrade.config.run_config import RunConfig
from difftrade.model.checkpoint import BASE_HASH, base_identity
from difftrade.results import identity, provenance
from difftrade.results import schema as results
from difftrade.tasks.configs import TASK_MODULE, from_stored, stored, task_module

LOCK = ".lock"  # flock'ed by the one process writing the directory; holds its pid
SESSIONS = "sessions.json"  # one entry per session that trained members (see SessionLog)


def write_meta(out_dir: Path, cfg: RunConfig) -> Path:
    """Write ``out_dir/config.json`` atomically: the config's canonical form, its hash and, for a
    task family from outside difftrade, the module that defines it (read back first), and for a
    fine-tuned run the identity of its base (``base_config_hash``)."""
    module, base = task_module(cfg), base_identity(cfg.run.init)
    text = json.dumps(
        {
            "config_hash": cfg.hash(),
            "config": cfg.to_dict(),
            **({TASK_MODULE: module} if module else {}),
            **({BASE_HASH: base} if base else {}),
        },
        indent=2,
        sort_keys=True,
    )
    results.atomic_write_text(text, Path(out_dir) / META)
    return Path(out_dir) / META


def read_config(run_dir: str | Path) -> RunConfig:
    """A run directory's validated config (its ``config.json``); ``ValueError`` naming the file.

    The run's identity is the hash recomputed from this config (the ``config_hash`` string beside
    it may come from an older canonical form); the run's other files must carry the same."""
    meta = read_meta(run_dir)
    return from_stored(meta["config"], str(Path(run_dir) / META), meta.get(TASK_MODULE))


def load_run(run_dir: str | Path) -> tuple[RunConfig, xr.Dataset]:
    """A finished run directory's (:class:`~difftrade.config.run_config.RunConfig`, results Dataset),
    both of one experiment; ``ValueError`` naming the directory when it lacks ``config.json`` or
    ``results.nc``, :class:`~difftrade.results.identity.ForeignFile` when ``results.nc`` is
    another experiment's."""
    run_dir = Path(run_dir)
    if not (run_dir / META).exists() or not (run_dir / "results.nc").exists():
        raise ValueError(
            f"{str(run_dir)!r} is not a finished run directory (needs {META} and results.nc)"
        )
    cfg, ds = read_config(run_dir), results.load(run_dir / "results.nc")
    identity.require(  # both recomputed from the configs the files hold
        run_dir / "results.nc",
        stored(ds, str(run_dir / "results.nc")).hash(),
        cfg.hash(),
        f" (the one its {META} describes)",
    )
    return cfg, ds


def refuse_run_output(path: Path, flag: str, writes: str) -> None:
    """``ValueError`` when writing ``path`` (given as ``flag``) would replace a file of a training
    run: ``path`` is a run directory (it holds ``config.json``) or inside one. ``writes``
    names what the command writes there."""
    path = Path(path)
    for folder in (path, *path.resolve().parents):
        if (folder / META).exists():
            raise ValueError(
                f"{flag} {str(path)!r} is inside the training run {str(folder)!r} ({META} is there), "
                f"whose files {writes} would replace; allowed: a path outside run directories"
            )


def _same_file(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is the file now at ``path``."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


class DirLock:
    """One writer per run directory: an exclusive, non-blocking ``flock`` on ``out_dir/.lock``,
    which holds the writer's pid and is removed on release. The OS releases the lock when the
    process ends, however it ends (a killed writer leaves the file, which the next one locks)."""

    def __init__(self, out_dir: Path, label: str = "--out"):
        self.out_dir, self.label, self.fd, self.created = Path(out_dir), label, None, []

    def acquire(self) -> None:
        """Take the lock (creating ``out_dir``; ``created`` lists what was made, deepest first);
        ``ValueError`` naming the directory and the holder's pid when another process holds it."""
        path = self.out_dir / LOCK
        self.created = [p for p in (path, self.out_dir, *self.out_dir.parents) if not p.exists()]
        for _ in range(100):  # a holder removes the file as it releases: then lock the new one
            fd = self._locked_fd(path)
            if _same_file(fd, path):
                break
            os.close(fd)
        else:
            raise ValueError(f"{self.label} {str(self.out_dir)!r}: {path} keeps being replaced")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def _locked_fd(self, path: Path) -> int:
        """``path`` opened (created if absent) and flock'ed; ``ValueError`` when another process holds it."""
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ValueError(
                f"{self.label} {str(self.out_dir)!r} cannot be written ({one_line(err)}); allowed: a directory "
                "this user can create and write"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ValueError(
                f"{self.label} {str(self.out_dir)!r} is being written by another difftrade process (pid {holder} "
                f"holds {path}); allowed: one writer per directory: wait for it to finish, or choose "
                f"another {self.label}"
            ) from None
        except (
            OSError
        ) as err:  # a filesystem without flock (some network mounts): run, unguarded, and say so
            log.warning(
                f"difftrade: {path} cannot be locked here ({one_line(err)}); nothing stops a second writer"
            )
        return fd

    def release(self) -> None:
        """Drop the lock and remove its file (while still holding it, so a process waiting on the
        old file sees it gone and locks a new one); a no-op when not held."""
        if self.fd is not None:
            if _same_file(self.fd, self.out_dir / LOCK):
                (self.out_dir / LOCK).unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def utc_now() -> str:
    """The current UTC time in ISO 8601, to the second (``2025-01-31T12:00:00+00:00``)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_sessions(out_dir: Path) -> list[dict[str, Any]]:
    """The sessions recorded in ``out_dir/sessions.json``; for a run written before that file,
    one entry rebuilt from its ``results.nc`` attributes; [] when neither is there or readable
    (an unreadable ``sessions.json`` is named on stderr, and rewritten after the next chunk)."""
    path = Path(out_dir) / SESSIONS
    if path.exists():
        try:
            sessions = json.loads(path.read_text())
            if isinstance(sessions, list) and all(isinstance(e, dict) for e in sessions):
                return sessions
            raise ValueError("not a list of sessions")
        except (OSError, UnicodeDecodeError, ValueError) as err:
            log.warning(
                f"difftrade: {path} is unreadable ({one_line(err)}); its sessions are not counted and it is rewritten"
            )
            return []
    try:
        attrs = (
            results.open_netcdf(Path(out_dir) / "results.nc").attrs
            if (Path(out_dir) / "results.nc").exists()
            else {}
        )
    except ValueError:
        attrs = {}
    if "wall_seconds" not in attrs or not float(attrs["wall_seconds"]) > 0:
        return []
    keys = ("chunk_size", "device_count", "device")
    return [
        {
            "start_utc": None,
            "end_utc": None,
            "wall_seconds": float(attrs["wall_seconds"]),
            "members": None,
            **{
                k: attrs[k].item() if hasattr(attrs[k], "item") else attrs[k]
                for k in keys
                if k in attrs
            },
            "revision": f"difftrade {attrs.get('version_difftrade', 'unknown')}",
            "from": "results.nc",
        }
    ]


class SessionLog:
    """The sessions of a run directory (``sessions.json``): one entry per session (a ``run`` call)
    that trained members, with UTC start and end (ISO 8601), wall seconds, members trained, chunk
    size, device and process counts, device kind and source revision. Rewritten after every chunk,
    so an interrupted session counts too; ``attrs`` gives the results file's attributes."""

    def __init__(self, out_dir: Path, chunk_size: int, enabled: bool):
        self.path, self.enabled, self.start = Path(out_dir) / SESSIONS, enabled, time.time()
        self.past = read_sessions(out_dir) if enabled else []
        self.current: dict[str, Any] = {
            "start_utc": utc_now(),
            "end_utc": None,
            "wall_seconds": 0.0,
            "members": 0,
            "chunk_size": chunk_size,
            "device_count": jax.device_count(),
            "process_count": jax.process_count(),
            "device": provenance.device_kind(),
            "revision": provenance.source_revision() if enabled else "",
        }

    def chunk_done(self, members: int, compiled: int) -> None:
        """Count a finished chunk of ``members`` in this session, with the programs this session has
        compiled so far (``compiled``), and rewrite the file."""
        if not self.enabled:
            return
        self.current.update(
            end_utc=utc_now(),
            wall_seconds=round(time.time() - self.start, 3),
            members=self.current["members"] + members,
            compiled_programs=compiled,
        )
        results.atomic_write_text(json.dumps(self.past + [self.current], indent=1), self.path)

    def sessions(self) -> list[dict[str, Any]]:
        """Every session that trained members, this one included if it did."""
        return self.past + ([self.current] if self.current["members"] else [])

    def attrs(self) -> dict[str, Any]:
        """Results attributes: ``wall_seconds`` summed over sessions (NaN if none is known),
        ``chunk_size``/``device_count`` of the last session that trained, ``device`` and
        ``source_revision`` (distinct values, ``"; "``-joined), ``started_utc``/``finished_utc``,
        ``sessions`` (the list as a JSON string) and ``compiled_programs`` (summed over sessions)."""
        sessions = self.sessions()
        last = sessions[-1] if sessions else self.current

        def distinct(key: str) -> str:
            return "; ".join(dict.fromkeys(str(s[key]) for s in sessions if s.get(key))) or str(
                self.current[key]
            )

        starts = [s["start_utc"] for s in sessions if s.get("start_utc")]
        return {
            "wall_seconds": float(sum(s["wall_seconds"] for s in sessions))
            if sessions
            else math.nan,
            "chunk_size": int(last.get("chunk_size", self.current["chunk_size"])),
            "device_count": int(last.get("device_count", self.current["device_count"])),
            "device": distinct("device"),
            "source_revision": distinct("revision"),
            "started_utc": starts[0] if starts else "unknown",
            "finished_utc": last.get("end_utc") or "unknown",
            "sessions": json.dumps(sessions),
            # programs compiled by the sessions that trained (absent when a session did not record it)
            **(
                {"compiled_programs": sum(s["compiled_programs"] for s in sessions)}
                if sessions and all("compiled_programs" in s for s in sessions)
                else {}
            ),
        }
