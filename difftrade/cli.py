"""The ``difftrade`` command.

    difftrade tasks                                  list task families
    difftrade tasks show NAME --difficulty D -n 5    rendered examples, answer in [ ]
    difftrade run CONFIG [--out DIR] [--resume]      train + evaluate a grid (CONFIG: a TOML file or a packaged name, e.g. quick)
    difftrade pretrain CONFIG [--out DIR]            train one member, save it as a base checkpoint
    difftrade report RUN_DIR [--out DIR] [--csv]     tables and figures (RUN_DIR/results.nc also works)
    difftrade merge RUN_DIR RUN_DIR [...] --out F.nc  one grid from runs that differ only in budgets, difficulties or seeds
    difftrade bound RUN_DIR [--n-bound N --draws R --monte-carlo per_example --seeds 0,1 --budgets 1024,4096 --bound-set train --posterior fitted]
    difftrade compress RUN_DIR [RUN_DIR ...] [--levels L --qat-steps K --delta D]   compression certificates ([subspace] runs)
    difftrade difficulty agreement CONFIG [-n N]     reference loss vs nominal level (rank agreement)
    difftrade recommend RUN_DIR --budget N [--validate]      difficulty for a budget (or RESULTS.nc)
    difftrade select SCORES --column C --budget N (--results R | --weights W) [--out F]
    difftrade transfer CONFIG|RUN_DIR [--budget N] [--out DIR]   accuracy of each training level on every level
    difftrade demo [--out DIR]                       run the packaged quick config and report
    difftrade export TASK|--config C --split train -d D -n N [--seed S] [--chat] [--out F]   examples as JSONL
    difftrade score TASK|--config C PREDICTIONS [--out DIR]   exact match of outside answers; a grid -> results.nc

Every command takes ``--import MODULE`` (repeatable): the module is imported first, so task
families it registers with ``@register`` resolve like the built-in ones; installed packages add
theirs through the entry-point group ``difftrade.tasks``.

Adding a command: write ``_add_NAME(sub)`` (its parser, built with ``_command``, which adds
``--import``) and a handler ``(args) -> int`` set with ``set_defaults(handler=...)``, then list
``_add_NAME`` in ``COMMANDS``. Import jax and the library inside the handler, not at module
level: ``difftrade --help`` must stay free of jax.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # configs shipped with the package
GRID_COMMANDS = ("run", "demo")  # the commands that train whole grids
DEFAULT_RUNS = Path("runs")  # run/pretrain/transfer write to runs/CONFIG_STEM unless --out says otherwise


def packaged_configs() -> dict[str, Path]:
    """Name -> path of the configs shipped in ``difftrade/configs`` (e.g. ``quick``)."""
    return {path.stem: path for path in sorted(CONFIG_DIR.glob("*.toml"))}


def config_path(text: str) -> Path:
    """A config argument: an existing path, else a packaged config's name (``quick`` or ``quick.toml``).

    Anything else stays as given, so ``config.load`` reports the missing file.
    """
    path = Path(text)
    if path.exists() or path.parent != Path("."):
        return path
    return packaged_configs().get(path.stem if path.suffix == ".toml" else text, path)


def _version() -> str:
    """The installed package's version ("unknown" when difftrade runs from a source tree without metadata)."""
    from importlib import metadata

    try:
        return metadata.version("difftrade")
    except metadata.PackageNotFoundError:
        return "unknown"


def _grid_members(config_path: Path) -> int | None:
    """Members of a config's grid, read from the TOML alone (jax must not start yet); None if unsure."""
    import tomllib

    try:
        grid = tomllib.loads(config_path.read_text()).get("grid", {})
        return len(grid["difficulties"]) * len(grid["budgets"]) * len(grid["seeds"])
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError):
        return None


def cpu_device_count(cores: int, members: int | None) -> int:
    """Largest divisor of ``members`` that is at most ``cores`` (``cores`` if members is unknown)."""
    return max(d for d in range(1, cores + 1) if members is None or members % d == 0)


def _one_cpu_device_per_core(members: int | None) -> None:
    """On a CPU, split the member axis over per-core jax devices.

    XLA runs each CPU device's program on its own thread, and on two cores that trained the
    demo grid ~1.2x faster than one device using both (benchmarks/NOTES.md). The count is the
    largest divisor of the grid size not above the core count (no padded members; a one-member
    run keeps one device and all cores). GPU and TPU runs are unaffected. Skipped when the user
    chose a count (``JAX_NUM_CPU_DEVICES`` or ``--xla_force_host_platform_device_count`` in
    ``XLA_FLAGS``) or jax's devices already exist.
    """

    import jax

    if "JAX_NUM_CPU_DEVICES" in os.environ or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    try:
        jax.config.update("jax_num_cpu_devices", cpu_device_count(os.cpu_count() or 1, members))
    except (AttributeError, RuntimeError):  # a jax without the option, or backends already up
        pass


def _tasks(args: argparse.Namespace) -> int:
    import jax

    from difftrade import data
    from difftrade.tasks import make_task, task_names

    if args.action is None:
        for name in task_names():
            print(make_task(name).describe())
        return 0
    if args.action != "show" or not args.name:
        raise ValueError("usage: difftrade tasks [show NAME --difficulty D -n N]")
    task = make_task(args.name)
    d = task.d_min if args.difficulty is None else args.difficulty
    task.check_difficulty(d, "--difficulty")
    data.check_budget(args.n, "-n")
    tokens, mask = data.examples_at_level(task, jax.random.key(args.seed), data.SPLITS["train"], d, jax.numpy.arange(args.n))
    print(task.describe())
    for i in range(args.n):
        print(f"  [{i}] {task.render(tokens[i], mask[i])}")
    return 0


def _report(results_path: Path, out_dir: Path, csv: bool = False) -> str:
    from difftrade import plots, report, results, tables

    ds = results.load(results_path)
    text = report.render(ds)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.md").write_text(text)
    written = plots.save_all(ds, out_dir)
    print(text)
    print(f"figures: {', '.join(str(p) for p in written if p.suffix == '.png')}")
    if csv:
        print(f"tables:  {', '.join(str(p) for p in tables.write_tables(ds, out_dir))}")
    print(f"report:  {out_dir / 'report.md'}")
    return text


def _run(config_path: Path, out_dir: Path, resume: bool) -> Path:
    import jax
    import numpy as np

    from difftrade import config, experiment, results
    from difftrade.analysis import d_star as measured_d_star

    cfg = config.load(config_path)
    start = time.time()
    ds = experiment.run(cfg, out_dir, resume=resume)
    if ds is None:  # a worker process of a multi-host run: process 0 writes and reports
        return out_dir / "results.nc"
    # NaN-aware seed means: diverged members (NaN risk) are skipped, a budget with no finite cell is None
    risk = ds["target_risk"].transpose("difficulty", "budget", "seed").values
    d_star = [None if np.isnan(d) else int(d) for d in measured_d_star(risk, ds["difficulty"].values)]
    members = int(ds.sizes["difficulty"] * ds.sizes["budget"] * ds.sizes["seed"])
    where = f"on {jax.device_count()} device(s) in {jax.process_count()} process(es), chunks of {ds.attrs['chunk_size']}"
    if "peak_device_bytes" in ds.attrs:
        where += f", peak device memory {ds.attrs['peak_device_bytes'] / 2**30:.1f} GiB"
    diverged = results.describe_diverged(ds)
    print(
        f"done: {members} members in {time.time() - start:.0f} s {where}; "
        f"d*(n) = {dict(zip(ds['budget'].values.tolist(), d_star))}; "
        + (f"{diverged}; " if diverged else "")
        + f"results: {out_dir / 'results.nc'}"
    )
    return out_dir / "results.nc"


def _transfer(args: argparse.Namespace) -> int:
    """Transfer matrix of a finished run, or of a config trained first (resuming into ``--out``)."""
    from difftrade import results, transfer

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

    from difftrade import checkpoint, chunks, config, experiment
    from difftrade.checkpoint import save_base
    from difftrade.model import init_params

    cfg = config.load(config_path)
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
    _, params = chunks.load_params(out_dir, init_params(cfg.model, jax.random.key(0)))
    base = save_base(out_dir / "base", jax.tree.map(lambda x: x[0], params), cfg.model,
                     {"task": cfg.to_dict()["task"], "config_hash": cfg.hash()})
    acc = (1 - ds["level_exact"].values.reshape(-1, ds.sizes["level"])[0]).round(3).tolist()
    print(f"base checkpoint: {base} (per-level risk {acc})")
    return base


def _floats(text: str, flag: str) -> tuple[float, ...]:
    """A comma-separated list of numbers, e.g. ``1e-3,3e-3``; ValueError naming ``flag`` otherwise."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{flag}={text!r}; allowed: comma-separated numbers, e.g. 1e-3,3e-3,1e-2") from None


def _ints(text: str | None, flag: str) -> tuple[int, ...] | None:
    """``"0,1"`` -> ``(0, 1)``; None stays None (every value of the grid)."""
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{flag}={text!r}; allowed: comma-separated integers, e.g. 0,1") from None


def _bound(args: argparse.Namespace) -> int:
    from difftrade import plots
    from difftrade.bound import BoundSettings, certify_run, load_run, refresh_shift, render
    from difftrade.theory.posterior import FitConfig

    grids = {name: _floats(getattr(args, name), "--" + name.replace("_", "-")) for name in ("sigmas", "prior_sigmas")
             if getattr(args, name) is not None}
    settings = BoundSettings(
        **grids, n_bound=args.n_bound, num_draws=args.draws, monte_carlo=args.monte_carlo,
        seeds=_ints(args.seeds, "--seeds"), budgets=_ints(args.budgets, "--budgets"),
        bound_set=args.bound_set, posterior=args.posterior, prior=args.prior, importance_weighted=args.importance_weighted,
        iw_selection=args.iw_selection,
        fit=FitConfig(steps=args.fit_steps, mean_learning_rate=args.fit_mean_lr),
    )
    _, ds = load_run(args.run)
    b = refresh_shift(args.run) if args.refresh_shift else certify_run(args.run, settings)
    text = render(ds, b)
    (args.run / "bounds.md").write_text(text)
    written = plots.save_bounds(ds, b, args.run)
    print(text)
    print(f"bounds: {args.run / 'bounds.nc'}; figures: {', '.join(str(p) for p in written if p.suffix == '.png')}")
    return 0


def _compress(args: argparse.Namespace) -> int:
    """Quantize, code and certify every member of a [subspace] run."""
    from difftrade.compress import CompressSettings, best_of, compress_run

    settings = CompressSettings(levels=args.levels, qat_steps=args.qat_steps, qat_lr_scale=args.qat_lr_scale,
                                delta=args.delta, member_chunk=args.member_chunk)
    for run in args.runs:
        compress_run(run, settings)
    out = args.runs[0]
    if len(args.runs) > 1:
        out = args.out or args.runs[0].parent / "best_of"
        best_of(args.runs, out)
    print((out / "compression.md").read_text())
    print(f"compression certificates: {out / 'compression.nc'}")
    return 0


def _difficulty(args: argparse.Namespace) -> int:
    """Rank agreement of a model-based config's reference loss with the task's nominal levels."""
    import jax

    from difftrade import config
    from difftrade.difficulty import agreement, format_agreement

    cfg = config.load(args.config)
    if cfg.difficulty.kind != "model":
        raise ValueError(f"{args.config}: difficulty.kind={cfg.difficulty.kind!r}; allowed: 'model' (with a reference)")
    result = agreement(cfg.source_task, cfg.reference_params(), cfg.model, args.n, jax.random.key(args.seed),
                       num_levels=cfg.difficulty.num_levels)
    print(format_agreement(result))
    return 0


def _recommend(args: argparse.Namespace) -> int:
    import json

    from difftrade import results
    from difftrade.recommender import recommend, validate_leave_one_budget_out

    ds = results.load(args.results)
    rec = recommend(
        ds, args.budget, method=args.method, allow_extrapolation=not args.no_extrapolation,
        n_boot=args.n_boot, min_share=args.min_share, seed=args.seed,
    )
    print(json.dumps(rec.to_dict(), indent=2) if args.json else rec)
    if args.validate:
        print("\nleave-one-budget-out validation (each budget predicted from the others):")
        print(validate_leave_one_budget_out(ds))
    return 0


def _export_config(args: argparse.Namespace):
    """The RunConfig an export/score addresses: ``--config``, else the bare TASK (``export.task_config``)."""
    from difftrade import config, export

    if (args.task is None) == (args.config is None):
        given = "both TASK and --config" if args.task is not None else "neither TASK nor --config"
        raise ValueError(f"{given} given; allowed: a task family name (e.g. addition) or --config CONFIG, not both")
    if args.config is not None:
        if args.run_seed is not None:
            raise ValueError(f"--run-seed={args.run_seed} with --config; allowed: only with TASK (a config's [run] seed is used)")
        return config.load(args.config)
    return export.task_config(args.task, 0 if args.run_seed is None else args.run_seed)


def _export(args: argparse.Namespace) -> int:
    """Examples as JSONL text records: a member's training set, the test sets, or target examples."""
    from difftrade import export

    cfg = _export_config(args)
    if args.system is not None or args.template != export.DEFAULT_TEMPLATE:
        args.chat = True
    template = export.check_template(args.template)
    difficulty = _ints(args.difficulty, "--difficulty")
    n = args.n
    if n is None:
        if args.split == "train":
            raise ValueError("-n is missing with --split train; allowed: the budget n >= 1 (the member's training "
                             "examples 0..n-1)")
        n = cfg.eval.n_test
    rows = export.records(cfg, args.split, n, args.seed, difficulty)
    if args.chat:
        rows = [export.with_messages(r, template, args.system) for r in rows]
    if args.out is None:
        export.write_jsonl(rows, sys.stdout)
    else:
        count = export.write_jsonl(rows, args.out)
        print(f"exported {count} {args.split} records of {cfg.task_name} (seed {args.seed}): {args.out}", file=sys.stderr)
    return 0


def _score(args: argparse.Namespace) -> int:
    """Exact match of an outside model's answers per level; a full labelled grid becomes results.nc + report."""
    from difftrade import results
    from difftrade import score as scoring

    cfg = _export_config(args)
    scores = scoring.score_file(cfg, args.predictions)
    table = scoring.render(cfg, scores)
    print(table)
    if args.out is not None:
        ds = scoring.to_dataset(cfg, scores, str(args.predictions))
        args.out.mkdir(parents=True, exist_ok=True)
        results.atomic_write_netcdf(ds, args.out / "results.nc")
        results.atomic_write_text(table + "\n", args.out / "scores.md")
        print(f"scores:  {args.out / 'scores.md'}")
        print(f"results: {args.out / 'results.nc'}")
        if not args.no_report:
            _report(args.out / "results.nc", args.out)
    return 0


def _select(args: argparse.Namespace) -> int:
    from difftrade import pool

    if args.out is not None and args.out.suffix.lower() not in (".csv", ".npy"):
        raise ValueError(f"--out={str(args.out)!r}; allowed: a .csv or .npy path")
    try:
        scores = pool.load_scores(args.scores, args.column)
    except ImportError as err:  # Parquet without pandas/pyarrow
        raise ValueError(str(err)) from None
    if args.results is not None:
        from difftrade import results
        from difftrade.recommender import recommend

        target = recommend(results.load(args.results), args.budget, seed=args.seed)
        print(target, file=sys.stderr)
    else:
        target = _floats(args.weights, "--weights")
    bins = None if args.bins is None else _floats(args.bins, "--bins")
    selection = pool.select_with_report(scores, args.budget, target, bins=bins, seed=args.seed)
    print(selection.report, file=sys.stderr)
    if args.out is None:
        print("\n".join(map(str, selection.indices.tolist())))
    else:
        pool.save_selection(args.out, selection)
        print(f"selection: {args.out}", file=sys.stderr)
    return 0


def _run_command(args: argparse.Namespace) -> int:
    if args.distributed or any(v is not None for v in (args.coordinator, args.num_processes, args.process_id)):
        from difftrade import multihost

        multihost.initialize(args.coordinator, args.num_processes, args.process_id)
    _run(args.config, args.out or DEFAULT_RUNS / args.config.stem, args.resume)
    return 0


def _pretrain_command(args: argparse.Namespace) -> int:
    _pretrain(args.config, args.out or DEFAULT_RUNS / args.config.stem)
    return 0


def _report_command(args: argparse.Namespace) -> int:
    from difftrade import results

    _report(args.results, args.out or results.results_path(args.results).parent, csv=args.csv)
    return 0


def _merge_command(args: argparse.Namespace) -> int:
    from difftrade import merge, results

    if args.out.suffix != ".nc":
        raise ValueError(f"--out {str(args.out)!r} does not end in .nc; allowed: a netCDF file name, e.g. merged.nc")
    paths = [results.results_path(r) for r in args.runs]
    ds = merge.merge([results.load(p) for p in paths], [str(p) for p in paths])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results.atomic_write_netcdf(ds, args.out)
    dims = ", ".join(f"{ds.sizes[d]} {name}" for d, name in zip(results.GRID_DIMS, ("difficulties", "budgets", "seeds")))
    print(f"merged {len(paths)} runs into {args.out}: {dims}; config hash {ds.attrs['config_hash']}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    _report(_run(args.config, args.out, resume=True), args.out)
    return 0


# ---- parsers: one _add_NAME per command ---------------------------------------------------------

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
CONFIG_HELP = "a TOML config file, or the name of a config shipped with difftrade ({})"


def _plugins_parent() -> argparse.ArgumentParser:
    """The ``--import`` option every command shares."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import MODULE before anything else, so the task families it registers with "
                             "@register can be named (repeatable; from the working directory or sys.path, "
                             "e.g. PYTHONPATH)")
    return parent


def _command(sub: Subparsers, name: str, handler: Callable[[argparse.Namespace], int], **kwargs: str) -> argparse.ArgumentParser:
    """A subcommand's parser, with ``--import`` and its handler attached."""
    p = sub.add_parser(name, parents=[_plugins_parent()], **kwargs)
    p.set_defaults(handler=handler)
    return p


def _add_config(p: argparse.ArgumentParser, name: str = "config", extra: str = "") -> None:
    p.add_argument(name, type=config_path, help=CONFIG_HELP.format(", ".join(packaged_configs()) or "none") + extra)


def _add_tasks(sub: Subparsers) -> None:
    p = _command(sub, "tasks", _tasks, help="list task families or show examples")
    p.add_argument("action", nargs="?", choices=["show"], help="show: render examples of one family")
    p.add_argument("name", nargs="?", help="the task family to show (see the list from `difftrade tasks`)")
    p.add_argument("--difficulty", "-d", type=int, help="level to show (default: the family's easiest, d_min)")
    p.add_argument("-n", type=int, default=5, help="number of examples to show (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the examples' random key (default 0)")


def _add_run(sub: Subparsers) -> None:
    p = _command(sub, "run", _run_command, help="train and evaluate a grid from a TOML config")
    _add_config(p)
    p.add_argument("--out", type=Path, help=f"output directory (default: {DEFAULT_RUNS}/CONFIG_STEM, e.g. "
                                            f"{DEFAULT_RUNS}/quick)")
    p.add_argument("--resume", action="store_true",
                   help="continue a run that --out already holds (same config only): members on disk are "
                        "checked and kept, the rest trained; without it an existing run in --out is refused")
    hosts = p.add_argument_group("multi-host (jax.distributed; run the same command on every host)")
    hosts.add_argument("--distributed", action="store_true", help="join a cluster jax detects (SLURM, MPI, TPU)")
    hosts.add_argument("--coordinator", help="host:port of process 0 (with --num-processes, --process-id)")
    hosts.add_argument("--num-processes", type=int, help="number of processes in the cluster")
    hosts.add_argument("--process-id", type=int, help="this process's index, 0..num-processes-1")


def _add_pretrain(sub: Subparsers) -> None:
    p = _command(sub, "pretrain", _pretrain_command, help="train a one-member config and save it as a base checkpoint")
    _add_config(p, extra="; its grid must have exactly one member")
    p.add_argument("--out", type=Path, help=f"output directory; the base goes to OUT/base (default: "
                                            f"{DEFAULT_RUNS}/CONFIG_STEM)")


def _add_report(sub: Subparsers) -> None:
    p = _command(sub, "report", _report_command, help="tables and figures from results.nc")
    p.add_argument("results", type=Path, help="a run directory or its results.nc")
    p.add_argument("--out", type=Path, help="where report.md and the figures go (default: beside results.nc)")
    p.add_argument("--csv", action="store_true", help="also write tidy tables (one row per member, per member and "
                                                      "level, per checkpoint) as OUT/tables/*.csv")


def _add_merge(sub: Subparsers) -> None:
    p = _command(sub, "merge", _merge_command, help="one grid from runs that differ only in budgets, difficulties or seeds",
                 description="Concatenate finished runs whose configs differ only in grid.budgets, grid.difficulties "
                             "or grid.seeds (disjoint values) into the results file the larger grid would have "
                             "produced: a member's training never depends on the other members of its grid.")
    p.add_argument("runs", nargs="+", type=Path, help="two or more run directories or results.nc files")
    p.add_argument("--out", type=Path, required=True, help="the merged results file (.nc)")


def _add_transfer(sub: Subparsers) -> None:
    p = _command(sub, "transfer", _transfer, help="transfer matrix: accuracy of each training difficulty on every level",
                 description="Exact-match accuracy on every level of the members trained at each difficulty, at "
                             "one budget (mean, min and max over seeds). Given a config, trains it first (resuming).")
    _add_config(p, "source", extra="; or a finished run directory / results.nc")
    p.add_argument("--budget", "-n", type=int, help="the budget to read (default: the largest in the run)")
    p.add_argument("--out", type=Path, help="where transfer.md and the figures go (default: the run directory; "
                                             f"for a config, {DEFAULT_RUNS}/CONFIG_STEM)")


def _add_demo(sub: Subparsers) -> None:
    p = _command(sub, "demo", _demo, help="run the packaged quick config and report into ./difftrade-demo")
    p.add_argument("--out", type=Path, default=Path("difftrade-demo"),
                   help="directory of the run, report.md and the figures (default: ./difftrade-demo; reruns resume)")
    p.add_argument("--config", type=config_path, default="quick",
                   help="the config to run (default: quick, shipped with difftrade; a TOML path works too)")


def _add_bound(sub: Subparsers) -> None:
    p = _command(sub, "bound", _bound, help="PAC-Bayes certificates and shift bounds for a finished run",
                 description="PAC-Bayes certificates and shift bounds for a finished run. Finished chunks of members "
                             "are kept in RUN/bounds.partial/ until bounds.nc is written: after an interruption, "
                             "the same command certifies only the rest.")
    p.add_argument("run", type=Path, help="run directory (with results.nc and chunks/); bounds.nc, bounds.md and "
                                          "the figures are written into it")
    p.add_argument("--n-bound", type=int, default=4096, help="bound-set size per member and distribution (default 4096)")
    p.add_argument("--draws", type=int, default=1,
                   help="Monte-Carlo weight draws per sigma: fresh draws per example (default), or on the whole set")
    p.add_argument("--monte-carlo", choices=["per_example", "whole_set"], default="per_example",
                   help="per_example: r fresh weight draws per bound-set example, slack ln(K/delta')/(r n); whole_set: "
                        "m draws each on the whole set (Langford-Caruana), slack ln(2K/delta')/m")
    p.add_argument("--seeds", help="comma-separated seeds to certify (default: all)")
    p.add_argument("--refresh-shift", action="store_true",
                   help="recompute only the change-of-measure fields of an existing bounds.nc (certificates kept)")
    p.add_argument("--budgets", help="comma-separated budgets to certify (default: all; --prior grid still reads the "
                   "next smaller budget's members as priors)")
    p.add_argument("--bound-set", choices=["fresh", "train"], default="fresh",
                   help="fresh: n_bound new examples from S and T; train: each member's own n training examples")
    p.add_argument("--importance-weighted", action="store_true",
                   help="with --bound-set train: also certify L_T(Q) on the training examples weighted by t/s of "
                        "their level (sees where the errors fall; a second certificate from the same forward passes)")
    p.add_argument("--iw-selection", choices=["own", "shared"], default="own",
                   help="the importance-weighted certificate's sigma and prior sigma: own (its tightest) or shared (those "
                        "of the in-distribution certificate, so both bound the same Q)")
    p.add_argument("--posterior", choices=["isotropic", "fitted"], default="isotropic",
                   help="isotropic: N(w, sigma^2 I) on a grid; fitted: N(mu, diag sigma^2) minimising the bound")
    p.add_argument("--prior", choices=["init", "grid", "prefix"], default="init",
                   help="prior centre: the member's initialisation (or base), the grid's member at the next "
                        "smaller budget, or the member's own weights after its prefix phase (runs with "
                        "train.prefix_steps > 0); grid and prefix need --bound-set train and certify on the "
                        "training examples that prior never saw")
    p.add_argument("--sigmas", help="posterior sigma grid, comma-separated (default 1e-4,3e-4,1e-3,3e-3,1e-2,3e-2; "
                                    "ln of the grid sizes is paid inside the bound)")
    p.add_argument("--prior-sigmas", help="prior sigma_P grid, comma-separated (default 1e-3,3e-3,1e-2,3e-2,1e-1)")
    p.add_argument("--fit-steps", type=int, default=1000, help="Adam steps of the fitted posterior (default 1000)")
    p.add_argument("--fit-mean-lr", type=float, default=1e-4,
                   help="Adam step of the fitted mean; 0 keeps it at the trained weights (certifies the member itself)")


def _add_compress(sub: Subparsers) -> None:
    p = _command(sub, "compress", _compress, help="compression certificates for a run trained in a subspace",
                 description="Quantize each member's subspace coordinates to a learned codebook, code them "
                             "(arithmetic coding), and certify the quantized network's risk by the Occam bound, "
                             "carried to the target by the level structure's change of measure. Writes "
                             "RUN/compression.nc, compression.md and compression.codes.npz; finished chunks are kept "
                             "in RUN/compression.partial/ until then, so a rerun resumes.")
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN",
                   help="finished run directories whose configs have [subspace] dim > 0; several runs of one grid "
                        "that differ only in [subspace] are then combined: each member keeps the description that "
                        "certifies it best")
    p.add_argument("--out", type=Path, help="where the combination of several runs goes (default: RUN1/../best_of)")
    p.add_argument("--levels", type=int, default=8, help="codebook values L (default: 8)")
    p.add_argument("--qat-steps", type=int, default=200,
                   help="quantization-aware training steps (default: 200; 0 rounds to the initial codebook)")
    p.add_argument("--qat-lr-scale", type=float, default=0.1,
                   help="their peak learning rate as a fraction of grid.learning_rate (default: 0.1)")
    p.add_argument("--delta", type=float, default=0.05,
                   help="failure probability of all members' certificates together (default: 0.05)")
    p.add_argument("--member-chunk", type=int, default=0, help="members per compiled call (default: 0, all at once)")


def _add_difficulty(sub: Subparsers) -> None:
    p = _command(sub, "difficulty", _difficulty, help="model-based difficulty: agreement with nominal levels")
    p.add_argument("action", choices=["agreement"], help="agreement: rank agreement of the reference loss with the "
                                                          "task's nominal levels")
    _add_config(p, extra="; with [difficulty] kind = 'model' and a reference")
    p.add_argument("-n", type=int, default=8192, help="fresh pool examples to score (default 8192)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pool's random key (default 0)")


def _add_recommend(sub: Subparsers) -> None:
    p = _command(sub, "recommend", _recommend, help="training difficulty for a budget, from results.nc")
    p.add_argument("results", type=Path, help="a run directory or its results.nc")
    p.add_argument("--budget", "-n", type=int, required=True, help="the data budget to recommend a difficulty for")
    p.add_argument("--method", choices=["auto", "measured", "model"], default="auto",
                   help="measured: the grid's own d*(n); model: a fitted tradeoff model; auto: measured at a "
                        "measured budget, else the model (default)")
    p.add_argument("--no-extrapolation", action="store_true", help="error, not extrapolate")
    p.add_argument("--n-boot", type=int, default=1000, help="seed-bootstrap resamples (0: none; default 1000)")
    p.add_argument("--min-share", type=float, default=0.1, help="plausible-set share (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--validate", action="store_true", help="also leave-one-budget-out validation")
    p.add_argument("--json", action="store_true", help="print the recommendation as JSON")


def _add_select(sub: Subparsers) -> None:
    p = _command(sub, "select", _select, help="pick a budget of pool examples following a recommendation")
    p.add_argument("scores", type=Path, help=".csv/.tsv/.parquet/.npy of scores")
    p.add_argument("--column", help="score column: name or 0-based position")
    p.add_argument("--budget", "-n", type=int, required=True, help="number of pool examples to pick")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--results", type=Path, help="a run directory or its results.nc to recommend from")
    target.add_argument("--weights", help="distribution over levels, e.g. 0,0.25,0.75")
    p.add_argument("--bins", help="L+1 ascending edges, e.g. --bins=-inf,1,2,inf")
    p.add_argument("--seed", type=int, default=0, help="seed of the random pick within levels (default 0)")
    p.add_argument("--out", type=Path, help=".csv (index,level,score) or .npy; default: stdout")


def _add_export_source(p: argparse.ArgumentParser, what: str) -> None:
    """TASK or --config, and --run-seed: the streams an export or a score addresses."""
    p.add_argument("task", nargs="?", help=f"a task family (its default options, point training distributions, "
                                           f"uniform target), or give --config; {what}")
    p.add_argument("--config", type=config_path, help=CONFIG_HELP.format(", ".join(packaged_configs()) or "none")
                   + ": its task, run seed, training and target distributions (instead of TASK)")
    p.add_argument("--run-seed", type=int, help="with TASK: the [run] seed of the native run to match (default 0)")


def _add_export(sub: Subparsers) -> None:
    p = _command(sub, "export", _export, help="write examples as JSONL text (to fine-tune and test any LLM elsewhere)",
                 description="Write examples as JSONL records (task, split, seed, level, index, prompt, answer; train "
                             "records also difficulty and budget; --chat adds messages) from the addressable streams of "
                             "a native run: --split train is exactly member (difficulty, n, seed)'s training set (budgets "
                             "nest: budget n is the first n records of any larger budget); --split test is each level's "
                             "held-out test examples 0..n-1 (never a training key); --split target is n test examples "
                             "with levels drawn from the target distribution. See docs/llm_bridge.md.")
    _add_export_source(p, "the examples are those of a native run of it")
    p.add_argument("--split", choices=["train", "test", "target"], default="train",
                   help="train: a member's training examples (default); test: each level's test examples; target: "
                        "test examples under the target distribution")
    p.add_argument("--difficulty", "-d",
                   help="train: the member's training difficulty (its grid row; required); test: comma-separated "
                        "levels (default: all); target: not used")
    p.add_argument("-n", "--budget", dest="n", type=int,
                   help="train: the budget n, examples 0..n-1 (required); test: examples per level; target: examples "
                        "(test and target default to the config's eval.n_test, 512 for TASK)")
    p.add_argument("--seed", type=int, default=0,
                   help="the member's grid seed: its data stream and test sets (default 0)")
    p.add_argument("--chat", action="store_true",
                   help="add messages: [system], user (--template), assistant (the answer)")
    p.add_argument("--system", help="system message of the chat form (implies --chat)")
    p.add_argument("--template", default="{prompt}=",
                   help="user message of the chat form, with the field {prompt} (default '{prompt}='; implies --chat)")
    p.add_argument("--out", "-o", type=Path, help="JSONL file to write (default: stdout)")


def _add_score(sub: Subparsers) -> None:
    p = _command(sub, "score", _score, help="score an outside model's JSONL answers per level; a grid becomes results.nc",
                 description="Exact match (after NFKC, removing whitespace, lower-casing) of the 'prediction' of each "
                             "record of PREDICTIONS against the answer difftrade generates at its address (split, seed, "
                             "level, index). Records labelled with difficulty and budget are scored per member; a full "
                             "difficulty x budget x seed grid with --out becomes results.nc, report.md and figures, as "
                             "after `difftrade run`. See docs/llm_bridge.md.")
    _add_export_source(p, "the examples are regenerated from it")
    p.add_argument("predictions", type=Path,
                   help="JSONL: exported records (or their split, seed, level, index) with 'prediction', the model's "
                        "answer text, and 'difficulty', 'budget' naming the member that answered")
    p.add_argument("--out", type=Path,
                   help="directory for results.nc, scores.md, report.md and the figures (needs a full labelled grid)")
    p.add_argument("--no-report", action="store_true", help="with --out: write results.nc and scores.md only")


COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_tasks, _add_run, _add_pretrain, _add_report, _add_merge, _add_transfer, _add_demo, _add_bound, _add_compress,
    _add_difficulty, _add_recommend, _add_select, _add_export, _add_score,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="difftrade", description="Data difficulty vs data budget.")
    parser.add_argument("--version", action="version", version=f"difftrade {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def _prepare(args: argparse.Namespace) -> None:
    """Before a command: jax's CPU devices for grid commands (TOML read only), then ``--import`` modules."""
    if args.command in GRID_COMMANDS:
        _one_cpu_device_per_core(_grid_members(args.config))
    if args.command == "transfer" and args.source.suffix == ".toml":
        _one_cpu_device_per_core(_grid_members(args.source))
    if args.imports:
        from difftrade.tasks import import_modules

        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.append(os.getcwd())  # as with `python -m`: modules in the working directory, last
        import_modules(args.imports)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _prepare(args)
        return args.handler(args)
    except ValueError as err:
        print(f"difftrade: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a permission: one line naming the file; finished work stays on disk
        where = f" ({err.filename})" if err.filename else ""
        print(f"difftrade: error: {err.strerror or err}{where}; what was finished is kept "
              "(rerun with --resume where the command has it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
