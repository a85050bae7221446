"""Handlers of the commands that train grids: ``run``, ``pretrain``, ``demo`` and ``transfer``
(which trains a config first), and the per-core CPU devices their processes split members over."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from difftrade.cli.reports import write_report
from difftrade.config.files import grid_members, read_meta, read_toml

DEFAULT_RUNS = Path(
    "runs"
)  # run/pretrain/transfer write to runs/CONFIG_STEM unless --out says otherwise


def toml_grid_members(config_path: Path) -> int | None:
    """Members of a config's grid, read from the TOML alone (jax must not start yet); None if unsure."""
    try:
        return grid_members(read_toml(config_path))
    except (ValueError, KeyError, TypeError):
        return None


def run_dir_members(run_dir: Path) -> int | None:
    """Members of a run directory's grid, read from its ``config.json`` alone (jax must not start
    yet); None if unsure."""
    try:
        return grid_members(read_meta(run_dir)["config"])
    except (ValueError, KeyError, TypeError):
        return None


def one_cpu_device_per_core(members: int | None) -> None:
    """On a CPU, split the member axis over per-core jax devices.

    XLA runs each CPU device's program on its own thread, and on two cores that trained the
    demo grid ~1.2x faster than one device using both (docs/notes.md). The count is the
    largest divisor of the grid size not above the core count (no padded members; a one-member
    run keeps one device and all cores). GPU and TPU runs are unaffected. Skipped when the user
    chose a count (``JAX_NUM_CPU_DEVICES`` or ``--xla_force_host_platform_device_count`` in
    ``XLA_FLAGS``) or jax's devices already exist.
    """

    import jax

    from difftrade.train.mesh import cpu_device_count

    if (
        "JAX_NUM_CPU_DEVICES" in os.environ
        or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
    ):
        return
    try:
        jax.config.update("jax_num_cpu_devices", cpu_device_count(os.cpu_count() or 1, members))
    except (AttributeError, RuntimeError):  # a jax without the option, or backends already up
        pass


def _run(config_path: Path, out_dir: Path, resume: bool, tensorboard: Path | None = None) -> Path:
    import jax
    import numpy as np

    from difftrade.analysis.optimum import d_star as measured_d_star
    from difftrade.results import divergence
    from difftrade.runner import experiment, tracking
    from difftrade.tasks import configs

    cfg = configs.load(config_path)
    start = time.time()
    tracker = None if tensorboard is None else tracking.TensorBoardTracker(cfg, tensorboard)
    try:
        ds = experiment.run(cfg, out_dir, resume=resume, on_chunk=tracker)
    finally:
        if tracker is not None:
            tracker.close()
    if ds is None:  # a worker process of a multi-host run: process 0 writes and reports
        return out_dir / "results.nc"
    # NaN-aware seed means: diverged members (NaN risk) are skipped, a budget with no finite cell is None
    risk = ds["target_risk"].transpose("difficulty", "budget", "seed").values
    d_star = [
        None if np.isnan(d) else int(d) for d in measured_d_star(risk, ds["difficulty"].values)
    ]
    members = int(ds.sizes["difficulty"] * ds.sizes["budget"] * ds.sizes["seed"])
    where = f"on {jax.device_count()} device(s) in {jax.process_count()} process(es), chunks of {ds.attrs['chunk_size']}"
    if "peak_device_bytes" in ds.attrs:
        where += f", peak device memory {ds.attrs['peak_device_bytes'] / 2**30:.1f} GiB"
    diverged = divergence.describe_diverged(ds)
    print(
        f"done: {members} members in {time.time() - start:.0f} s {where}; "
        f"d*(n) = {dict(zip(ds['budget'].values.tolist(), d_star))}; "
        + (f"{diverged}; " if diverged else "")
        + f"results: {out_dir / 'results.nc'}"
    )
    return out_dir / "results.nc"


def transfer_command(args: argparse.Namespace) -> int:
    """Transfer matrix of a finished run, or of a config trained first (resuming into ``--out``)."""
    from difftrade.analysis import transfer
    from difftrade.results import schema as results

    source: Path = args.source
    if source.suffix == ".toml":
        out = args.out or DEFAULT_RUNS / source.stem
        results_file = _run(source, out, resume=True)
    else:
        results_file = results.results_path(source)
        out = args.out or results_file.parent
    tm = transfer.transfer_matrix(results.load(results_file), args.budget)
    written = transfer.save(tm, out)
    print(transfer.render(tm))
    print(f"written: {', '.join(written)}")
    return 0


def _pretrain(config_path: Path, out_dir: Path) -> Path:
    """Train the config's single member and save it as a base checkpoint ``out_dir/base``."""
    import jax

    from difftrade.model import checkpoint
    from difftrade.model.checkpoint import save_base
    from difftrade.model.transformer import init_params
    from difftrade.runner import chunks, experiment
    from difftrade.tasks import configs
    from difftrade.tasks.keys import root_key

    cfg = configs.load(config_path)
    if cfg.population().size != 1:
        raise ValueError(
            f"pretrain needs exactly one member; grid has {cfg.population().size} "
            "(use one difficulty, one budget, one seed; e.g. train_distribution = 'up_to')"
        )
    ds = experiment.run(cfg, out_dir, resume=True)
    existing = out_dir / "base" / "base.json"
    if existing.exists() and checkpoint.read_meta(existing.parent).get("config_hash") == cfg.hash():
        print(f"base checkpoint: {existing.parent} (already written by this config)")
        return existing.parent
    _, params = chunks.load_params(out_dir, init_params(cfg.model, root_key(0)))
    base = save_base(
        out_dir / "base",
        jax.tree.map(lambda x: x[0], params),
        cfg.model,
        {"task": cfg.to_dict()["task"], "config_hash": cfg.hash()},
    )
    acc = (1 - ds["level_exact"].values.reshape(-1, ds.sizes["level"])[0]).round(3).tolist()
    print(f"base checkpoint: {base} (per-level risk {acc})")
    return base


def run_command(args: argparse.Namespace) -> int:
    if args.distributed or any(
        v is not None for v in (args.coordinator, args.num_processes, args.process_id)
    ):
        from difftrade.runner import multihost

        multihost.initialize(args.coordinator, args.num_processes, args.process_id)
    _run(args.config, args.out or DEFAULT_RUNS / args.config.stem, args.resume, args.tensorboard)
    return 0


def pretrain_command(args: argparse.Namespace) -> int:
    _pretrain(args.config, args.out or DEFAULT_RUNS / args.config.stem)
    return 0


def demo_command(args: argparse.Namespace) -> int:
    write_report(_run(args.config, args.out, resume=True), args.out)
    return 0
