"""Out-of-sample check of the recommender: :func:`validate_leave_one_budget_out`.

Each measured budget is dropped in turn and its d* predicted from the remaining budgets
(interpolated surface, closed-form model, threshold model, and the combination
:func:`~difftrade.recommender.recommend` uses), then compared with the measured d*: error in
levels, target-risk regret, and bootstrap support (:class:`LeaveOneOut`; ``str()`` is a table).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from difftrade.analysis.optimum import resample_seed_means
from difftrade.recommender.choose import check_n_boot, fit_models, nearest_difficulty
from difftrade.recommender.measured import Surface, interpolate, surface
from difftrade.recommender.recommendation import format_number
from difftrade.tasks import configs
from difftrade.tasks.configs import source_task
from difftrade.theory import threshold, tradeoff_families
from difftrade.theory.grid_values import argmin_index

PREDICTORS = ("interpolate", "model", "threshold", "auto")


@dataclass(frozen=True)
class LeaveOneOut:
    """Leave-one-budget-out check of the recommender.

    For every measured budget ``budgets[j]`` the surface without column ``j`` predicts d*:

    * ``interpolate``: log-n interpolation of the remaining measured budgets (at the smallest or
      largest budget, which no pair brackets, the nearest remaining budget's d*);
    * ``model``: the best closed-form family (AIC, re-selected per fold) fitted without the
      budget, its d*(n) rounded to the nearest measured difficulty (``model_d_star``: unrounded);
    * ``threshold``: :func:`difftrade.theory.threshold.fit_threshold` without the budget (π from
      the run's level structure and training distributions), its argmin over the difficulties;
    * ``auto``: what :func:`recommend` does: ``interpolate`` inside the remaining range,
      ``model`` outside it.

    ``measured [N]``: the seed-mean argmin at the held-out budget. ``predicted``, ``error``
    (predicted − measured, in levels) and ``regret`` (measured target risk of the predicted
    difficulty minus the best, at the held-out budget) are dicts ``{predictor: [N]}``;
    ``mae`` and ``mean_regret`` their means. ``support`` ``{predictor: [N]}``: the share of
    seed-bootstrap resamples (of the held-out budget's own runs) whose d* equals the prediction,
    i.e. how defensible the prediction is given the measured d*'s own noise.
    ``extrapolated [N]``: the budget lay outside the remaining range.
    """

    budgets: np.ndarray
    measured: np.ndarray
    predicted: dict[str, np.ndarray]
    error: dict[str, np.ndarray]
    regret: dict[str, np.ndarray]
    model_d_star: np.ndarray
    model_family: tuple[str, ...]
    extrapolated: np.ndarray
    mae: dict[str, float]
    mean_regret: dict[str, float]
    support: dict[str, np.ndarray] = field(default_factory=dict)

    def to_dataset(self) -> xr.Dataset:
        """The per-budget numbers as an ``xarray.Dataset`` (dims ``budget``, ``predictor``)."""
        preds = list(self.predicted)
        return xr.Dataset(
            {
                "measured_d_star": (("budget",), self.measured),
                "predicted_d_star": (
                    ("predictor", "budget"),
                    np.stack([self.predicted[p] for p in preds]),
                ),
                "error": (("predictor", "budget"), np.stack([self.error[p] for p in preds])),
                "regret": (("predictor", "budget"), np.stack([self.regret[p] for p in preds])),
                "support": (("predictor", "budget"), np.stack([self.support[p] for p in preds])),
                "model_d_star": (("budget",), self.model_d_star),
                "extrapolated": (("budget",), self.extrapolated),
            },
            coords={"budget": self.budgets, "predictor": preds},
        )

    def __str__(self) -> str:
        head = (
            "| budget | measured d* | interpolate (err, regret, support) | model d* (family) "
            "| model (err, regret, support) | threshold (err, regret, support) | auto (err, regret, support) |"
        )
        rows = [head, "|" + "---|" * 7]
        for j, b in enumerate(self.budgets):

            def cell(p: str, j: int = j) -> str:
                return (
                    f"{format_number(self.predicted[p][j])} ({self.error[p][j]:+.0f}, "
                    f"{self.regret[p][j]:.3f}, {self.support[p][j]:.0%})"
                )

            ext = " (outside)" if self.extrapolated[j] else ""
            rows.append(
                f"| {format_number(b)}{ext} | {format_number(self.measured[j])} | {cell('interpolate')} | "
                f"{self.model_d_star[j]:.2f} ({self.model_family[j]}) | {cell('model')} | {cell('threshold')} | {cell('auto')} |"
            )
        summary = {
            p: f"MAE {self.mae[p]:.2f}, regret {self.mean_regret[p]:.3f}" for p in PREDICTORS
        }
        rows.append(
            f"| **mean** | | {summary['interpolate']} | | {summary['model']} | {summary['threshold']} | {summary['auto']} |"
        )
        return "\n".join(rows)


def _uncovered_mass(ds: xr.Dataset, surf: Surface) -> np.ndarray | None:
    """π [D] for the threshold model: the target mass each row's training does not cover (from
    the run's level structure); None (π fitted) when the file does not say."""
    try:
        structure = source_task(configs.stored(ds)).level_structure
    except (ValueError, KeyError, TypeError):
        return None
    if "target_weights" not in ds:
        return None
    return threshold.uncovered_mass(surf.train_weights, ds["target_weights"].values, structure)


def validate_leave_one_budget_out(
    results: xr.Dataset,
    *,
    models: Sequence[tradeoff_families.TradeoffModel] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> LeaveOneOut:
    """Drop each measured budget, predict its d* from the others, compare with the measured d*.

    ``results``: a results Dataset (needs at least 3 budgets). ``models``: closed-form families
    to fit per fold (default power, exponential, PAC-Bayes; the best by AIC is used).
    ``n_boot``/``seed``: the seed bootstrap behind ``support``.
    Returns a :class:`LeaveOneOut` (``str()`` is a Markdown table).
    """
    surf = surface(results)
    N = surf.budgets.shape[0]
    if N < 3:
        raise ValueError(f"results has {N} budgets; allowed: at least 3 for leave-one-budget-out")
    mean = surf.mean
    d = surf.difficulties
    measured_idx = argmin_index(mean, d)
    measured = np.where(measured_idx >= 0, d[measured_idx], np.nan)
    pred = {p: np.full(N, np.nan) for p in PREDICTORS}
    fitter = threshold.threshold_fitter(_uncovered_mass(results, surf))
    pred["threshold"] = threshold.leave_one_budget_out(fitter, d, surf.budgets, mean).predicted
    model_d, family, extrapolated = _fold_predictions(surf, models, pred)
    error = {p: pred[p] - measured for p in PREDICTORS}
    regret = _regret(pred, mean, d)
    support = _support(surf, measured, pred, check_n_boot(n_boot), seed)
    return LeaveOneOut(
        budgets=surf.budgets,
        measured=measured,
        predicted=pred,
        error=error,
        regret=regret,
        support=support,
        model_d_star=model_d,
        model_family=tuple(family),
        extrapolated=extrapolated,
        mae={p: float(np.nanmean(np.abs(error[p]))) for p in PREDICTORS},
        mean_regret={p: float(np.nanmean(regret[p])) for p in PREDICTORS},
    )


def _fold_predictions(
    surf: Surface,
    models: Sequence[tradeoff_families.TradeoffModel] | None,
    pred: dict[str, np.ndarray],
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Fill ``pred["interpolate"]``, ``pred["model"]`` and ``pred["auto"]`` fold by fold (each budget
    predicted from the others); returns the unrounded model d* ``[N]``, the family each fold chose,
    and which budgets lay outside the remaining range ``[N]``."""
    N = surf.budgets.shape[0]
    d = surf.difficulties
    model_d = np.full(N, np.nan)
    family: list[str] = []
    extrapolated = np.zeros(N, dtype=bool)
    for j in range(N):
        rest = surf.without_budget(j)
        n = float(surf.budgets[j])
        extrapolated[j] = not rest.budgets[0] <= n <= rest.budgets[-1]
        if extrapolated[j]:
            k = 0 if n < rest.budgets[0] else -1
            i = int(argmin_index(rest.mean[:, k], d))
        else:
            i = int(argmin_index(interpolate(rest.mean, rest.budgets, n), d))
        pred["interpolate"][j] = d[i] if i >= 0 else np.nan
        try:
            ranked = fit_models(rest, models)
            model_d[j] = float(ranked[0].fit.predict_d_star(n, clip=True))
            pred["model"][j] = d[nearest_difficulty(d, model_d[j])]
            family.append(ranked[0].fit.model.name)
        except (ValueError, RuntimeError):
            family.append("none")
        pred["auto"][j] = pred["model"][j] if extrapolated[j] else pred["interpolate"][j]
    return model_d, family, extrapolated


def _regret(pred: dict[str, np.ndarray], mean: np.ndarray, d: np.ndarray) -> dict[str, np.ndarray]:
    """``{predictor: [N]}``: the seed-mean target risk of the predicted difficulty minus the best at
    each budget (NaN where there is no prediction)."""
    N = mean.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        best_risk = np.nanmin(mean, axis=0)
    regret = {}
    for p in PREDICTORS:
        r = np.full(N, np.nan)
        for j in range(N):
            if np.isfinite(pred[p][j]):
                r[j] = mean[int(np.flatnonzero(d == pred[p][j])[0]), j] - best_risk[j]
        regret[p] = r
    return regret


def _support(
    surf: Surface, measured: np.ndarray, pred: dict[str, np.ndarray], n_boot: int, seed: int
) -> dict[str, np.ndarray]:
    """``{predictor: [N]}``: the share of seed-bootstrap resamples whose d* equals the prediction
    (without a bootstrap, or with one seed: whether it equals the measured d*)."""
    d = surf.difficulties
    S = surf.risk.shape[2]
    if n_boot and S > 1:
        chosen = argmin_index(resample_seed_means(surf.risk, n_boot, seed), d)  # [N, B]
        boot = np.where(chosen >= 0, d[chosen], np.nan)
    else:
        boot = measured[:, None]
    return {p: np.mean(boot == pred[p][:, None], axis=1) for p in PREDICTORS}
