"""Run a config end to end: chunks of members -> train -> evaluate -> chunk files -> results.nc.

Every finished chunk is on disk before the next one starts, so a run that is interrupted or
fails loses at most the chunk in flight; ``resume=True`` skips the members already on disk
(whatever chunk size they were run with) and refuses a directory whose config hash differs.
The chunk files themselves (names, checks, discarding, temporaries) are :mod:`difftrade.runner.chunks`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from difftrade.config.files import read_meta
from difftrade.config.logs import log
from difftrade.config.run_config import RunConfig
from difftrade.config.train_config import Population, TrainConfig
from difftrade.model.checkpoint import BASE_HASH, base_identity, check_same_base, load_base
from difftrade.model.transformer import check_backend
from difftrade.results import assembly
from difftrade.results import schema as results
from difftrade.runner.chunks import (
    RunChunks,
    chunk_files,
    clear_temporaries,
    finished_members,
    weight_kinds,
)
from difftrade.runner.multihost import broadcast, is_main
from difftrade.runner.population import plan_chunks, run_chunks
from difftrade.runner.progress import Progress
from difftrade.runner.rundir import META, DirLock, SessionLog, read_config, write_meta
from difftrade.tasks import Task, data
from difftrade.tasks.configs import TASK_MODULE, task_module
from difftrade.tasks.keys import root_key
from difftrade.train.chunk_sizing import auto_chunk_size, check_chunk_fits
from difftrade.train.evaluate import evaluate_population
from difftrade.train.mesh import cpu_device_count, padded_index, to_host
from difftrade.train.programs import PROGRAMS, SEGMENTS
from difftrade.train.run_task import run_task
from difftrade.train.trainer import (
    member_data_root,
    train_population,
    view_of,
)


def prepare_dir(cfg: RunConfig, out_dir: Path, resume: bool) -> list[Path]:
    """Create the run directory or check that it belongs to this config (resume).

    Returns what it created, deepest first: ``config.json``, ``chunks/`` and every directory
    above it that did not exist ([] for a directory that already holds a run), for
    :func:`undo_prepare`.
    """
    meta = out_dir / META
    created: list[Path] = []
    if meta.exists():
        old = read_config(out_dir).hash()  # recomputed from the stored config, as this config's is
        if not resume:
            raise ValueError(
                f"--out {str(out_dir)!r} already holds a run (config hash {old}); "
                "pass --resume to continue it or choose another --out"
            )
        if old != cfg.hash():
            raise ValueError(
                f"cannot resume {str(out_dir)!r}: its config hash is {old} but this config's is "
                f"{cfg.hash()}; the configs differ (compare {META}), so results would mix two experiments"
            )
        recorded = read_meta(out_dir).get(BASE_HASH)
        check_same_base(cfg.run.init, recorded, str(meta))
        if recorded is None and base_identity(cfg.run.init):  # written before bases were recorded
            write_meta(out_dir, cfg)
    else:
        chunks = out_dir / "chunks"
        created = [p for p in (chunks, *chunks.parents) if not p.exists()]
        chunks.mkdir(parents=True, exist_ok=True)
        try:
            write_meta(out_dir, cfg)
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
            chunks, members = finished_members(out_dir, num_members, cfg.hash(), kinds)
            clear_temporaries(out_dir)
            done[list(members)] = 1
        except ValueError as err:
            refused = err
        except (
            BaseException
        ):  # a failed write or read (a full disk): as a refusal, but raised as it is
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
        raise ValueError(
            f"process 0 refused --out {str(out_dir)!r} (its error says why); nothing was trained"
        )
    return chunks, flags[1:].astype(bool), created


def exhausted_levels(cfg: RunConfig) -> list[str]:
    """One sentence per training level whose distinct examples are fewer than the largest budget
    that draws from it (a point-trained row, or any level under ``up_to``/mixture rows): there the
    training set repeats examples and most held-out test examples occur in training."""
    task, n_max = run_task(cfg), max(cfg.grid.budgets)
    drawn = cfg.train_weights().max(axis=0) > 0  # [L] levels some row trains on
    out = []
    for level, used in zip(task.levels, drawn):
        space = task.sample_space_size(int(level))
        if used and space is not None and space < n_max:
            out.append(
                f"difftrade: level {level} of {task.name!r} has {space:,} distinct examples, fewer than "
                f"the budget {n_max:,}: its training sets repeat examples and most of its test examples "
                "occur in training (results.nc: duplicate_fraction, test_in_train_fraction)"
            )
    return out


def device_note(members: int) -> str | None:
    """One line when jax has a single CPU device where ``difftrade run`` would split a grid of
    ``members`` over several (:func:`~difftrade.train.mesh.cpu_device_count`): a Python session
    does so only when asked."""
    devices = jax.devices()
    wanted = cpu_device_count(os.cpu_count() or 1, members)
    if len(devices) > 1 or devices[0].platform != "cpu" or wanted < 2:
        return None
    return (
        f"difftrade: jax has 1 CPU device; `difftrade run` splits these {members} members over "
        f"{wanted} (in Python: jax.config.update('jax_num_cpu_devices', {wanted}) before jax starts)"
    )


def run(
    cfg: RunConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    stop_after_chunks: int | None = None,
    on_chunk: Callable[[int, xr.Dataset], None] | None = None,
) -> xr.Dataset | None:
    """Train and evaluate the whole grid of ``cfg`` into ``out_dir``; returns the results.

    ``on_chunk(c, ds)`` is called after chunk ``c`` (0, 1, ... in this call) is on disk, with its
    members' results ``ds`` (dim ``member``: the member ids, exact match and cross-entropy on the
    training sample and per level, the curves and ``nonfinite_steps``), e.g. to log or plot them
    live. ``stop_after_chunks`` (tests) stops early, as an interrupted run would, returning None.
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
    task, pop = run_task(cfg), cfg.population()
    run_key = root_key(cfg.run.seed)
    check_backend(cfg.model)
    check_chunk_fits(cfg.model, cfg.train, task.seq_len, cfg.run.chunk_size)
    lock = DirLock(out_dir)  # held from plan() to the end of the run
    chunks, done, created = plan(cfg, out_dir, resume, pop.size, lock)
    if is_main() and progress and not done.all():  # notes on what is about to train
        for line in [*exhausted_levels(cfg), device_note(pop.size)]:
            if line:
                log.warning(line)
    try:
        return _train_chunks(
            cfg,
            out_dir,
            task,
            pop,
            run_key,
            base,
            chunks,
            done,
            progress,
            stop_after_chunks,
            on_chunk,
        )
    except BaseException:
        if is_main() and not chunk_files(
            out_dir
        ):  # nothing trained yet: leave the directory as it was
            undo_prepare(created)
        raise
    finally:
        lock.release()


def _train_chunks(
    cfg: RunConfig,
    out_dir: Path,
    task: Task,
    pop: Population,
    run_key: jax.Array,
    base: Any,
    chunks: list[xr.Dataset],
    done: np.ndarray,
    progress: bool,
    stop_after_chunks: int | None,
    on_chunk: Callable[[int, xr.Dataset], None] | None,
) -> xr.Dataset | None:
    """The chunks of :func:`run` (:func:`~difftrade.runner.population.run_chunks` over the run's chunk
    files) and the results file, in a prepared ``out_dir`` (``base``: the starting params of
    ``run.init``, or None from scratch; ``done`` bool ``[M]``: members on disk)."""
    todo = np.flatnonzero(~done)
    size = cfg.run.chunk_size or auto_chunk_size(
        cfg.model, cfg.train, task.seq_len, max(len(todo), 1)
    )
    size = -(-size // jax.device_count()) * jax.device_count()
    planned = [(ids, width) for _, ids, width in chunk_plan(cfg.train, pop.budget, todo, size)]
    stopped = stop_after_chunks is not None and len(planned) > stop_after_chunks
    store = RunChunks(out_dir, chunks, np.flatnonzero(done), is_main(), cfg.hash())
    log, traced = (
        SessionLog(out_dir, int(size), is_main()),
        PROGRAMS.traces().total(),
    )  # programs compiled before: not this session's

    def after(c: int, ds: xr.Dataset) -> None:
        log.chunk_done(ds.sizes["member"], PROGRAMS.traces().total() - traced)
        if on_chunk is not None:
            on_chunk(c, ds)

    bar = Progress(pop.size, progress and is_main(), cfg.train.num_checkpoints)
    bar.start()
    try:
        with SEGMENTS.listening(bar.segment):
            parts = run_chunks(
                np.arange(pop.size),
                lambda _: planned[:stop_after_chunks],
                ChunkTrainer(cfg, task, pop, run_key, base),
                store,
                bar,
                after,
            )
        if stopped or not is_main():
            return None
        bar.stage("writing results")
        stats = jax.local_devices()[0].memory_stats() or {}  # GPU/TPU; CPU has none
        extra = log.attrs()
        if module := task_module(cfg):  # a plugin's module: readers import it (tasks.configs)
            extra[TASK_MODULE] = module
        if base_hash := base_identity(cfg.run.init):
            extra[BASE_HASH] = base_hash
        if "peak_bytes_in_use" in stats:
            extra["peak_device_bytes"] = int(stats["peak_bytes_in_use"])
        ds = add_overlap(cfg, assembly.assemble(cfg, parts, extra), run_key)
        results.atomic_write_netcdf(ds, out_dir / "results.nc")
        bar.stage("done")
        return ds
    finally:
        bar.close()


class ChunkTrainer:
    """``(member ids [m], padded width) -> arrays``: train and evaluate one chunk, for
    :class:`~difftrade.runner.chunks.RunChunks` (its results Dataset and the weight trees)."""

    def __init__(self, cfg: RunConfig, task: Task, pop: Population, run_key: jax.Array, base: Any):
        self.cfg, self.task, self.pop, self.run_key, self.base = cfg, task, pop, run_key, base

    def __call__(self, idx: np.ndarray, width: int) -> dict[str, Any]:
        cfg = self.cfg
        # A short last chunk is padded with copies of its last member (dropped below), so every
        # chunk of a training config has one shape and compiles once.
        sub = self.pop.take(idx[padded_index(len(idx), width)])
        init = (
            None
            if self.base is None
            else jax.tree.map(lambda x: jnp.broadcast_to(x, (sub.size, *x.shape)), self.base)
        )
        train_cfg = chunk_train_config(cfg.train, int(self.pop.budget[idx[0]]))
        full = train_population(
            self.task,
            sub,
            cfg.model,
            train_cfg,
            self.run_key,
            init=init,
            view=view_of(cfg.subspace),
        )
        ev = evaluate_population(
            self.task,
            full.params,
            sub.weights,
            sub.budget,
            sub.seed,
            cfg.model,
            cfg.eval,
            self.run_key,
        )
        kept = (
            "params",
            "prior_params",
            "coords",
            "loss_curve",
            "accuracy_curve",
            "nonfinite_steps",
            "selected_step",
            "stopped_step",
        )
        trained = jax.tree.map(
            lambda x: x[: len(idx)], to_host({k: getattr(full, k) for k in kept})
        )
        ds = assembly.chunk_dataset(
            idx, {k: trained[k] for k in kept[3:]}, {k: v[: len(idx)] for k, v in ev.items()}
        )
        # the final weights, the prefix phase's (train.prefix_steps) and the subspace coordinates ([subspace]); None when off
        return {"results": ds, **{k: trained[k] for k in kept[:3]}}


def chunk_train_config(train_cfg: TrainConfig, budget: int) -> TrainConfig:
    """The training config of a chunk of members with this budget: ``train`` itself, or with
    ``train.epochs`` its fixed-steps form for the budget (:meth:`TrainConfig.for_budget`)."""
    return train_cfg.for_budget(budget) if train_cfg.epochs else train_cfg


def chunk_plan(
    train_cfg: TrainConfig, budget: np.ndarray, todo: np.ndarray, size: int
) -> list[tuple[TrainConfig, np.ndarray, int]]:
    """The chunks that train the members ``todo``: ``(training config, member ids, padded width)``.

    ``budget`` int ``[M]`` is every member's budget. With fixed steps, ``todo`` in order, ``size``
    members a chunk. With ``train.epochs`` the number of steps depends on the budget, so members
    are grouped by budget (ascending) and a group's chunks are at most ``size`` wide, narrower
    (rounded up to the device count) when the whole group is smaller.
    """
    groups = budget if train_cfg.epochs else None
    return [
        (chunk_train_config(train_cfg, int(budget[ids[0]])), ids, width)
        for ids, width in plan_chunks(todo, size, groups)
    ]


def add_overlap(cfg: RunConfig, ds: xr.Dataset, run_key: jax.Array) -> xr.Dataset:
    """Add ``duplicate_fraction`` and ``test_in_train_fraction`` [difficulty, budget] (first seed).

    Counted at the row's training level; exact for point distributions (NaN for mixtures,
    where the level-d share of a budget is itself random, and for huge sample spaces).
    """
    shape = (len(cfg.grid.difficulties), len(cfg.grid.budgets))
    dup, hit = np.full(shape, np.nan), np.full(shape, np.nan)
    if cfg.grid.train_distribution == "point":
        root = member_data_root(run_key, cfg.grid.seeds[0])
        dup, hit = data.overlap_table(
            run_task(cfg), root, cfg.grid.difficulties, cfg.grid.budgets, cfg.eval.n_test
        )
    dims = ("difficulty", "budget")
    return ds.assign(duplicate_fraction=(dims, dup), test_in_train_fraction=(dims, hit))
