"""Run a config end to end: chunks of members -> train -> evaluate -> chunk files -> results.nc.

Every finished chunk is on disk before the next one starts, so a run that is interrupted or
fails loses at most the chunk in flight; ``resume=True`` skips the members already on disk
(whatever chunk size they were run with) and refuses a directory whose config hash differs.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from difftrade import data, results
from difftrade.checkpoint import load_base
from difftrade.config import RunConfig
from difftrade.evaluate import evaluate_population
from difftrade.multihost import broadcast, is_main, to_host
from difftrade.train import (
    auto_chunk_size,
    check_chunk_fits,
    member_data_root,
    padded_index,
    train_population,
)

META = "config.json"


class Progress:
    """A one-line progress report with ETA over chunks (stderr)."""

    def __init__(self, total_members: int, enabled: bool = True):
        self.total, self.done, self.enabled, self.start = total_members, 0, enabled, time.time()

    def update(self, members: int, note: str = "") -> None:
        self.done += members
        if not self.enabled:
            return
        elapsed = time.time() - self.start
        eta = elapsed / max(self.done, 1) * (self.total - self.done)
        bar = "#" * int(30 * self.done / self.total)
        sys.stderr.write(
            f"\r[{bar:<30}] {self.done}/{self.total} members  {elapsed:6.0f}s elapsed  ETA {eta:5.0f}s {note}   "
        )
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def prepare_dir(cfg: RunConfig, out_dir: Path, resume: bool) -> None:
    """Create the run directory or check that it belongs to this config (resume)."""
    meta = out_dir / META
    if meta.exists():
        old = json.loads(meta.read_text())
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
        (out_dir / "chunks").mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"config_hash": cfg.hash(), "config": cfg.to_dict()}, indent=2))


def finished_members(out_dir: Path) -> tuple[list[xr.Dataset], set[int]]:
    """Chunk datasets already on disk and the member indices they cover."""
    chunks, done = [], set()
    for path in sorted((out_dir / "chunks").glob("chunk_*.nc")):
        ds = results.load(path)
        chunks.append(ds)
        done.update(int(m) for m in ds["member"].values)
    return chunks, done


def plan(cfg: RunConfig, out_dir: Path, resume: bool, num_members: int) -> tuple[list[xr.Dataset], np.ndarray]:
    """Prepare ``out_dir`` and find the finished members: (chunks on disk, done bool ``[M]``).

    Process 0 alone reads and writes the directory; every process receives the done mask.
    A refusal (wrong directory, config mismatch) is raised on every process.
    """
    chunks: list[xr.Dataset] = []
    done = np.zeros(num_members, np.int32)
    refused: ValueError | None = None
    if is_main():
        try:
            prepare_dir(cfg, out_dir, resume)
            chunks, members = finished_members(out_dir)
            done[list(members)] = 1
        except ValueError as err:
            refused = err
    flags = broadcast(np.concatenate([[int(refused is None)], done]).astype(np.int32))
    if refused is not None:
        raise refused
    if not flags[0]:
        raise ValueError(f"process 0 refused --out {str(out_dir)!r} (its error says why); nothing was trained")
    return chunks, flags[1:].astype(bool)


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
    device count.
    """
    out_dir = Path(out_dir)
    base = None if cfg.run.init == "scratch" else load_base(cfg.run.init, cfg.model)
    task, pop = cfg.task, cfg.population()
    run_key = jax.random.key(cfg.run.seed)
    chunks, done = plan(cfg, out_dir, resume, pop.size)
    todo = np.flatnonzero(~done)
    size = cfg.run.chunk_size or auto_chunk_size(cfg.model, cfg.train, task.seq_len, max(len(todo), 1))
    size = -(-size // jax.device_count()) * jax.device_count()
    check_chunk_fits(cfg.model, cfg.train, task.seq_len, size)
    bar = Progress(pop.size, progress and is_main())
    bar.update(int(done.sum()), "(resumed)" if done.any() else "")
    next_id = len(list((out_dir / "chunks").glob("chunk_*.nc"))) if is_main() else 0
    for c, start in enumerate(range(0, len(todo), size)):
        if stop_after_chunks is not None and c >= stop_after_chunks:
            return None
        idx = todo[start : start + size]
        # A short last chunk is padded with copies of its last member (dropped below), so every
        # chunk has one shape and the trainer and evaluator compile once per run.
        padded = idx[padded_index(len(idx), size)]
        sub = pop.take(padded)
        init = None if base is None else jax.tree.map(lambda x: jnp.broadcast_to(x, (sub.size, *x.shape)), base)
        full = train_population(task, sub, cfg.model, cfg.train, run_key, init=init)
        ev = evaluate_population(task, full.params, sub.weights, sub.budget, sub.seed, cfg.model, cfg.eval, run_key)
        kept = ("params", "prior_params", "loss_curve", "accuracy_curve", "nonfinite_steps")
        trained = jax.tree.map(lambda x: x[: len(idx)], to_host({k: getattr(full, k) for k in kept}))
        ev = {k: v[: len(idx)] for k, v in ev.items()}
        train_out = {k: trained[k] for k in kept[2:]}
        ds = results.chunk_dataset(idx, train_out, ev)
        if is_main():
            stem = out_dir / "chunks" / f"chunk_{next_id:05d}"
            # the final weights, and the prefix phase's (train.prefix_steps; None when off)
            for field, suffix in (("params", ".params.npz"), ("prior_params", ".prior.npz")):
                if trained[field] is not None:
                    results.atomic_save_npz({"member": idx, **results.flatten_params(trained[field])}, stem.with_suffix(suffix))
            results.atomic_write_netcdf(ds, stem.with_suffix(".nc"))  # the .nc marks the chunk as done
        chunks.append(ds)
        next_id += 1
        bad = int(np.sum(train_out["nonfinite_steps"] > 0))
        bar.update(len(idx), f"(chunk of {len(idx)}{f', {bad} with NaN/inf steps' if bad else ''})")
        if on_chunk is not None:
            on_chunk(c)
    if not is_main():
        return None
    stats = jax.local_devices()[0].memory_stats() or {}  # GPU/TPU; CPU has none
    extra = {"wall_seconds": float(time.time() - bar.start), "chunk_size": int(size), "device_count": jax.device_count()}
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


def load_params(out_dir: str | Path, like: object, kind: str = "params") -> tuple[np.ndarray, object]:
    """All trained weights of a run: (member indices ``[M]``, params pytree with leading ``M``).

    ``like`` is a params pytree of one member (for the tree structure). ``kind="prior"``: the
    weights after each member's prefix phase (runs with ``train.prefix_steps > 0``).
    """
    members, leaves = [], []
    paths = sorted((Path(out_dir) / "chunks").glob(f"chunk_*.{kind}.npz"))
    if not paths:
        raise ValueError(f"{str(out_dir)!r} holds no chunk_*.{kind}.npz files" + (
            " (prior weights are saved only by runs with train.prefix_steps > 0)" if kind == "prior" else ""))
    for path in paths:
        with np.load(path) as z:
            members.append(z["member"])
            leaves.append({k: z[k] for k in z.files if k != "member"})
    order = np.argsort(np.concatenate(members))
    stacked = {k: np.concatenate([l[k] for l in leaves])[order] for k in leaves[0]}
    return np.concatenate(members)[order], results.unflatten_params(like, stacked)
