"""Handlers of the certificate commands: ``bound`` (PAC-Bayes certificates and shift bounds) and
``compress`` (compression certificates of [subspace] runs)."""

from __future__ import annotations

import argparse

from difftrade.cli.common import parse_floats, parse_ints


def bound_command(args: argparse.Namespace) -> int:
    from difftrade.analysis import plots
    from difftrade.certify import BoundSettings, certify_run, refresh_shift, render
    from difftrade.runner.rundir import load_run
    from difftrade.theory.posterior import FitConfig

    grids = {
        name: parse_floats(getattr(args, name), "--" + name.replace("_", "-"))
        for name in ("sigmas", "prior_sigmas")
        if getattr(args, name) is not None
    }
    settings = BoundSettings(
        **grids,
        n_bound=args.n_bound,
        num_draws=args.draws,
        monte_carlo=args.monte_carlo,
        seeds=parse_ints(args.seeds, "--seeds"),
        budgets=parse_ints(args.budgets, "--budgets"),
        bound_set=args.bound_set,
        posterior=args.posterior,
        prior=args.prior,
        importance_weighted=args.importance_weighted,
        iw_selection=args.iw_selection,
        fit=FitConfig(steps=args.fit_steps, mean_learning_rate=args.fit_mean_lr),
    )
    _, ds = load_run(args.run)
    b = refresh_shift(args.run) if args.refresh_shift else certify_run(args.run, settings)
    text = render(ds, b)
    (args.run / "bounds.md").write_text(text)
    written = plots.save_bounds(ds, b, args.run)
    print(text)
    print(
        f"bounds: {args.run / 'bounds.nc'}; figures: {', '.join(str(p) for p in written if p.suffix == '.png')}"
    )
    return 0


def compress_command(args: argparse.Namespace) -> int:
    """Quantize, code and certify every member of a [subspace] run."""
    from difftrade.certify.compress import CompressSettings, best_of, compress_run

    settings = CompressSettings(
        levels=args.levels,
        qat_steps=args.qat_steps,
        qat_lr_scale=args.qat_lr_scale,
        delta=args.delta,
        member_chunk=args.member_chunk,
    )
    for run in args.runs:
        compress_run(run, settings)
    out = args.runs[0]
    if len(args.runs) > 1:
        out = args.out or args.runs[0].parent / "best_of"
        best_of(args.runs, out)
    print((out / "compression.md").read_text())
    print(f"compression certificates: {out / 'compression.nc'}")
    return 0
