"""The models of target risk of a results grid as predictors of d*(n), all of one form
(:data:`difftrade.analysis.forward.Predictor`): fitted on some budgets' seed means, they return
the modelled risk ``[D]`` at any budget.

:func:`model_predictors` builds them for one grid:

* ``threshold, π from coverage`` / ``threshold, π fitted``: the row threshold model
  (:mod:`difftrade.theory.threshold`), ln n_c free per row;
* ``threshold, linear ln n_c``: the same with π from coverage and ln n_c(d) linear in d, so rows
  whose switch the pilots do not show are placed by the rows that switched;
* ``per level``: the per-level model (:mod:`difftrade.theory.level_model`), refitted on the
  per-level exact match of the budgets it is given;
* every closed-form family of :mod:`difftrade.theory.tradeoff_families`;
* ``per-level cross-entropy trend`` (:func:`ce_trend_predictor`).

:func:`forward_validation` scores them all forward on one grid, next to the baselines.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from difftrade.analysis.forward import (
    MAX_RATIO,
    MIN_PILOTS,
    ForwardRecord,
    Predictor,
    forward_records,
)
from difftrade.analysis.optimum import seed_mean
from difftrade.results import divergence
from difftrade.tasks import configs
from difftrade.tasks.configs import source_task
from difftrade.theory import level_model, threshold, tradeoff_families, tradeoff_fitting
from difftrade.theory.grid_values import nan_mean


def risk_grid(ds: xr.Dataset, name: str = "target_risk") -> np.ndarray:
    """``[D, N, S]`` of variable ``name`` with diverged members as NaN."""
    r = ds[name].transpose("difficulty", "budget", "seed").values.astype(np.float64)
    diverged = divergence.diverged_mask(ds)
    return (
        r
        if diverged is None
        else np.where(diverged.transpose("difficulty", "budget", "seed").values, np.nan, r)
    )


def level_accuracy(ds: xr.Dataset) -> np.ndarray:
    """Exact match per level ``[D, N, S, L]``, NaN for diverged members."""
    acc = (
        ds["level_exact"]
        .transpose("difficulty", "budget", "seed", "level")
        .values.astype(np.float64)
    )
    diverged = divergence.diverged_mask(ds)
    if diverged is None:
        return acc
    return np.where(
        diverged.transpose("difficulty", "budget", "seed").values[..., None], np.nan, acc
    )


def above_own_level(ds: xr.Dataset) -> dict[int, np.ndarray]:
    """Exact match on the levels above each row's own, ``{difficulty: [N]}``: the mean over those
    levels, then over seeds (diverged members skipped); rows with no level above are left out."""
    acc, levels = level_accuracy(ds), ds["level"].values  # [D, N, S, L]
    return {
        int(d): seed_mean(nan_mean(acc[i][..., levels > d], axis=-1))
        for i, d in enumerate(ds["difficulty"].values)
        if (levels > d).any()
    }


def coverage(ds: xr.Dataset) -> np.ndarray:
    """π ``[D]``: the target mass each row's training distribution does not reach."""
    structure = source_task(configs.stored(ds)).level_structure
    return threshold.uncovered_mass(
        ds["train_weights"].values, ds["target_weights"].values, structure
    )


def family_predictor(model: tradeoff_families.TradeoffModel) -> Predictor:
    """A closed-form family fitted to the pilots' seed means."""

    def fitter(d: np.ndarray, n: np.ndarray, y: np.ndarray) -> Callable[[float], np.ndarray]:
        result = tradeoff_fitting.fit(model, d, n, y)
        return lambda budget: result.predict_risk(d, budget)

    return fitter


def level_inputs(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the per-level model: level shares ``m [D, L]``, seed-mean exact match ``[D, N, L]``
    (diverged members skipped) and the target ``[L]``."""
    mass = level_model.level_mass(
        ds["train_weights"].values, source_task(configs.stored(ds)).level_structure
    )
    return mass, seed_mean(np.moveaxis(level_accuracy(ds), 2, -1)), ds["target_weights"].values


def level_predictor(ds: xr.Dataset) -> Predictor:
    """The per-level model refitted on the per-level accuracies of the budgets it is given (its
    risk argument only says which budgets)."""
    mass, acc, target = level_inputs(ds)
    budgets = ds["budget"].values.astype(float)

    def fitter(d: np.ndarray, n: np.ndarray, y: np.ndarray) -> Callable[[float], np.ndarray]:
        cols = np.flatnonzero(np.isin(budgets, n))
        fit = level_model.fit_levels(mass, budgets[cols], acc[:, cols])
        return lambda budget: fit.target_risk(mass, target, [budget])[:, 0]

    return fitter


def model_predictors(ds: xr.Dataset) -> dict[str, Predictor]:
    """Every model of target risk for grid ``ds``, by name (see the module docstring)."""
    pi = coverage(ds)
    out: dict[str, Predictor] = {
        "threshold, π from coverage": threshold.threshold_fitter(pi),
        "threshold, π fitted": threshold.threshold_fitter(None),
        "threshold, linear ln n_c": threshold.threshold_fitter(pi, shape="linear"),
        "per level": level_predictor(ds),
    }
    out.update({model.name: family_predictor(model) for model in tradeoff_families.FAMILIES})
    out["per-level cross-entropy trend"] = ce_trend_predictor(ds)
    return out


def ce_trend_predictor(ds: xr.Dataset, window: int = 3) -> Predictor:
    """Per-level cross-entropy extrapolated in ln n, mapped to exact match.

    Exact match is a step in n, but the token cross-entropy on a level falls smoothly before the
    step: a row that will learn a harder level shows it in the pilots. For every row d and level l
    the seed-mean cross-entropy ``CE [D, k, L]`` of the last ``window`` pilots is fitted by a line in
    ln n (slope clipped at 0) and extrapolated to the budget asked for, floored at 0. One constant
    κ maps it to exact match, ``a = exp(−κ·CE)``, fitted by least squares to the pilots' (CE, exact)
    pairs; the modelled target risk is ``Σ_l t_l (1 − a_l)``.
    """
    ce = seed_mean(np.moveaxis(level_ce(ds), 2, -1))  # [D, N, L]
    _, acc, target = level_inputs(ds)
    budgets = ds["budget"].values.astype(float)

    def fitter(d: np.ndarray, n: np.ndarray, y: np.ndarray) -> Callable[[float], np.ndarray]:
        cols = np.flatnonzero(np.isin(budgets, n))
        if cols.size < 2:
            raise ValueError(f"{cols.size} pilot budgets; allowed: at least 2")
        last = cols[-min(window, cols.size) :]
        kappa = exact_scale(ce[:, cols], acc[:, cols])
        ln = np.log(budgets[last])
        slope = np.minimum(_slopes(ln, ce[:, last]), 0.0)  # [D, L]
        now = ce[:, last[-1]]  # [D, L]

        def predict(budget: float) -> np.ndarray:
            future = np.maximum(now + slope * (np.log(budget) - ln[-1]), 0.0)
            return np.nansum(target * (1.0 - np.exp(-kappa * future)), axis=-1)

        return predict

    return fitter


def level_ce(ds: xr.Dataset) -> np.ndarray:
    """Token cross-entropy per level ``[D, N, S, L]``, NaN for diverged members."""
    ce = ds["level_ce"].transpose("difficulty", "budget", "seed", "level").values.astype(np.float64)
    diverged = divergence.diverged_mask(ds)
    if diverged is None:
        return ce
    return np.where(
        diverged.transpose("difficulty", "budget", "seed").values[..., None], np.nan, ce
    )


def _slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of ``y [..., k, L]`` against ``x [k]`` along axis −2: ``[..., L]``."""
    xc = x - x.mean()
    return np.einsum("k,...kl->...l", xc, y - y.mean(axis=-2, keepdims=True)) / float(np.sum(xc**2))


def exact_scale(ce: np.ndarray, acc: np.ndarray) -> float:
    """κ of ``exact ≈ exp(−κ·CE)``: least squares over the finite cells of ``ce`` and ``acc`` (same
    shape), by a bounded scalar search on κ in [1e-3, 1e2]."""
    from scipy import optimize

    ok = np.isfinite(ce) & np.isfinite(acc)
    c, a = ce[ok], acc[ok]
    if c.size == 0:
        raise ValueError("no finite (cross-entropy, exact match) pair among the pilots")
    res = optimize.minimize_scalar(
        lambda lk: float(np.sum((np.exp(-np.exp(lk) * c) - a) ** 2)),
        bounds=(np.log(1e-3), np.log(1e2)),
        method="bounded",
    )
    return float(np.exp(res.x))


def forward_validation(
    ds: xr.Dataset, *, min_pilots: int = MIN_PILOTS, max_ratio: float = MAX_RATIO
) -> list[ForwardRecord]:
    """:func:`~difftrade.analysis.forward.forward_records` of every model of
    :func:`model_predictors` and the baselines, on the seed-mean target risk of ``ds`` (diverged
    members skipped)."""
    d = ds["difficulty"].values.astype(np.float64)
    n = ds["budget"].values.astype(np.float64)
    y = seed_mean(risk_grid(ds))
    return forward_records(
        d, n, y, model_predictors(ds), min_pilots=min_pilots, max_ratio=max_ratio
    )
