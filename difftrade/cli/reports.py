"""Handlers of the commands that read finished results: ``report``, ``merge``, ``recommend`` and
``select`` (pool examples following a recommendation or given weights)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from difftrade.cli.common import parse_floats, parse_ints


def write_report(results_path: Path, out_dir: Path, csv: bool = False) -> str:
    from difftrade.analysis import html, plots, report, tables
    from difftrade.results import schema as results
    from difftrade.runner.rundir import DirLock

    ds = results.load(results_path)
    with DirLock(out_dir, "--out"):  # one writer per directory, as for run, bound and compress
        print(f"difftrade: writing the report into {out_dir}", file=sys.stderr)
        text = report.render(ds)
        results.atomic_write_text(text, out_dir / "report.md")
        written = plots.save_all(ds, out_dir)
        pngs = [p for p in written if p.suffix == ".png"]
        title = f"difftrade report: {ds.attrs.get('task', '')} ({ds.attrs.get('config_hash', '')})"
        page = html.page(text, [p.name for p in pngs], title)
        results.atomic_write_text(page, out_dir / "index.html")
    print(text)
    print(f"figures: {', '.join(str(p) for p in pngs)}")
    if csv:
        print(f"tables:  {', '.join(str(p) for p in tables.write_tables(ds, out_dir))}")
    print(f"report:  {out_dir / 'report.md'} (in a browser: {out_dir / 'index.html'})")
    return text


def report_command(args: argparse.Namespace) -> int:
    from difftrade.results import schema as results

    if len(args.results) > 1:
        return _compare(args.results, args.out or Path())
    (run,) = args.results
    write_report(run, args.out or results.results_path(run).parent, csv=args.csv)
    return 0


def _compare(runs: list[Path], out: Path) -> int:
    """``report A B ...``: OUT/comparison.md."""
    from difftrade.analysis import comparison
    from difftrade.results import schema as results

    paths = [results.results_path(r) for r in runs]
    names = [str(r) for r in runs]
    if len(set(names)) < len(names):
        raise ValueError(f"runs {names} name one run twice; allowed: distinct runs")
    text = comparison.compare({n: results.load(p) for n, p in zip(names, paths)})
    out.mkdir(parents=True, exist_ok=True)
    results.atomic_write_text(text, out / "comparison.md")
    print(text)
    print(f"written: {out / 'comparison.md'}", file=sys.stderr)
    return 0


def merge_command(args: argparse.Namespace) -> int:
    from difftrade.results import schema as results
    from difftrade.runner import merge
    from difftrade.runner.rundir import refuse_run_output

    if args.out.suffix != ".nc":
        raise ValueError(
            f"--out {str(args.out)!r} does not end in .nc; allowed: a netCDF file name, e.g. merged.nc"
        )
    refuse_run_output(args.out, "--out", "the merged results")
    paths = [results.results_path(r) for r in args.runs]
    ds = merge.merge([results.load(p) for p in paths], [str(p) for p in paths])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results.atomic_write_netcdf(ds, args.out)
    dims = ", ".join(
        f"{ds.sizes[d]} {name}"
        for d, name in zip(results.GRID_DIMS, ("difficulties", "budgets", "seeds"))
    )
    print(
        f"merged {len(paths)} runs into {args.out}: {dims}; config hash {ds.attrs['config_hash']}"
    )
    return 0


def recommend_command(args: argparse.Namespace) -> int:
    import json

    from difftrade.analysis import forward, predictors
    from difftrade.recommender import recommend, validate_leave_one_budget_out
    from difftrade.results import schema as results

    if args.budget is None and not args.validate:
        raise ValueError("--budget is required unless --validate is given")
    ds = results.load(args.results)
    rec = None
    if args.budget is not None:
        rec = recommend(
            ds,
            args.budget,
            method=args.method,
            allow_extrapolation=not args.no_extrapolation,
            n_boot=args.n_boot,
            min_share=args.min_share,
            seed=args.seed,
        )
    if args.race is not None:
        return _race(args, ds, rec)
    if not args.validate:
        print(json.dumps(rec.to_dict(), indent=2) if args.json else rec)
        return 0
    records = predictors.forward_validation(ds)
    if args.json:
        scores = [forward.json_ready(s) for s in forward.summary(records)]
        doc = {
            "recommendation": None if rec is None else rec.to_dict(),
            "forward": [r.to_json() for r in records],
            "forward_summary": scores,
        }
        print(json.dumps(doc, indent=2, allow_nan=False))
        return 0
    if rec is not None:
        print(rec, end="\n\n")
    print("forward validation (fitted on the smallest budgets, predicting larger ones):")
    print(forward.table(records))
    print(
        "\nleave-one-budget-out (interpolation: each budget predicted from its neighbours on both sides):"
    )
    print(validate_leave_one_budget_out(ds))
    return 0


def _race(args: argparse.Namespace, ds: Any, rec: Any) -> int:
    """``recommend --race``: the recommendation, then a live race at ``--budget``."""
    import json

    from difftrade.recommender import live_race
    from difftrade.tasks import configs

    if args.budget is None or args.validate:
        raise ValueError("--race needs --budget and no --validate")
    print(rec, end="\n\n", file=sys.stderr if args.json else sys.stdout)
    out = args.race_out or Path("runs") / f"race_n{args.budget}"
    wanted = parse_ints(args.race_difficulties, "--race-difficulties")
    found = live_race.live_race(
        configs.stored(ds, str(args.results)),
        args.budget,
        args.race,
        out,
        None if wanted is None else list(wanted),
    )
    print(json.dumps(found.to_dict(), indent=2) if args.json else found)
    print(f"written: {out / live_race.RACE_FILE}", file=sys.stderr)
    return 0


def select_command(args: argparse.Namespace) -> int:
    from difftrade.recommender import pool, pool_files

    if args.out is not None and args.out.suffix.lower() not in (".csv", ".npy"):
        raise ValueError(f"--out={str(args.out)!r}; allowed: a .csv or .npy path")
    try:
        scores = pool_files.load_scores(args.scores, args.column)
    except ImportError as err:  # Parquet without pandas/pyarrow
        raise ValueError(str(err)) from None
    if args.results is not None:
        from difftrade.recommender import recommend
        from difftrade.results import schema as results

        target = recommend(results.load(args.results), args.budget, seed=args.seed)
        print(target, file=sys.stderr)
    else:
        target = parse_floats(args.weights, "--weights")
    bins = None if args.bins is None else parse_floats(args.bins, "--bins")
    selection = pool.select_with_report(scores, args.budget, target, bins=bins, seed=args.seed)
    print(selection.report, file=sys.stderr)
    if args.out is None:
        print("\n".join(map(str, selection.indices.tolist())))
    else:
        pool_files.save_selection(args.out, selection)
        print(f"selection: {args.out}", file=sys.stderr)
    return 0
