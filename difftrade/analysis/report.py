"""Text report of a results Dataset: d*(n) with intervals and paired tests, the gap tables,
mechanism checks."""

from __future__ import annotations

import numpy as np
import xarray as xr

from difftrade.analysis import forward, model_tables
from difftrade.analysis.optimum import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    bootstrap_d_star,
    distinct_resamples,
    seed_mean,
    support_note,
    trend,
)
from difftrade.analysis.paired_comparison import compare_to_d_star
from difftrade.results.divergence import diverged_mask
from difftrade.results.schema import require
from difftrade.tasks import configs
from difftrade.theory.grid_values import nan_mean

GRID = ("difficulty", "budget", "seed")
REPORT_VARIABLES = ("target_risk", "train_risk", "generalization_gap", "extrapolation_gap")
MAX_LISTED = 10  # diverged members named in the header before the list is abbreviated


def _grid(ds: xr.Dataset, name: str) -> np.ndarray:
    """``ds[name]`` as a float array ``[D, N, S]``."""
    return np.asarray(ds[name].transpose(*GRID).values, dtype=float)


def _levels(values: np.ndarray) -> np.ndarray:
    """Difficulty values ``[N]`` as ints when all are finite, else as floats with NaN."""
    return values.astype(int) if np.all(np.isfinite(values)) else values


def _fraction(values: list[float]) -> float:
    """Mean of the finite entries (NaN if none)."""
    return float(nan_mean(np.asarray(values, dtype=float)))


def mechanism(ds: xr.Dataset) -> dict[str, float]:
    """How consistently the paper's mechanism shows (fractions of ordered pairs that differ by
    more than 0.01, seed means).

    gen_gap_rises_with_d: at fixed n, over difficulties; gen_gap_falls_with_n: at fixed d, over
    budgets; extrap_gap_falls_with_d: at fixed n, over difficulties.
    """
    gen = seed_mean(_grid(ds, "generalization_gap"))  # [D, N]
    ext = seed_mean(_grid(ds, "extrapolation_gap"))
    return {
        "gen_gap_rises_with_d": _fraction([trend(gen[:, j]) for j in range(gen.shape[1])]),
        "gen_gap_falls_with_n": _fraction([1 - trend(gen[i, :]) for i in range(gen.shape[0])]),
        "extrap_gap_falls_with_d": _fraction([1 - trend(ext[:, j]) for j in range(ext.shape[1])]),
    }


def diverged_members(
    ds: xr.Dataset,
) -> tuple[list[tuple[float, int, int]], list[tuple[float, int]]]:
    """Diverged members as ``(difficulty, budget, seed)`` and the ``(difficulty, budget)`` cells
    in which every seed diverged (``diverged``, else ``nonfinite_steps > 0``; none if neither)."""
    mask = diverged_mask(ds)
    if mask is None:
        return [], []
    bad = np.asarray(mask.transpose(*GRID).values, dtype=bool)  # [D, N, S]
    d, n, s = (ds[k].values for k in GRID)
    members = [
        (d[i].item(), int(n[j]), int(s[k])) for i, j, k in zip(*np.nonzero(bad), strict=True)
    ]
    cells = [(d[i].item(), int(n[j])) for i, j in zip(*np.nonzero(bad.all(axis=2)), strict=True)]
    return members, cells


def summary(ds: xr.Dataset, n_boot: int = BOOTSTRAP_RESAMPLES) -> dict[str, object]:
    """Numbers a report states: d*(n) with interval, direction verdict, mechanism, flagged
    members, and per budget the paired sign-flip comparison against d*(n) (Holm, alpha 0.05).

    ``d_star``/``low``/``high``/``runner_up``/``runner_up_margin``: ``[N]``; ``not_worse``: one
    tuple of difficulties per budget; ``diverged``: ``(d, n, seed)`` triples; ``all_diverged_cells``:
    ``(d, n)`` pairs.
    """
    require(ds, REPORT_VARIABLES, "difftrade report")
    risk, diffs = _grid(ds, "target_risk"), ds["difficulty"].values
    boot = bootstrap_d_star(risk, diffs, n_boot=n_boot, level=0.9)
    paired = compare_to_d_star(risk, diffs, method="sign_flip", alpha=0.05)
    d_star = _levels(boot.d_star)
    members, cells = diverged_members(ds)
    num_seeds = int(risk.shape[2])
    return {
        "d_star": d_star,
        "low": _levels(boot.low),
        "high": _levels(boot.high),
        "moves_harder": bool(d_star[-1] > d_star[0]),
        "never_decreases": bool(np.all(np.diff(d_star) >= 0)),
        "separated": bool(boot.low[-1] > boot.high[0]),
        "mechanism": mechanism(ds),
        "nonfinite_members": int(np.sum(ds["nonfinite_steps"].values > 0))
        if "nonfinite_steps" in ds
        else len(members),
        "num_seeds": num_seeds,
        "n_boot": n_boot,
        "distinct_resamples": distinct_resamples(num_seeds),
        "support_note": support_note(num_seeds),
        "not_worse": [paired.not_worse_set(j) for j in range(risk.shape[1])],
        "runner_up": paired.runner_up,
        "runner_up_margin": paired.runner_up_margin,
        "p_adjusted": paired.p_adjusted,
        "diverged": members,
        "all_diverged_cells": cells,
    }


def _fmt_level(value: float) -> str:
    return "—" if not np.isfinite(value) else f"{value:g}"


def _diverged_lines(s: dict[str, object]) -> list[str]:
    """Header lines naming the diverged members (abbreviated past ``MAX_LISTED``)."""
    members, cells = s["diverged"], s["all_diverged_cells"]
    if not members:
        return ["diverged members (NaN/inf training steps): none"]
    named = ", ".join(f"(d={d:g}, n={n:,}, seed {k})" for d, n, k in members[:MAX_LISTED])
    more = f", and {len(members) - MAX_LISTED} more" if len(members) > MAX_LISTED else ""
    lines = [
        (
            "diverged members (NaN/inf training steps; their risks are NaN and every seed mean skips them): "
            f"{len(members)}: {named}{more}"
        )
    ]
    if cells:
        lines.append(
            "cells in which every seed diverged have no seed mean and were not chosen as d*: "
            + ", ".join(f"(d={d:g}, n={n:,})" for d, n in cells)
        )
    return lines


def _header(ds: xr.Dataset, s: dict[str, object]) -> list[str]:
    S = s["num_seeds"]
    return [
        f"# difftrade report: {ds.attrs.get('task', '?')} (config {ds.attrs.get('config_hash', '?')})",
        "",
        (
            f"device: {ds.attrs.get('device', '?')}; jax {ds.attrs.get('version_jax', '?')}; "
            f"wall time {ds.attrs.get('wall_seconds', float('nan')):.0f} s; "
            + (
                f"{int(ds.attrs['compiled_programs'])} compiled programs; "
                if "compiled_programs" in ds.attrs
                else ""
            )
            + f"{ds.sizes['difficulty']} difficulties x {ds.sizes['budget']} budgets x {S} seeds"
        ),
        "",
        (
            f"seed bootstrap: {s['n_boot']:,} resamples drawn (generator seed {BOOTSTRAP_SEED}); {S} seeds allow {s['distinct_resamples']:,} distinct "
            "resamples (multisets of seeds)"
        ),
        "",
        *([line, ""] if (line := stopping_line(ds)) else []),
        *_diverged_lines(s),
        "",
    ]


def stopping_line(ds: xr.Dataset) -> str | None:
    """With validation stopping (``stopped_step`` stored): how many members hit the step cap and
    their train risk, and the median selected step per training difficulty; None otherwise."""
    if "stopped_step" not in ds:
        return None
    train = configs.stored(ds).train
    dims = ("difficulty", "budget", "seed")
    stopped, selected = (ds[v].transpose(*dims).values for v in ("stopped_step", "selected_step"))
    risk = ds["train_risk"].transpose(*dims).values
    hit = stopped >= train.steps
    line = (
        f"Validation stopping (cap {train.steps:,} steps, patience {train.patience} checkpoints of "
        f"{train.steps // train.num_checkpoints} steps, {train.val_examples} validation examples): "
        f"{int(hit.sum())} of {hit.size} members hit the cap"
    )
    if hit.any():
        line += f" (their train risk: median {np.nanmedian(risk[hit]):.3f}, max {np.nanmax(risk[hit]):.3f})"
    medians = ", ".join(
        f"{int(d)}: {np.median(selected[i]):,.0f}" for i, d in enumerate(ds["difficulty"].values)
    )
    return line + f"; median selected step by training difficulty: {medians}."


def _runner_up_cell(runner: float, margin: float) -> str:
    if not np.isfinite(runner):
        return "—"
    return f"{runner:g} ({margin:+.3f})" if np.isfinite(margin) else f"{runner:g} (no paired seeds)"


def _d_star_table(ds: xr.Dataset, s: dict[str, object]) -> list[str]:
    diffs, budgets = ds["difficulty"].values, ds["budget"].values
    lines = [
        "## Optimal training difficulty d*(n) (argmin of seed-mean target risk; 90% bootstrap over seeds)",
        "",
        (
            "Not significantly worse: the difficulties a one-sided paired sign-flip test (exact over the "
            "seed sign flips, Holm over the comparisons of a budget, alpha 0.05) does not find worse than "
            "d*(n); d* is chosen from the same data, so the test is optimistic. Runner-up: the second-lowest "
            "seed mean, with its mean paired difference to d*."
        ),
        "",
        "| budget n | d*(n) | interval | target risk at d* | not significantly worse | runner-up (margin) |",
        "|---:|---:|:---:|---:|:---|---:|",
    ]
    tr = seed_mean(_grid(ds, "target_risk"))
    for j, b in enumerate(budgets):
        best = float(s["d_star"][j])
        if not np.isfinite(best):
            lines.append(f"| {int(b):,} | — | — | — | — | — |")
            continue
        i = int(np.flatnonzero(diffs == best)[0])
        keep = ", ".join(_fmt_level(d) for d in s["not_worse"][j])
        second = _runner_up_cell(float(s["runner_up"][j]), float(s["runner_up_margin"][j]))
        lines.append(
            f"| {int(b):,} | {_fmt_level(best)} | [{_fmt_level(s['low'][j])}, {_fmt_level(s['high'][j])}] "
            f"| {tr[i, j]:.3f} | {{{keep}}} | {second} |"
        )
    if s["support_note"]:
        lines += ["", f"Note: {s['support_note']}."]
    return lines


def _gap_tables(ds: xr.Dataset) -> list[str]:
    diffs, budgets = ds["difficulty"].values, ds["budget"].values
    names = ("train_risk", "generalization_gap", "extrapolation_gap", "target_risk")
    mean = {k: seed_mean(_grid(ds, k)) for k in names}
    lines = ["", "## Risks and gaps (seed mean; rows = training difficulty)", ""]
    for j, b in enumerate(budgets):
        lines += [
            f"**n = {int(b):,}**",
            "",
            "| d | train | gen. gap | extrap. gap | target |",
            "|---:|---:|---:|---:|---:|",
        ]
        for i, d in enumerate(diffs):
            lines.append(f"| {d} | " + " | ".join(f"{mean[k][i, j]:.3f}" for k in names) + " |")
        lines.append("")
    return lines


def _direction(s: dict[str, object]) -> str:
    """The verdict on d*(n) from the smallest to the largest budget."""
    if s["support_note"]:
        evidence = s["support_note"]
    else:
        evidence = (
            f"bootstrap intervals at the ends {'do not overlap' if s['separated'] else 'overlap'}"
        )
    return (
        f"* d*(n) from the smallest to the largest budget: {_fmt_level(s['d_star'][0])} -> "
        f"{_fmt_level(s['d_star'][-1])} "
        f"({'moves to harder data' if s['moves_harder'] else 'does NOT move to harder data'}; "
        f"{'never decreases' if s['never_decreases'] else 'not monotone'}; {evidence})."
    )


def _overlap_line(ds: xr.Dataset) -> list[str]:
    if "test_in_train_fraction" not in ds:
        return []
    diffs, budgets = ds["difficulty"].values, ds["budget"].values
    hit = ds["test_in_train_fraction"].values
    cells = [
        f"d={diffs[i]}, n={int(budgets[j]):,}: {hit[i, j]:.0%}"
        for i in range(len(diffs))
        for j in range(len(budgets))
        if np.isfinite(hit[i, j]) and hit[i, j] > 0.01
    ]
    if not cells:
        return []
    return [
        "* Small sample spaces: held-out test examples that also occur in the training set "
        "(memorisation counts as generalization there): " + "; ".join(cells) + "."
    ]


def render(ds: xr.Dataset, n_boot: int = BOOTSTRAP_RESAMPLES) -> str:
    """Markdown report."""
    s = summary(ds, n_boot)
    m = s["mechanism"]
    lines = [*_header(ds, s), *_d_star_table(ds, s), *_gap_tables(ds)]
    lines += [
        "## Does the paper's finding show here?",
        "",
        _direction(s),
        (
            f"* generalization gap rises with difficulty at fixed n in {m['gen_gap_rises_with_d']:.0%} of ordered pairs that differ; "
            f"falls with n at fixed d in {m['gen_gap_falls_with_n']:.0%}; extrapolation gap falls with difficulty in "
            f"{m['extrap_gap_falls_with_d']:.0%}."
        ),
        *_overlap_line(ds),
    ]
    if not s["moves_harder"]:
        lines.append(
            "* At this scale the direction is not visible: the budgets or training steps are too small for harder "
            "data to pay off (see docs/results.md for the GPU-scale run)."
        )
    if s["nonfinite_members"]:
        lines.append(
            f"* WARNING: {s['nonfinite_members']} members had NaN/inf training steps (see nonfinite_steps)."
        )
    return "\n".join(lines + _models(ds)) + "\n"


def _models(ds: xr.Dataset) -> list[str]:
    """Models of target risk: fit, leave-one-budget-out and forward (:mod:`difftrade.analysis.model_tables`)."""
    if ds.sizes["budget"] < 3:
        return [
            "",
            "## Models of target risk",
            "",
            "Not fitted: fewer than 3 budgets leave nothing to hold out.",
        ]
    lines = [
        "",
        "## Models of target risk",
        "",
        (
            "Fit, and d* at a budget the fit did not see with measured budgets on both sides (leave one budget out: "
            "interpolation)."
        ),
        "",
        model_tables.model_table(ds),
    ]
    if ds.sizes["budget"] > forward.MIN_PILOTS:
        lines += ["", "## Predicting d* at larger budgets", "", model_tables.forward_table(ds)]
    return lines
