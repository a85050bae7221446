"""Run a config end to end: chunks of members -> train -> evaluate -> chunk files -> results.nc.

Every finished chunk is on disk before the next one starts, so a run that is interrupted or
fails loses at most the chunk in flight; ``resume=True`` skips the members already on disk
(whatever chunk size they were run with) and refuses a directory whose config hash differs.

A chunk is named by the members it holds, ``chunks/chunk_m{first:06d}-{last:06d}.nc`` with its
weights beside it (``.params.npz``; ``.prior.npz`` for runs with ``train.prefix_steps > 0``;
``.coords.npz``, each member's subspace coordinates, for runs with ``[subspace]``), so no chunk's
name can be another's. The member ids stored inside the files are what counts: a resume opens
and checks every chunk, moves a chunk that fails a check aside (``*.discarded``, with a line on
stderr naming it and why) and retrains its members, and removes the temporary
files (``.NAME.tmpPID``) of writes that a kill interrupted. Count-named chunks
(``chunk_00000.nc``) are read by their stored ids.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from difftrade import data, results
from difftrade.checkpoint import _pid_alive, load_base
from difftrade.config import RunConfig
from difftrade.evaluate import evaluate_population
from difftrade.multihost import broadcast, is_main, to_host
from difftrade.rundir import DirLock, SessionLog, one_line
from difftrade.tasks import Task
from difftrade.train import (
    SEGMENT_LISTENERS,
    Population,
    auto_chunk_size,
    check_chunk_fits,
    member_data_root,
    padded_index,
    train_population,
    view_of,
)

META = "config.json"


class Progress:
    """Progress with ETA on stderr: a line redrawn in place on a terminal, plain lines (at most one
    per ``LOG_EVERY`` seconds, and one per chunk) otherwise. It moves within a chunk through
    :data:`difftrade.train.SEGMENT_LISTENERS` (``segment``), and by whole members per chunk (``update``)."""

    LOG_EVERY = 30.0
    REDRAW_EVERY = 0.5

    def __init__(self, total_members: int, enabled: bool = True, segments_per_member: int = 1):
        self.total, self.done, self.enabled, self.start = total_members, 0, enabled, time.time()
        self.per_member, self.partial, self.chunk, self.shown = segments_per_member, 0, 0, 0.0
        self.tty = sys.stderr.isatty()

    def begin_chunk(self, members: int) -> None:
        """A chunk of ``members`` starts (its padding copies are not counted)."""
        self.chunk, self.partial = members, 0

    def segment(self, count: int) -> None:
        """``count`` member-segments finished inside the running chunk (a host callback)."""
        self.partial += count
        now = time.time()
        if now - self.shown >= (self.REDRAW_EVERY if self.tty else self.LOG_EVERY):
            self._show(self.done + min(self.chunk, self.partial / self.per_member), "")

    def update(self, members: int, note: str = "") -> None:
        """A chunk of ``members`` finished."""
        self.done += members
        self.partial = self.chunk = 0
        self._show(self.done, note)

    def _show(self, done: float, note: str) -> None:
        if not self.enabled:
            return
        self.shown = time.time()
        elapsed = self.shown - self.start
        eta = f"{elapsed / done * (self.total - done):5.0f}s" if done else "    ?"  # unknown before any progress
        bar = "#" * int(30 * done / self.total)
        line = f"[{bar:<30}] {done:.0f}/{self.total} members  {elapsed:6.0f}s elapsed  ETA {eta} {note}".rstrip()
        end = "\n" if not self.tty or done >= self.total else ""
        sys.stderr.write(("\r" + line + "   " if self.tty else line) + end)
        sys.stderr.flush()


def read_meta(out_dir: Path) -> dict[str, Any]:
    """A run directory's ``config.json``: ``{"config_hash": str, "config": dict}``.

    ``ValueError`` naming the file when it is unreadable, not JSON, or lacks either key.
    """
    meta = Path(out_dir) / META
    allowed = (f"allowed: the {META} that difftrade run wrote (restore it, or move {str(out_dir)!r} aside and run "
               "again)")
    try:
        old = json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{meta} is not a difftrade run's {META} ({one_line(err)}); {allowed}") from None
    missing = [k for k in ("config_hash", "config") if not isinstance(old, dict) or k not in old]
    if missing:
        raise ValueError(f"{meta} lacks the keys {missing}; {allowed}")
    return old


def prepare_dir(cfg: RunConfig, out_dir: Path, resume: bool) -> list[Path]:
    """Create the run directory or check that it belongs to this config (resume).

    Returns what it created, deepest first: ``config.json``, ``chunks/`` and every directory
    above it that did not exist ([] for a directory that already holds a run), for
    :func:`undo_prepare`.
    """
    meta = out_dir / META
    created: list[Path] = []
    if meta.exists():
        old = read_meta(out_dir)
        if not resume:
            raise ValueError(
                f"--out {str(out_dir)!r} already holds a run (config hash {old['config_hash']}); "
                "pass --resume to continue it or choose another --out"
            )
        if old["config_hash"] != cfg.hash():
            raise ValueError(
                f"cannot resume {str(out_dir)!r}: its config hash is {old['config_hash']} but this config's is "
                f"{cfg.hash()}; the configs differ (compare {META}), so results would mix two experiments"
            )
    else:
        chunks = out_dir / "chunks"
        created = [p for p in (chunks, *chunks.parents) if not p.exists()]
        chunks.mkdir(parents=True, exist_ok=True)
        try:
            results.atomic_write_text(json.dumps({"config_hash": cfg.hash(), "config": cfg.to_dict()}, indent=2), meta)
        except BaseException:  # a failed write (a full disk): leave no empty chunks/ behind
            undo_prepare(created)
            raise
        created.insert(0, meta)
    return created


def undo_prepare(created: list[Path]) -> None:
    """Remove what :func:`prepare_dir` created (deepest first), so a run refused before its first
    chunk leaves the directory as it found it; a directory that is no longer empty is kept."""
    for path in created:
        if path.is_dir():
            if not any(path.iterdir()):
                path.rmdir()
        else:
            path.unlink(missing_ok=True)


CHUNK_NAME = re.compile(r"chunk_m(\d+)-(\d+)\.nc")
CHUNK_VARIABLES = ("train_exact", "train_ce", "level_exact", "level_ce", "loss_curve", "accuracy_curve", "nonfinite_steps")


def chunk_stem(chunks_dir: Path, members: np.ndarray) -> Path:
    """``chunks_dir/chunk_m{first:06d}-{last:06d}`` for a chunk holding ``members [m]`` (ascending ids)."""
    return chunks_dir / f"chunk_m{int(members[0]):06d}-{int(members[-1]):06d}"


def chunk_files(out_dir: Path) -> list[Path]:
    """The chunk result files of a run directory, sorted by name (``chunk_*.nc``, any naming)."""
    return sorted((Path(out_dir) / "chunks").glob("chunk_*.nc"))


WEIGHT_KINDS = ("params", "prior", "coords")


def weight_kinds(cfg: RunConfig) -> tuple[str, ...]:
    """The weights files each chunk of ``cfg`` has: ``params``, ``prior`` (``train.prefix_steps > 0``),
    ``coords`` (``[subspace]`` on: each member's coordinates ``z [D]``)."""
    return ("params",) + ("prior",) * bool(cfg.train.prefix_steps) + ("coords",) * cfg.subspace.enabled


def weights_file(chunk: Path, kind: str) -> Path:
    """The weights file of a chunk file ``chunk_X.nc``: ``chunk_X.{kind}.npz`` (kind one of ``WEIGHT_KINDS``)."""
    return chunk.with_name(f"{chunk.name.removesuffix('.nc')}.{kind}.npz")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read in full; ``ValueError`` naming the file if it is absent or unreadable."""
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except Exception as err:  # noqa: BLE001 - a damaged zip raises zipfile, zlib, OS, Value or EOF errors
        raise ValueError(f"{path} is unreadable ({one_line(err)})") from None


def npz_members(arrays: dict[str, np.ndarray], path: Path) -> np.ndarray:
    """The ``member [m]`` ids of a weights file and a check that every leaf has leading axis ``m``."""
    if "member" not in arrays:
        raise ValueError(f"{path} has no 'member' array; allowed: a chunk weights file written by difftrade run")
    ids = np.asarray(arrays["member"]).astype(np.int64).ravel()
    for key, leaf in arrays.items():
        if key != "member" and (leaf.ndim == 0 or leaf.shape[0] != ids.shape[0]):
            raise ValueError(f"{path}: {key} has shape {leaf.shape} for {ids.shape[0]} members; allowed: leading axis {ids.shape[0]}")
    return ids


def check_chunk(path: Path, num_members: int, kinds: tuple[str, ...]) -> xr.Dataset:
    """Open one chunk file and check it; returns its dataset (dim ``member [m]``).

    Checks: readable with every per-member variable; ``member`` ids distinct, in ``[0, num_members)``
    and (for a ``chunk_m{first}-{last}.nc`` name) spanning exactly ``first..last``; each weights file
    of ``kinds`` present, readable and holding the same ids. Raises ``ValueError`` saying what failed.
    """
    try:
        ds = results.load(path)
    except Exception as err:  # noqa: BLE001 - scipy's netCDF reader raises many types on a damaged file
        raise ValueError(f"unreadable ({one_line(err)})") from None
    missing = [v for v in ("member", *CHUNK_VARIABLES) if v not in ds.variables or ds[v].dims[:1] != ("member",)]
    if missing:
        raise ValueError(f"lacks the per-member variables {missing}")
    ids = np.asarray(ds["member"].values).astype(np.int64)
    if ids.size == 0 or len(np.unique(ids)) != ids.size:
        raise ValueError(f"member ids {ids.tolist()} are empty or repeated")
    if ids.min() < 0 or ids.max() >= num_members:
        raise ValueError(f"member ids {ids.tolist()} are outside the grid's 0..{num_members - 1}")
    named = CHUNK_NAME.fullmatch(path.name)
    if named and (int(named[1]), int(named[2])) != (int(ids.min()), int(ids.max())):
        raise ValueError(f"its name says members {int(named[1])}..{int(named[2])} but it holds {ids.tolist()}")
    for kind in kinds:
        stored = npz_members(read_npz(weights_file(path, kind)), weights_file(path, kind))
        if not np.array_equal(stored, ids):
            raise ValueError(f"{weights_file(path, kind).name} holds members {stored.tolist()}, the chunk {ids.tolist()}")
    return ds


def discard(path: Path, reason: str) -> None:
    """Move a chunk file and its weights files aside (``*.discarded``) with one line on stderr naming it and why."""
    moved = [path] + [weights_file(path, k) for k in WEIGHT_KINDS if path.suffix == ".nc"]
    for p in moved:
        if p.exists():
            target, k = p.with_name(p.name + ".discarded"), 1
            while target.exists():
                target, k = p.with_name(f"{p.name}.discarded{k}"), k + 1
            os.replace(p, target)
    print(f"difftrade: discarded {path} ({reason}); moved aside as *.discarded, its members are retrained",
          file=sys.stderr, flush=True)


def finished_members(out_dir: Path, num_members: int, kinds: tuple[str, ...] = ("params",)) -> tuple[list[xr.Dataset], set[int]]:
    """Chunk datasets on disk that pass :func:`check_chunk`, and the member indices they cover.

    A chunk that fails a check, or repeats a member of a chunk kept before it (name order), and
    a weights file with no chunk file beside it, are moved aside by :func:`discard`.
    """
    chunks, done, owner = [], set(), {}
    for path in chunk_files(out_dir):
        try:
            ds = check_chunk(path, num_members, kinds)
        except ValueError as err:
            discard(path, str(err))
            continue
        ids = [int(m) for m in ds["member"].values]
        shared = sorted(set(ids) & done)
        if shared:
            discard(path, f"members {shared} are also in {owner[shared[0]]}, which is kept")
            continue
        chunks.append(ds)
        done.update(ids)
        owner.update({m: path.name for m in ids})
    for kind in WEIGHT_KINDS:
        for path in sorted((Path(out_dir) / "chunks").glob(f"chunk_*.{kind}.npz")):
            if not path.with_name(path.name.removesuffix(f".{kind}.npz") + ".nc").exists():
                discard(path, "no chunk .nc beside it: its chunk did not finish")
    return chunks, done


TEMPORARY = re.compile(r"\..+\.tmp(\d+)(\.npz)?")  # the atomic writers' temporary files: .NAME.tmpPID[.npz]


def clear_temporaries(out_dir: Path) -> None:
    """Remove the temporary files that killed writers left in ``out_dir`` and its ``chunks/`` (a chunk's
    weights can be large), those of processes that no longer run, with a line on stderr naming each."""
    for folder in (Path(out_dir), Path(out_dir) / "chunks"):
        for path in sorted(folder.glob(".*.tmp*")):
            named = TEMPORARY.fullmatch(path.name)
            if named and path.is_file() and not _pid_alive(int(named[1])):
                path.unlink()
                print(f"difftrade: removed {path} (the temporary file of an interrupted write)", file=sys.stderr, flush=True)


def plan(
    cfg: RunConfig, out_dir: Path, resume: bool, num_members: int, lock: DirLock | None = None
) -> tuple[list[xr.Dataset], np.ndarray, list[Path]]:
    """Prepare ``out_dir`` and find the finished members: (chunks on disk, done bool ``[M]``,
    the paths :func:`prepare_dir` and ``lock`` created).

    Process 0 alone takes ``lock`` (held on return; the caller releases it), reads and writes
    the directory; every process receives the done mask. A refusal (directory in use, wrong
    directory, config mismatch) is raised on every process.
    """
    chunks: list[xr.Dataset] = []
    done = np.zeros(num_members, np.int32)
    created: list[Path] = []
    refused: ValueError | None = None
    if is_main():
        try:
            if lock is not None:
                lock.acquire()
                created = lock.created
            created = prepare_dir(cfg, out_dir, resume) + created
            kinds = weight_kinds(cfg)
            chunks, members = finished_members(out_dir, num_members, kinds)
            clear_temporaries(out_dir)
            done[list(members)] = 1
        except ValueError as err:
            refused = err
        except BaseException:  # a failed write or read (a full disk): as a refusal, but raised as it is
            undo_prepare(created)
            if lock is not None:
                lock.release()  # else this process would refuse its own next run of out_dir
            raise
    flags = broadcast(np.concatenate([[int(refused is None)], done]).astype(np.int32))
    if refused is not None:
        undo_prepare(created)
        if lock is not None:
            lock.release()
        raise refused
    if not flags[0]:
        raise ValueError(f"process 0 refused --out {str(out_dir)!r} (its error says why); nothing was trained")
    return chunks, flags[1:].astype(bool), created


def run(
    cfg: RunConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    stop_after_chunks: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> xr.Dataset | None:
    """Train and evaluate the whole grid of ``cfg`` into ``out_dir``; returns the results.

    ``stop_after_chunks`` (tests) stops early, as an interrupted run would, returning None.
    Under ``jax.distributed`` every process calls this with the same config and the member
    axis of each chunk spans all hosts' devices; process 0 writes ``out_dir`` and returns the
    results, the other processes return None. Chunks are rounded up to a multiple of the
    device count. The reference or base checkpoint, the kernels and the memory estimate are
    checked before ``out_dir`` is written; a failure before the first chunk file removes what
    this call created there.
    """
    out_dir = Path(out_dir)
    # everything that can refuse the config is checked before plan() writes out_dir
    base = None if cfg.run.init == "scratch" else load_base(cfg.run.init, cfg.model)
    task, pop = cfg.task, cfg.population()
    run_key = jax.random.key(cfg.run.seed)
    cfg.model.check_backend()
    check_chunk_fits(cfg.model, cfg.train, task.seq_len, cfg.run.chunk_size)
    lock = DirLock(out_dir)  # held from plan() to the end of the run
    chunks, done, created = plan(cfg, out_dir, resume, pop.size, lock)
    try:
        return _train_chunks(cfg, out_dir, task, pop, run_key, base, chunks, done, progress, stop_after_chunks, on_chunk)
    except BaseException:
        if is_main() and not chunk_files(out_dir):  # nothing trained yet: leave the directory as it was
            undo_prepare(created)
        raise
    finally:
        lock.release()


def _train_chunks(
    cfg: RunConfig, out_dir: Path, task: Task, pop: Population, run_key: jax.Array, base: Any, chunks: list[xr.Dataset],
    done: np.ndarray, progress: bool, stop_after_chunks: int | None, on_chunk: Callable[[int], None] | None,
) -> xr.Dataset | None:
    """The chunk loop of :func:`run` and the results file, in a prepared ``out_dir`` (``base``: the
    starting params of ``run.init``, or None from scratch)."""
    todo = np.flatnonzero(~done)
    size = cfg.run.chunk_size or auto_chunk_size(cfg.model, cfg.train, task.seq_len, max(len(todo), 1))
    size = -(-size // jax.device_count()) * jax.device_count()
    bar = Progress(pop.size, progress and is_main(), cfg.train.num_checkpoints)
    bar.update(int(done.sum()), "(resumed)" if done.any() else "")
    SEGMENT_LISTENERS.append(bar.segment)
    try:
        return _chunk_loop(cfg, out_dir, task, pop, run_key, base, chunks, todo, size, bar, stop_after_chunks, on_chunk)
    finally:
        SEGMENT_LISTENERS.remove(bar.segment)


def _chunk_loop(
    cfg: RunConfig, out_dir: Path, task: Task, pop: Population, run_key: jax.Array, base: Any, chunks: list[xr.Dataset],
    todo: np.ndarray, size: int, bar: Progress, stop_after_chunks: int | None, on_chunk: Callable[[int], None] | None,
) -> xr.Dataset | None:
    """Train the members ``todo`` in chunks of ``size``, then write results.nc (see :func:`_train_chunks`)."""
    log = SessionLog(out_dir, int(size), is_main())
    for c, start in enumerate(range(0, len(todo), size)):
        if stop_after_chunks is not None and c >= stop_after_chunks:
            return None
        idx = todo[start : start + size]
        # A short last chunk is padded with copies of its last member (dropped below), so every
        # chunk has one shape and the trainer and evaluator compile once per run.
        padded = idx[padded_index(len(idx), size)]
        bar.begin_chunk(len(idx))
        sub = pop.take(padded)
        init = None if base is None else jax.tree.map(lambda x: jnp.broadcast_to(x, (sub.size, *x.shape)), base)
        full = train_population(task, sub, cfg.model, cfg.train, run_key, init=init, view=view_of(cfg.subspace))
        ev = evaluate_population(task, full.params, sub.weights, sub.budget, sub.seed, cfg.model, cfg.eval, run_key)
        kept = ("params", "prior_params", "coords", "loss_curve", "accuracy_curve", "nonfinite_steps")
        trained = jax.tree.map(lambda x: x[: len(idx)], to_host({k: getattr(full, k) for k in kept}))
        ev = {k: v[: len(idx)] for k, v in ev.items()}
        train_out = {k: trained[k] for k in kept[3:]}
        ds = results.chunk_dataset(idx, train_out, ev)
        if is_main():
            stem = chunk_stem(out_dir / "chunks", idx)
            # the final weights, the prefix phase's (train.prefix_steps) and the subspace coordinates
            # ([subspace]); None when off
            for field, suffix in (("params", ".params.npz"), ("prior_params", ".prior.npz"), ("coords", ".coords.npz")):
                if trained[field] is not None:
                    results.atomic_save_npz({"member": idx, **results.flatten_params(trained[field])}, stem.with_suffix(suffix))
            results.atomic_write_netcdf(ds, stem.with_suffix(".nc"))  # the .nc marks the chunk as done
            log.chunk_done(len(idx))
        chunks.append(ds)
        bad = int(np.sum(train_out["nonfinite_steps"] > 0))
        bar.update(len(idx), f"(chunk of {len(idx)}{f', {bad} with NaN/inf steps' if bad else ''})")
        if on_chunk is not None:
            on_chunk(c)
    if not is_main():
        return None
    stats = jax.local_devices()[0].memory_stats() or {}  # GPU/TPU; CPU has none
    extra = log.attrs()
    if "peak_bytes_in_use" in stats:
        extra["peak_device_bytes"] = int(stats["peak_bytes_in_use"])
    ds = results.assemble(cfg, chunks, extra)
    ds = add_overlap(cfg, ds, run_key)
    results.atomic_write_netcdf(ds, out_dir / "results.nc")
    return ds


def add_overlap(cfg: RunConfig, ds: xr.Dataset, run_key: jax.Array) -> xr.Dataset:
    """Add ``duplicate_fraction`` and ``test_in_train_fraction`` [difficulty, budget] (first seed).

    Counted at the row's training level; exact for point distributions (NaN for mixtures,
    where the level-d share of a budget is itself random, and for huge sample spaces).
    """
    shape = (len(cfg.grid.difficulties), len(cfg.grid.budgets))
    dup, hit = np.full(shape, np.nan), np.full(shape, np.nan)
    if cfg.grid.train_distribution == "point":
        root = member_data_root(run_key, cfg.grid.seeds[0])
        dup, hit = data.overlap_table(cfg.task, root, cfg.grid.difficulties, cfg.grid.budgets, cfg.eval.n_test)
    dims = ("difficulty", "budget")
    return ds.assign(duplicate_fraction=(dims, dup), test_in_train_fraction=(dims, hit))


def grid_size(out_dir: Path) -> int:
    """Members of a run directory's grid (difficulties x budgets x seeds of its ``config.json``)."""
    meta = Path(out_dir) / META
    if not meta.exists():
        raise ValueError(f"{str(out_dir)!r} has no {META}; allowed: a directory written by difftrade run")
    try:
        grid = read_meta(out_dir)["config"]["grid"]
        return len(grid["difficulties"]) * len(grid["budgets"]) * len(grid["seeds"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"{meta}: its config has no grid of difficulties, budgets and seeds ({one_line(err)}); "
                         "allowed: the config.json that difftrade run wrote") from None


def _check_cover(stored: list[tuple[Path, np.ndarray]], num_members: int, kind: str) -> None:
    """``ValueError`` unless the ``(file, member ids [m])`` pairs hold each of ``0..num_members-1`` exactly once."""
    owners: dict[int, list[str]] = {}
    for path, ids in stored:
        for m in ids.tolist():
            owners.setdefault(int(m), []).append(path.name)
    repeated = [m for m, names in owners.items() if len(names) > 1]
    if repeated:
        m = min(repeated)
        raise ValueError(f"member {m} is in {' and '.join(owners[m])}; allowed: each member in one chunk "
                         "(`difftrade run CONFIG --out DIR --resume` checks the chunks and retrains)")
    lost = sorted(set(range(num_members)) - set(owners))
    extra = sorted(set(owners) - set(range(num_members)))
    if lost or extra:
        wrong = "; ".join(part for part in (f"lack members {lost[:10]}" if lost else "",
                                            f"hold members {extra[:10]} outside the grid" if extra else "") if part)
        raise ValueError(f"the chunk_*.{kind}.npz files of {str(stored[0][0].parent)!r} {wrong}; "
                         f"allowed: exactly the members 0..{num_members - 1}")


def load_params(out_dir: str | Path, like: object, kind: str = "params") -> tuple[np.ndarray, object]:
    """All trained weights of a run: (member indices ``[M]`` = ``0..M-1``, params pytree with leading ``M``).

    ``like`` is a params pytree of one member (for the tree structure). ``kind="coords"``: the
    subspace coordinates (``like`` a ``[D]`` array; runs with ``[subspace]``). ``kind="prior"``: the
    weights after each member's prefix phase (runs with ``train.prefix_steps > 0``). Each chunk
    file's weights are placed by the member ids stored in them. ``ValueError`` naming the file
    when a weights file is absent or unreadable, or when a member is repeated or missing.
    """
    out_dir = Path(out_dir)
    paths = [weights_file(c, kind) for c in chunk_files(out_dir)]
    if not any(p.exists() for p in paths):
        raise ValueError(f"{str(out_dir)!r} holds no chunk_*.{kind}.npz files" + (
            " (prior weights are saved only by runs with train.prefix_steps > 0)" if kind == "prior" else ""))
    stored, leaves = [], []
    for path in paths:
        try:
            arrays = read_npz(path)
        except ValueError as err:
            raise ValueError(f"{err}; allowed: each chunk_*.nc with a complete .{kind}.npz beside it (`difftrade run "
                             "CONFIG --out DIR --resume` moves a damaged chunk aside and retrains it)") from None
        stored.append((path, npz_members(arrays, path)))
        leaves.append({k: v for k, v in arrays.items() if k != "member"})
        if leaves[-1].keys() != leaves[0].keys():
            raise ValueError(f"{path} holds leaves {sorted(leaves[-1])}, {paths[0].name} {sorted(leaves[0])}; allowed: the same")
    _check_cover(stored, grid_size(out_dir), kind)
    members = np.concatenate([ids for _, ids in stored])
    order = np.argsort(members)
    stacked = {k: np.concatenate([leaf[k] for leaf in leaves])[order] for k in leaves[0]}
    return members[order], results.unflatten_params(like, stacked)
