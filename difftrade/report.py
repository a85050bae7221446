"""Text report of a results Dataset: d*(n) with intervals, the gap tables, mechanism checks."""

from __future__ import annotations

import numpy as np
import xarray as xr

from difftrade.evaluate import bootstrap_d_star


def _trend(values: np.ndarray, tol: float = 0.01) -> float:
    """Among ordered pairs (i < j) whose values differ by more than ``tol``, the fraction with
    values[j] > values[i] (1 = increasing, 0 = decreasing; NaN if every pair is a tie, e.g. all
    gaps saturated at 0 or 1)."""
    v = np.asarray(values)
    pairs = [(i, j) for i in range(len(v)) for j in range(i + 1, len(v)) if abs(v[j] - v[i]) > tol]
    return float(np.mean([v[j] > v[i] for i, j in pairs])) if pairs else float("nan")


def mechanism(ds: xr.Dataset) -> dict[str, float]:
    """How consistently the paper's mechanism shows (fractions of ordered pairs that differ by
    more than 0.01, seed means).

    gen_gap_rises_with_d: at fixed n, over difficulties; gen_gap_falls_with_n: at fixed d, over
    budgets; extrap_gap_falls_with_d: at fixed n, over difficulties.
    """
    gen = ds["generalization_gap"].mean("seed").values  # [D, N]
    ext = ds["extrapolation_gap"].mean("seed").values
    return {
        "gen_gap_rises_with_d": float(np.nanmean([_trend(gen[:, j]) for j in range(gen.shape[1])])),
        "gen_gap_falls_with_n": float(np.nanmean([1 - _trend(gen[i, :]) for i in range(gen.shape[0])])),
        "extrap_gap_falls_with_d": float(np.nanmean([1 - _trend(ext[:, j]) for j in range(ext.shape[1])])),
    }


def summary(ds: xr.Dataset, n_boot: int = 1000) -> dict[str, object]:
    """Numbers a report states: d*(n) with interval, direction verdict, mechanism, flagged members."""
    boot = bootstrap_d_star(ds["target_risk"].values, ds["difficulty"].values, n_boot=n_boot, level=0.9)
    bad = ds["nonfinite_steps"].values > 0
    d_star = boot.d_star.astype(int)
    return {
        "d_star": d_star,
        "low": boot.low.astype(int),
        "high": boot.high.astype(int),
        "moves_harder": bool(d_star[-1] > d_star[0]),
        "never_decreases": bool(np.all(np.diff(d_star) >= 0)),
        "separated": bool(boot.low[-1] > boot.high[0]),
        "mechanism": mechanism(ds),
        "nonfinite_members": int(bad.sum()),
    }


def render(ds: xr.Dataset, n_boot: int = 1000) -> str:
    """Markdown report."""
    s = summary(ds, n_boot)
    diffs, budgets = ds["difficulty"].values, ds["budget"].values
    lines = [
        f"# difftrade report: {ds.attrs.get('task', '?')} (config {ds.attrs.get('config_hash', '?')})",
        "",
        f"device: {ds.attrs.get('device', '?')}; jax {ds.attrs.get('version_jax', '?')}; "
        f"wall time {ds.attrs.get('wall_seconds', float('nan')):.0f} s; "
        f"{ds.sizes['difficulty']} difficulties x {ds.sizes['budget']} budgets x {ds.sizes['seed']} seeds",
        "",
        "## Optimal training difficulty d*(n) (argmin of seed-mean target risk; 90% bootstrap over seeds)",
        "",
        "| budget n | d*(n) | interval | target risk at d* |",
        "|---:|---:|:---:|---:|",
    ]
    tr = ds["target_risk"].mean("seed").values
    for j, b in enumerate(budgets):
        i = int(np.where(diffs == s["d_star"][j])[0][0])
        lines.append(f"| {int(b):,} | {s['d_star'][j]} | [{s['low'][j]}, {s['high'][j]}] | {tr[i, j]:.3f} |")
    lines += ["", "## Risks and gaps (seed mean; rows = training difficulty)", ""]
    for j, b in enumerate(budgets):
        lines += [f"**n = {int(b):,}**", "", "| d | train | gen. gap | extrap. gap | target |", "|---:|---:|---:|---:|---:|"]
        for i, d in enumerate(diffs):
            row = [ds[k].mean("seed").values[i, j] for k in ("train_risk", "generalization_gap", "extrapolation_gap", "target_risk")]
            lines.append(f"| {d} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
        lines.append("")
    m = s["mechanism"]
    lines += [
        "## Does the paper's finding show here?",
        "",
        f"* d*(n) from the smallest to the largest budget: {s['d_star'][0]} -> {s['d_star'][-1]} "
        f"({'moves to harder data' if s['moves_harder'] else 'does NOT move to harder data'}; "
        f"{'never decreases' if s['never_decreases'] else 'not monotone'}; bootstrap intervals at the ends "
        f"{'do not overlap' if s['separated'] else 'overlap'}).",
        f"* generalization gap rises with difficulty at fixed n in {m['gen_gap_rises_with_d']:.0%} of ordered pairs that differ; "
        f"falls with n at fixed d in {m['gen_gap_falls_with_n']:.0%}; extrapolation gap falls with difficulty in "
        f"{m['extrap_gap_falls_with_d']:.0%}.",
    ]
    if "test_in_train_fraction" in ds:
        hit = ds["test_in_train_fraction"].values
        cells = [
            f"d={diffs[i]}, n={int(budgets[j]):,}: {hit[i, j]:.0%}"
            for i in range(len(diffs)) for j in range(len(budgets)) if np.isfinite(hit[i, j]) and hit[i, j] > 0.01
        ]
        if cells:
            lines.append(
                "* Small sample spaces: held-out test examples that also occur in the training set "
                "(memorisation counts as generalization there): " + "; ".join(cells) + "."
            )
    if not s["moves_harder"]:
        lines.append(
            "* At this scale the direction is not visible: the budgets or training steps are too small for harder "
            "data to pay off (see docs/results.md for the GPU-scale run)."
        )
    if s["nonfinite_members"]:
        lines.append(f"* WARNING: {s['nonfinite_members']} members had NaN/inf training steps (see nonfinite_steps).")
    return "\n".join(lines) + "\n"
