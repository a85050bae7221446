"""Tables of the models of target risk of one grid: how well each describes the grid (AIC, R²),
how well it interpolates a budget between measured ones (leave one budget out), and how well it
predicts larger budgets from smaller ones (forward, :mod:`difftrade.analysis.forward`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from difftrade.analysis import forward, predictors
from difftrade.analysis import optimum as analysis
from difftrade.tasks import configs
from difftrade.tasks.configs import source_task
from difftrade.theory import level_model, threshold, tradeoff_families, tradeoff_fitting


def model_table(ds: xr.Dataset) -> str:
    """Threshold models (π from coverage, π fitted) and the smooth families: AIC, R², and
    leave-one-budget-out d* error (interpolation: each budget has measured neighbours on both
    sides), all on the seed means of target risk. Prediction is scored by :func:`forward_table`."""
    d, n = ds["difficulty"].values.astype(float), ds["budget"].values.astype(float)
    y = analysis.seed_mean(predictors.risk_grid(ds))
    reason = not_identified(y)
    if reason:
        return f"No model fitted: {reason}."
    pi = threshold.uncovered_mass(
        ds["train_weights"].values,
        ds["target_weights"].values,
        source_task(configs.stored(ds)).level_structure,
    )
    total = float(np.nansum((y - np.nanmean(y)) ** 2))
    fitters: list[tuple[str, Callable[[], tuple[int, float, float]], threshold.Fitter]] = []
    for label, p in (("threshold, π from coverage", pi), ("threshold, π fitted", None)):
        fitters.append(
            (
                label,
                lambda p=p: _threshold_stats(threshold.fit_threshold(d, n, y, p), total),
                threshold.threshold_fitter(p),
            )
        )
    fitters.append(
        (
            "per level (examples of each level)",
            lambda: _level_stats(ds, y, total),
            predictors.level_predictor(ds),
        )
    )
    for model in tradeoff_families.FAMILIES:
        fitters.append(
            (
                model.name,
                lambda model=model: _family_stats(tradeoff_fitting.fit(model, d, n, y), total),
                predictors.family_predictor(model),
            )
        )
    rows, failed = [], []
    for label, stats, fitter in fitters:
        try:
            rows.append((label, *stats(), threshold.leave_one_budget_out(fitter, d, n, y)))
        except (ValueError, RuntimeError) as err:
            failed.append(f"{label}: {err}")
    lines = [
        "| model | parameters | AIC | R² | leave-one-budget-out d* error (levels) | exact | held-out risk RMSE |",
        "|:---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, k, aic, r2, score in sorted(rows, key=lambda row: row[2]):
        exact = "–" if not np.isfinite(score.exact) else f"{score.exact:.0%}"
        lines.append(
            f"| {label} | {k} | {aic:.1f} | {r2:.2f} | {score.error:.2f} | {exact} | {score.risk_rmse:.3f} |"
        )
    return "\n".join(lines + [f"\nNot fitted: {reason}" for reason in failed])


def not_identified(y: np.ndarray) -> str | None:
    """Why no model of target risk is identified on the seed means ``y [D, N]``, or None: every
    cell diverged, fewer than two budgets with a finite cell, or the same value in every cell
    (nothing varies to fit, and d* is a tie)."""
    finite = np.isfinite(y)
    if not finite.any():
        return "every member diverged (target risk is NaN in every cell)"
    if finite.any(axis=0).sum() < 2:
        return "fewer than two budgets have a member that did not diverge"
    if np.ptp(y[finite]) == 0:
        return f"target risk is {y[finite][0]:.3g} in every cell, so every difficulty ties at every budget"
    return None


def _level_stats(ds: xr.Dataset, y: np.ndarray, total: float) -> tuple[int, float, float]:
    """Parameters, AIC and R² on the target-risk seed means ``y [D, N]`` of the per-level model
    fitted to all per-level accuracies."""
    mass, acc, target = predictors.level_inputs(ds)
    fit = level_model.fit_levels(mass, ds["budget"].values, acc)
    resid = (fit.target_risk(mass, target, ds["budget"].values) - y)[np.isfinite(y)]
    k, m, rss = fit.log_nc.size + 1, resid.size, float(np.sum(resid**2))
    return k, m * np.log(rss / m) + 2 * k, 1 - rss / total


def _threshold_stats(fit: threshold.ThresholdFit, total: float) -> tuple[int, float, float]:
    return fit.num_params, fit.aic, 1 - fit.rss / total


def _family_stats(fit: tradeoff_fitting.FitResult, total: float) -> tuple[int, float, float]:
    return len(fit.params), fit.aic, 1 - fit.rss / total


def forward_table(ds: xr.Dataset) -> str:
    """:func:`difftrade.analysis.forward.table` of every model and baseline on ``ds``."""
    reason = not_identified(analysis.seed_mean(predictors.risk_grid(ds)))
    if reason:
        return f"No forward prediction scored: {reason}."
    return forward.table(predictors.forward_validation(ds))
