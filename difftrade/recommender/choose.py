"""The recommendation for a budget: :func:`recommend`.

Input checks; the closed-form families' d*(n) (always reported, and the answer outside the
measured budget range); inside the range, the measured surface's argmin with its seed bootstrap
(plausible set, expected loss). The procedure is described in :mod:`difftrade.recommender`.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from difftrade.analysis.optimum import resample_seed_means
from difftrade.recommender.measured import Surface, bracket_budgets, interpolate, surface
from difftrade.recommender.recommendation import (
    ModelPrediction,
    Recommendation,
    format_number,
    plain_number,
)
from difftrade.theory import tradeoff_families, tradeoff_fitting
from difftrade.theory.grid_values import argmin_index

METHODS = ("auto", "measured", "model")


class ExtrapolationWarning(UserWarning):
    """A recommendation for a budget outside the measured range (model-based extrapolation)."""


# ---- input checks -----------------------------------------------------------------------------
def check_budget(budget: Any, name: str = "budget") -> int:
    """``budget`` as an int; ``ValueError`` naming ``name`` unless it is an integer >= 1
    (an integral float such as ``2000.0`` is accepted; bools and strings are not)."""
    ok = False
    if isinstance(budget, bool):
        ok = False
    elif isinstance(budget, numbers.Integral):
        ok = True
    elif isinstance(budget, numbers.Real) and np.isfinite(float(budget)):
        ok = float(budget).is_integer()
    if not ok or int(budget) < 1:
        raise ValueError(f"{name}={budget!r}; allowed: an integer >= 1")
    return int(budget)


def _check_share(value: float, name: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 < float(value) <= 1:
        raise ValueError(f"{name}={value!r}; allowed: a number in (0, 1]")
    return float(value)


def check_n_boot(n_boot: Any) -> int:
    """``n_boot`` (the number of seed-bootstrap resamples) as an ``int``; raises ``ValueError``
    unless it is an integer >= 0 (``bool`` is refused; 0 means no bootstrap)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 0:
        raise ValueError(f"n_boot={n_boot!r}; allowed: an integer >= 0 (0 = no bootstrap)")
    return int(n_boot)


# ---- closed-form models -----------------------------------------------------------------------
def fit_models(
    surf: Surface,
    models: Sequence[tradeoff_families.TradeoffModel] | None = None,
    criterion: str = "aic",
) -> list[tradeoff_fitting.RankedFit]:
    """Fit the closed-form families (default :data:`~difftrade.theory.tradeoff_families.FAMILIES`) to the
    seed-mean target risk and rank them by ``criterion``, best first."""
    models = tradeoff_families.FAMILIES if models is None else tuple(models)
    return tradeoff_fitting.compare_models(
        surf.difficulties, surf.budgets, surf.mean, models=models, criterion=criterion
    )


def nearest_difficulty(difficulties: np.ndarray, value: float) -> int:
    """Index of the measured difficulty closest to ``value`` (ties to the easier one)."""
    dist = np.abs(np.asarray(difficulties, dtype=float) - value)
    order = np.argsort(difficulties, kind="stable")
    return int(order[np.argmin(dist[order])])


def _model_predictions(
    ranked: Sequence[tradeoff_fitting.RankedFit], n: float
) -> tuple[ModelPrediction, ...]:
    return tuple(
        ModelPrediction(
            r.fit.model.name + ("+r0" if r.fit.model.offset else ""),
            float(r.fit.predict_d_star(n, clip=True)),
            r.weight,
        )
        for r in ranked
    )


def _as_ranked(obj: Any) -> list[tradeoff_fitting.RankedFit] | None:
    if isinstance(obj, tradeoff_fitting.FitResult):
        return [tradeoff_fitting.RankedFit(obj, obj.aic, 0.0, 1.0)]
    if isinstance(obj, tradeoff_fitting.RankedFit):
        return [obj]
    if (
        isinstance(obj, (list, tuple))
        and obj
        and all(isinstance(r, tradeoff_fitting.RankedFit) for r in obj)
    ):
        return list(obj)
    return None


# ---- recommendation ---------------------------------------------------------------------------
def recommend(
    results_or_fit: Any,
    budget: Any,
    *,
    method: str = "auto",
    allow_extrapolation: bool = True,
    n_boot: int = 1000,
    min_share: float = 0.1,
    seed: int = 0,
    models: Sequence[tradeoff_families.TradeoffModel] | None = None,
) -> Recommendation:
    """Recommended training distribution for ``budget`` examples.

    ``results_or_fit``: a results ``xarray.Dataset`` (dims difficulty, budget, seed; variables
    ``target_risk`` and, if present, ``train_weights [difficulty, level]``), or a fitted model
    (:class:`~difftrade.theory.tradeoff_fitting.FitResult`, a ``RankedFit`` or the list that
    ``compare_models`` returns; then levels are the fitted difficulties, point distributions).

    ``method``: ``"auto"`` (measured surface inside the measured budget range, closed-form
    model outside it), ``"measured"`` or ``"model"``. Outside the range an
    :class:`ExtrapolationWarning` is issued, or ``ValueError`` if ``allow_extrapolation`` is
    False. ``n_boot`` seed-bootstrap resamples (0: none), ``min_share``: bootstrap share for a
    difficulty to count as plausible, ``seed``: bootstrap RNG seed, ``models``: closed-form
    families to fit and rank by AIC (default: power, exponential, PAC-Bayes; ``()``: none, so
    only the measured surface is used and a budget outside it raises ``ValueError``).
    """
    n = check_budget(budget)
    if method not in METHODS:
        raise ValueError(f"method={method!r}; allowed: {', '.join(map(repr, METHODS))}")
    n_boot = check_n_boot(n_boot)
    min_share = _check_share(min_share, "min_share")
    notes: list[str] = []
    src = _Source.of(results_or_fit, method)
    inside = _check_range(n, src, allow_extrapolation, notes)
    predictions = _closed_form(src, models, n, notes)
    common = {
        "budget": n,
        "levels": np.asarray(src.levels),
        "budget_range": (src.lo, src.hi),
        "min_share": min_share,
        "model": predictions[0] if predictions else None,
        "models": predictions,
        "diverged": 0 if src.surf is None else src.surf.diverged,
    }
    if src.surf is None or not inside or src.method == "model":
        return _from_model(src, n, inside, notes, common)
    return _from_measured(src, n, n_boot, min_share, seed, notes, common)


@dataclass
class _Source:
    """What a recommendation reads: the measured surface (None for a fitted model), or the ranked
    fits; the difficulties ``[D]``, levels ``[L]``, training weights ``[D, L]`` and measured range."""

    surf: Surface | None
    ranked: list[tradeoff_fitting.RankedFit] | None
    difficulties: np.ndarray
    levels: np.ndarray
    train_weights: np.ndarray
    lo: float
    hi: float
    method: str

    @classmethod
    def of(cls, results_or_fit: Any, method: str) -> _Source:
        ranked = _as_ranked(results_or_fit)
        if ranked is not None:
            if method == "measured":
                raise ValueError(
                    "method='measured' needs a results Dataset; allowed with a fitted model: 'auto', 'model'"
                )
            best = ranked[0].fit
            difficulties = np.asarray(best.difficulties, dtype=float)
            return cls(
                None,
                ranked,
                difficulties,
                difficulties.copy(),
                np.eye(len(difficulties)),
                float(best.budgets.min()),
                float(best.budgets.max()),
                "model",
            )
        surf = surface(results_or_fit)
        finite_budgets = surf.budgets[np.isfinite(surf.mean).any(axis=0)]
        return cls(
            surf,
            None,
            surf.difficulties,
            surf.levels,
            surf.train_weights,
            float(finite_budgets.min()),
            float(finite_budgets.max()),
            method,
        )


def _check_range(n: int, src: _Source, allow_extrapolation: bool, notes: list[str]) -> bool:
    """Whether ``n`` lies in the measured range; outside it warn (a note), or refuse when extrapolation
    is not allowed or the method is 'measured'."""
    lo, hi = src.lo, src.hi
    if lo <= n <= hi:
        return True
    msg = (
        f"budget={n} is outside the measured budget range [{format_number(lo)}, {format_number(hi)}]; "
        "the recommendation is a closed-form-model extrapolation"
    )
    if not allow_extrapolation:
        raise ValueError(
            msg
            + f"; allowed with allow_extrapolation=False: {format_number(lo)} <= budget <= {format_number(hi)}"
        )
    if src.method == "measured":
        raise ValueError(
            f"budget={n} is outside the measured budget range [{format_number(lo)}, {format_number(hi)}]; "
            "allowed for method='measured': budgets inside it (use method='auto' or 'model')"
        )
    warnings.warn(msg, ExtrapolationWarning, stacklevel=3)
    notes.append(msg)
    return False


def _closed_form(
    src: _Source, models: Sequence[tradeoff_families.TradeoffModel] | None, n: int, notes: list[str]
) -> tuple[ModelPrediction, ...]:
    """The closed-form families' predictions at ``n`` (always reported), best by AIC first."""
    ranked = src.ranked
    if ranked is None and models is not None and len(models) == 0:
        notes.append("closed-form model not fitted (models=())")
    elif ranked is None:
        try:
            ranked = fit_models(src.surf, models)
        except (ValueError, RuntimeError) as err:
            notes.append(f"closed-form model not fitted: {err}")
    if not ranked:
        return ()
    predictions = _model_predictions(ranked, float(n))
    spread = [p.d_star for p in predictions]
    if len(spread) > 1 and max(spread) - min(spread) >= 1.0:
        notes.append(
            f"the closed-form families disagree by {max(spread) - min(spread):.1f} levels at this budget"
        )
    return predictions


def _from_model(
    src: _Source, n: int, inside: bool, notes: list[str], common: dict[str, Any]
) -> Recommendation:
    """The closed-form model's d*(n), rounded to the nearest measured difficulty."""
    model_pred, difficulties = common["model"], src.difficulties
    if model_pred is None:
        raise ValueError(
            "no closed-form model could be fitted, so there is no prediction for this budget"
        )
    i = nearest_difficulty(difficulties, model_pred.d_star)
    notes.append(
        f"model d*(n) = {model_pred.d_star:.2f} rounded to the nearest measured difficulty {format_number(difficulties[i])}"
    )
    if src.surf is not None:
        j = int(np.argmin(np.abs(np.log(src.surf.budgets) - np.log(n))))
        k = int(argmin_index(src.surf.mean[:, j], difficulties))
        if k >= 0:
            notes.append(
                f"at the nearest measured budget ({format_number(src.surf.budgets[j])}) the measured d* is {format_number(difficulties[k])}"
            )
    return Recommendation(
        difficulty=float(difficulties[i]),
        weights=np.asarray(src.train_weights[i], dtype=float),
        method="model",
        extrapolated=not inside,
        notes=tuple(notes),
        **common,
    )


def _from_measured(
    src: _Source,
    n: int,
    n_boot: int,
    min_share: float,
    seed: int,
    notes: list[str],
    common: dict[str, Any],
) -> Recommendation:
    """The measured surface's d*(n) (log-n interpolation between bracketing budgets), with the seed bootstrap."""
    surf, difficulties = src.surf, src.difficulties
    risk_n = interpolate(surf.mean, surf.budgets, float(n))
    i = int(argmin_index(risk_n, difficulties))
    if i < 0:
        raise ValueError(f"no difficulty has a finite target risk around budget={n}")
    missing = difficulties[~np.isfinite(risk_n)]
    if missing.size:
        notes.append(
            f"difficulties {[plain_number(d) for d in missing]} have no finite risk around this budget and were skipped"
        )
    notes += _ties_and_diverged(surf, risk_n, i, n)
    order = np.argsort(np.where(np.isfinite(risk_n), risk_n, np.inf), kind="stable")
    runner = int(order[1]) if np.isfinite(risk_n).sum() > 1 else None
    bracket = _bracket_d_star(surf, n, notes)
    S = surf.risk.shape[2]
    boot = {
        "share": {},
        "plausible": (float(difficulties[i]),),
        "expected_loss": None,
        "loss_q90": None,
    }
    if n_boot and S > 1:
        boot = _bootstrap(surf, n, i, n_boot, min_share, seed)
    elif S <= 1:
        notes.append("one seed only: no seed-bootstrap uncertainty")
    if common["model"] is not None:
        k = nearest_difficulty(difficulties, common["model"].d_star)
        if k != i:
            notes.append(
                f"the closed-form model ({common['model'].family}) would pick difficulty {format_number(difficulties[k])} instead"
            )
    wins, paired, worst = (None, None, None) if runner is None else _seed_regret(surf, n, i, runner)
    return Recommendation(
        difficulty=float(difficulties[i]),
        weights=np.asarray(src.train_weights[i], dtype=float),
        method="measured",
        runner_up_wins=wins,
        paired_seeds=paired,
        worst_seed_loss=worst,
        extrapolated=False,
        expected_risk=float(risk_n[i]),
        runner_up=None if runner is None else float(difficulties[runner]),
        margin=None if runner is None else float(risk_n[runner] - risk_n[i]),
        n_boot=n_boot if S > 1 else 0,
        n_seeds=S,
        bracket=bracket,
        notes=tuple(notes),
        **boot,
        **common,
    )


def _seed_regret(
    surf: Surface, n: int, i: int, runner: int
) -> tuple[int | None, int | None, float | None]:
    """Paired over seeds at ``n`` (each seed's risk interpolated in log n on the brackets of the
    seed mean): for how many seeds the runner-up difficulty ``runner`` had a lower target risk
    than the chosen ``i``, of how many seeds finite at both, and the largest such difference (0
    when none); all None when no seed is finite at both."""
    both = np.concatenate([surf.mean[:, :, None], surf.risk], axis=2)  # [D, N, 1 + S]
    seeds = interpolate(both, surf.budgets, float(n))[:, 1:]  # [D, S]
    diff = seeds[i] - seeds[runner]
    diff = diff[np.isfinite(diff)]
    if not diff.size:
        return None, None, None
    return int((diff > 0).sum()), int(diff.size), float(max(diff.max(), 0.0))


def _ties_and_diverged(surf: Surface, risk_n: np.ndarray, i: int, n: int) -> list[str]:
    """Notes on difficulties whose interpolated risk ``risk_n [D]`` at ``n`` equals the chosen
    ``i``'s (a tie the data cannot break), and on measured budgets where every member diverged."""
    notes = []
    tied = surf.difficulties[np.isfinite(risk_n) & (risk_n == risk_n[i])]
    if tied.size > 1:
        notes.append(
            f"difficulties {[plain_number(d) for d in tied]} tie at budget {n:,} (target risk "
            f"{risk_n[i]:.3g} each): the measurements do not prefer one; the smallest is shown"
        )
    dead = surf.budgets[~np.isfinite(surf.risk).any(axis=(0, 2))]
    if dead.size:
        notes.append(
            f"every member at budgets {[plain_number(b) for b in dead]} diverged (NaN/inf training "
            "steps): those budgets carry no measurement"
        )
    return notes


def _bracket_d_star(
    surf: Surface, n: int, notes: list[str]
) -> tuple[tuple[float, float], tuple[float, float]]:
    """(budget, measured d*) at the two measured budgets around ``n``; a note when they differ."""
    j0, j1, _ = bracket_budgets(surf.budgets, float(n))

    def at(j: int) -> float:
        k = int(argmin_index(surf.mean[:, j], surf.difficulties))
        return float(surf.difficulties[k]) if k >= 0 else float("nan")

    bracket = ((float(surf.budgets[j0]), at(j0)), (float(surf.budgets[j1]), at(j1)))
    if j0 != j1 and bracket[0][1] != bracket[1][1]:
        notes.append(
            f"d* changes between the bracketing budgets ({format_number(bracket[0][0])}: d* = {format_number(bracket[0][1])}; "
            f"{format_number(bracket[1][0])}: d* = {format_number(bracket[1][1])}): the log-n interpolation is a guess in "
            f"between; measure budget {n:,} directly to be sure"
        )
    return bracket


def _bootstrap(
    surf: Surface, n: int, i: int, n_boot: int, min_share: float, seed: int
) -> dict[str, Any]:
    """Seed-bootstrap of the interpolated d*(n): each difficulty's share, the plausible set (share
    >= ``min_share``), and the expected and 90th-percentile risk lost by choosing difficulty ``i``."""
    difficulties = surf.difficulties
    boot_mean = resample_seed_means(surf.risk, n_boot, seed)  # [D, N, B]
    boot = interpolate(
        np.concatenate([surf.mean[:, :, None], boot_mean], axis=2), surf.budgets, float(n)
    )[:, 1:]
    chosen = argmin_index(boot, difficulties)  # [B]
    valid = chosen >= 0
    counts = np.bincount(chosen[valid], minlength=len(difficulties))
    share = {float(difficulties[k]): float(c / valid.sum()) for k, c in enumerate(counts) if c}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN resample stays NaN
        best_b = np.nanmin(boot, axis=0)
    loss = boot[i] - best_b
    loss = loss[np.isfinite(loss)]
    return {
        "share": share,
        "plausible": tuple(sorted(d for d, s in share.items() if s >= min_share)),
        "expected_loss": float(np.mean(loss)) if loss.size else None,
        "loss_q90": float(np.quantile(loss, 0.9)) if loss.size else None,
    }
