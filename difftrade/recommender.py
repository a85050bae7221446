"""Recommend a training-difficulty distribution for a data budget, and check the recommender
out of sample.

``recommend(results, n)`` answers: *for a budget of n examples, which training distribution
should I use, and how sure is that?*

* **Measured surface** (budgets inside the measured range). For each training difficulty ``d``
  the seed-mean target risk ``R(d, n)`` is interpolated linearly in ``log n`` between the two
  measured budgets that bracket ``n`` (exact at a measured budget); the recommendation is
  ``argmin_d R(d, n)`` (ties to the easiest difficulty). Uncertainty comes from a seed bootstrap:
  one resample draws ``S`` seeds with replacement and uses them for every (difficulty, budget)
  cell; the *plausible set* is every difficulty chosen in at least ``min_share`` of the
  resamples, and the *expected loss* is the mean over resamples of
  ``R_b(recommended) - min_d R_b(d)`` (how much target risk the recommendation gives up
  against the best difficulty of that resample).
* **Closed-form model** (always reported, and the answer outside the measured range). The
  families of :mod:`difftrade.theory.tradeoff` are fitted to the seed-mean target risk and
  ranked by AIC; the best one's ``d*(n)`` (clipped to the measured difficulties) is rounded
  to the nearest measured difficulty. The spread of ``d*(n)`` across families is reported as
  model uncertainty. Outside the measured budget range this is an extrapolation: an
  :class:`ExtrapolationWarning` is issued, or a ``ValueError`` with
  ``allow_extrapolation=False``.

The recommended *distribution* is the training distribution of the recommended grid row,
``train_weights[difficulty, level]`` (a one-hot vector for point training, a mixture for
``train_distribution = "mixture"``).

``validate_leave_one_budget_out(results)`` drops each measured budget in turn, predicts its d*
from the remaining budgets (interpolated surface, closed-form model, and the combination
``recommend`` uses) and compares with the measured d*: error in levels and target-risk regret.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from difftrade import results as results_file
from difftrade.analysis import argmin_index, resample_seed_means, seed_mean
from difftrade.theory import threshold, tradeoff

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


def _check_n_boot(n_boot: Any) -> int:
    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 0:
        raise ValueError(f"n_boot={n_boot!r}; allowed: an integer >= 0 (0 = no bootstrap)")
    return int(n_boot)


# ---- the measured surface ---------------------------------------------------------------------
@dataclass(frozen=True)
class Surface:
    """Target risk on the measured grid, budgets sorted ascending.

    ``risk``: ``[D, N, S]`` (NaN for diverged members); ``difficulties [D]``, ``budgets [N]``,
    ``levels [L]``, ``train_weights [D, L]`` (each row a distribution over levels);
    ``diverged``: how many members were excluded for NaN/inf training steps.
    """

    difficulties: np.ndarray
    budgets: np.ndarray
    risk: np.ndarray
    levels: np.ndarray
    train_weights: np.ndarray
    diverged: int = 0

    @property
    def mean(self) -> np.ndarray:
        """Seed-mean target risk ``[D, N]`` (NaN-aware; NaN where a cell has no finite seed)."""
        return seed_mean(self.risk)

    def without_budget(self, j: int) -> Surface:
        keep = np.arange(self.budgets.shape[0]) != j
        return Surface(
            self.difficulties,
            self.budgets[keep],
            self.risk[:, keep],
            self.levels,
            self.train_weights,
            self.diverged,
        )


def _exclude_diverged(ds: xr.Dataset, da: xr.DataArray) -> tuple[xr.DataArray, int]:
    """``da`` with diverged members set to NaN, and how many members diverged."""
    bad = results_file.diverged_mask(ds)
    if bad is None or not set(bad.dims) <= set(da.dims):
        return da, 0
    return da.where(~bad), int(bad.sum())


def surface(ds: xr.Dataset, variable: str = "target_risk") -> Surface:
    """Extract the measured :class:`Surface` from a results Dataset (schema of
    :mod:`difftrade.results`). ``train_weights`` is used when present, else every difficulty
    is taken as a point distribution on the level of the same value. Diverged members
    (``diverged``, or ``nonfinite_steps > 0``) are excluded (NaN); ``ValueError`` if no member
    is left with a finite risk."""
    if not isinstance(ds, xr.Dataset):
        raise ValueError(  # noqa: TRY004 (the project's convention: bad input is a ValueError)
            f"results is a {type(ds).__name__}; allowed: an xarray.Dataset or a FitResult"
        )
    da, diverged = _exclude_diverged(ds, tradeoff.risk_variable(ds, variable))
    if "seed" not in da.dims:
        da = da.expand_dims("seed", axis=-1)
    da = da.sortby("budget").transpose("difficulty", "budget", "seed")
    difficulties = np.asarray(da["difficulty"].values, dtype=float)
    budgets = np.asarray(da["budget"].values, dtype=float)
    if difficulties.size == 0 or budgets.size == 0:
        raise ValueError(f"{variable} has no difficulties or no budgets; allowed: a non-empty grid")
    if np.any(budgets < 1) or len(np.unique(budgets)) != len(budgets):
        raise ValueError(f"budget coordinates {budgets.tolist()}; allowed: distinct values >= 1")
    risk = np.asarray(da.values, dtype=float)
    if not np.isfinite(risk).any() and diverged:
        raise ValueError(
            f"no member has a finite {variable}: {diverged} of {risk.size} diverged (NaN/inf training steps, "
            "see nonfinite_steps); allowed: results with at least one member trained without NaN/inf steps "
            "(e.g. rerun with a lower grid.learning_rate)"
        )
    if not np.isfinite(risk).any():
        raise ValueError(f"{variable} has no finite value")
    if "train_weights" in ds and "level" in ds["train_weights"].dims:
        tw = ds["train_weights"].transpose("difficulty", "level")
        tw = tw.sel(difficulty=da["difficulty"].values)
        levels = np.asarray(tw["level"].values)
        weights = np.asarray(tw.values, dtype=float)
    else:
        levels = da["difficulty"].values.copy()
        weights = np.eye(len(levels))
    return Surface(difficulties, budgets, risk, levels, weights, diverged)


def _bracket(budgets: np.ndarray, n: float) -> tuple[int, int, float]:
    """Indices ``j0 <= j1`` of the measured budgets around ``n`` and the log-n fraction ``t``
    (``value = (1 - t) v[j0] + t v[j1]``). Requires ``budgets[0] <= n <= budgets[-1]``."""
    j1 = int(np.searchsorted(budgets, n, side="left"))
    if budgets[j1] == n:
        return j1, j1, 0.0
    j0 = j1 - 1
    t = (np.log(n) - np.log(budgets[j0])) / (np.log(budgets[j1]) - np.log(budgets[j0]))
    return j0, j1, float(t)


def interpolate(mean: np.ndarray, budgets: np.ndarray, n: float) -> np.ndarray:
    """Risk at budget ``n`` for each difficulty, linear in ``log n`` between the measured
    budgets that bracket ``n``, per difficulty among its finite cells.

    ``mean``: ``[D, N, ...]`` (seed means, or bootstrap means ``[D, N, B]``); the finite cells
    of ``mean[:, :, 0...]`` choose the bracket. Returns ``[D, ...]``; NaN for a difficulty
    whose finite budgets do not bracket ``n``.
    """
    mean = np.asarray(mean, dtype=float)
    budgets = np.asarray(budgets, dtype=float)
    out = np.full((mean.shape[0],) + mean.shape[2:], np.nan)
    for i in range(mean.shape[0]):
        probe = mean[i].reshape(mean.shape[1], -1)[:, 0]
        ok = np.isfinite(probe)
        if not ok.any():
            continue
        b = budgets[ok]
        if not b[0] <= n <= b[-1]:
            continue
        j0, j1, t = _bracket(b, n)
        v = mean[i][ok]
        out[i] = (1 - t) * v[j0] + t * v[j1]
    return out


# ---- closed-form models -----------------------------------------------------------------------
def fit_models(
    surf: Surface, models: Sequence[tradeoff.TradeoffModel] | None = None, criterion: str = "aic"
) -> list[tradeoff.RankedFit]:
    """Fit the closed-form families (default :data:`~difftrade.theory.tradeoff.FAMILIES`) to the
    seed-mean target risk and rank them by ``criterion``, best first."""
    models = tradeoff.FAMILIES if models is None else tuple(models)
    return tradeoff.compare_models(
        surf.difficulties, surf.budgets, surf.mean, models=models, criterion=criterion
    )


def _nearest(difficulties: np.ndarray, value: float) -> int:
    """Index of the measured difficulty closest to ``value`` (ties to the easier one)."""
    dist = np.abs(np.asarray(difficulties, dtype=float) - value)
    order = np.argsort(difficulties, kind="stable")
    return int(order[np.argmin(dist[order])])


@dataclass(frozen=True)
class ModelPrediction:
    """d*(n) of one fitted family: ``d_star`` (continuous, clipped to the measured
    difficulties), ``weight`` (Akaike/Schwarz weight among the families compared)."""

    family: str
    d_star: float
    weight: float


# ---- recommendation ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Recommendation:
    """A training distribution for a budget, and how sure we are about it.

    ``weights [L]`` over ``levels [L]`` is the recommended training distribution;
    ``difficulty`` the headline training difficulty (a measured grid difficulty).
    ``method``: ``"measured"`` (interpolated measured surface) or ``"model"`` (closed-form fit).
    ``expected_risk``: interpolated seed-mean target risk of the recommendation (measured only).
    ``share``: ``{difficulty: fraction of bootstrap resamples choosing it}``;
    ``plausible``: difficulties with share >= ``min_share``. ``expected_loss``/``loss_q90``:
    mean / 90th percentile over resamples of the target risk lost against that resample's best.
    ``model``: the best family's prediction; ``models``: every family's (best first).
    ``diverged``: members excluded from the measured surface for NaN/inf training steps.
    """

    budget: int
    difficulty: float
    weights: np.ndarray
    levels: np.ndarray
    method: str
    extrapolated: bool
    budget_range: tuple[float, float]
    expected_risk: float | None = None
    runner_up: float | None = None
    margin: float | None = None
    share: dict[float, float] = field(default_factory=dict)
    plausible: tuple[float, ...] = ()
    min_share: float = 0.1
    n_boot: int = 0
    n_seeds: int = 0
    expected_loss: float | None = None
    loss_q90: float | None = None
    bracket: tuple[tuple[float, float], tuple[float, float]] | None = None
    model: ModelPrediction | None = None
    models: tuple[ModelPrediction, ...] = ()
    notes: tuple[str, ...] = ()
    diverged: int = 0

    @property
    def mean_level(self) -> float:
        """Mean level under the recommended distribution."""
        return float(np.sum(np.asarray(self.levels, dtype=float) * self.weights))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python (JSON-ready) form."""
        return {
            "budget": self.budget,
            "difficulty": _num(self.difficulty),
            "weights": {_num(lv): float(w) for lv, w in zip(self.levels, self.weights)},
            "method": self.method,
            "extrapolated": self.extrapolated,
            "budget_range": [_num(b) for b in self.budget_range],
            "expected_risk": self.expected_risk,
            "runner_up": None if self.runner_up is None else _num(self.runner_up),
            "margin": self.margin,
            "share": {_num(k): v for k, v in self.share.items()},
            "plausible": [_num(d) for d in self.plausible],
            "min_share": self.min_share,
            "n_boot": self.n_boot,
            "n_seeds": self.n_seeds,
            "expected_loss": self.expected_loss,
            "loss_q90": self.loss_q90,
            "model": None if self.model is None else vars(self.model).copy(),
            "models": [vars(m).copy() for m in self.models],
            "notes": list(self.notes),
            "diverged_excluded": self.diverged,
        }

    def __str__(self) -> str:
        how = {
            "measured": "measured target-risk surface"
            + (
                ""
                if self.bracket is None or self.bracket[0][0] == self.bracket[1][0]
                else f", interpolated in log n between budgets {_fmt(self.bracket[0][0])} and {_fmt(self.bracket[1][0])}"
            ),
            "model": f"closed-form model {self.model.family!r}"
            if self.model
            else "closed-form model",
        }[self.method]
        lines = [f"Recommendation for a budget of n = {self.budget:,} examples ({how})"]
        if self.extrapolated:
            lines.append(
                f"  EXTRAPOLATION: n is outside the measured budgets [{_fmt(self.budget_range[0])}, {_fmt(self.budget_range[1])}]"
            )
        lines.append(
            f"  train at difficulty {_fmt(self.difficulty)}: {_weights_text(self.levels, self.weights)}"
        )
        if self.diverged:
            lines.append(
                f"  excluded {self.diverged} diverged member(s) (NaN/inf training steps; see nonfinite_steps)"
            )
        if self.expected_risk is not None:
            line = f"  expected target risk {self.expected_risk:.3f}"
            if self.runner_up is not None:
                line += (
                    f"; runner-up difficulty {_fmt(self.runner_up)} is worse by {self.margin:.3f}"
                )
            lines.append(line)
        if self.n_boot and self.share:
            shares = ", ".join(
                f"{_fmt(d)}: {s:.0%}" if s >= 0.005 else f"{_fmt(d)}: <1%"
                for d, s in sorted(self.share.items(), key=lambda kv: -kv[1])
            )
            plaus = ", ".join(_fmt(d) for d in self.plausible)
            lines.append(
                f"  seed bootstrap ({self.n_boot} resamples of {self.n_seeds} seeds) chose difficulty {shares}; "
                f"plausible (>= {self.min_share:.0%}): {{{plaus}}}"
            )
        if self.expected_loss is not None:
            lines.append(
                f"  expected target-risk loss vs the best difficulty: {self.expected_loss:.3f} "
                f"(90th percentile {self.loss_q90:.3f})"
            )
        if self.model is not None:
            others = ", ".join(f"{m.family} {m.d_star:.2f}" for m in self.models[1:])
            lines.append(
                f"  closed-form model {self.model.family} (AIC weight {self.model.weight:.2f}): "
                f"d*(n) = {self.model.d_star:.2f}"
                + (f"; other families: {others}" if others else "")
            )
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _num(x: Any) -> Any:
    x = float(x)
    return int(x) if x.is_integer() else x


def _fmt(x: Any) -> str:
    x = float(x)
    return f"{int(x):,}" if x.is_integer() else f"{x:.3g}"


def _weights_text(levels: np.ndarray, weights: np.ndarray) -> str:
    w = np.asarray(weights, dtype=float)
    if np.isclose(w.max(), 1.0):
        return f"all data at level {_fmt(levels[int(np.argmax(w))])}"
    nz = [(lv, x) for lv, x in zip(levels, w) if x > 0]
    return "weights " + ", ".join(f"level {_fmt(lv)}: {x:.3f}" for lv, x in nz)


def _model_predictions(
    ranked: Sequence[tradeoff.RankedFit], n: float
) -> tuple[ModelPrediction, ...]:
    return tuple(
        ModelPrediction(
            r.fit.model.name + ("+r0" if r.fit.model.offset else ""),
            float(r.fit.predict_d_star(n, clip=True)),
            r.weight,
        )
        for r in ranked
    )


def _as_ranked(obj: Any) -> list[tradeoff.RankedFit] | None:
    if isinstance(obj, tradeoff.FitResult):
        return [tradeoff.RankedFit(obj, obj.aic, 0.0, 1.0)]
    if isinstance(obj, tradeoff.RankedFit):
        return [obj]
    if (
        isinstance(obj, (list, tuple))
        and obj
        and all(isinstance(r, tradeoff.RankedFit) for r in obj)
    ):
        return list(obj)
    return None


def recommend(
    results_or_fit: Any,
    budget: Any,
    *,
    method: str = "auto",
    allow_extrapolation: bool = True,
    n_boot: int = 1000,
    min_share: float = 0.1,
    seed: int = 0,
    models: Sequence[tradeoff.TradeoffModel] | None = None,
) -> Recommendation:
    """Recommended training distribution for ``budget`` examples.

    ``results_or_fit``: a results ``xarray.Dataset`` (dims difficulty, budget, seed; variables
    ``target_risk`` and, if present, ``train_weights [difficulty, level]``), or a fitted model
    (:class:`~difftrade.theory.tradeoff.FitResult`, a ``RankedFit`` or the list that
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
    n_boot = _check_n_boot(n_boot)
    min_share = _check_share(min_share, "min_share")
    notes: list[str] = []
    src = _Source.of(results_or_fit, method)
    inside = _check_range(n, src, allow_extrapolation, notes)
    predictions = _closed_form(src, models, n, notes)
    common = {"budget": n, "levels": np.asarray(src.levels), "budget_range": (src.lo, src.hi), "min_share": min_share,
              "model": predictions[0] if predictions else None, "models": predictions,
              "diverged": 0 if src.surf is None else src.surf.diverged}
    if src.surf is None or not inside or src.method == "model":
        return _from_model(src, n, inside, notes, common)
    return _from_measured(src, n, n_boot, min_share, seed, notes, common)


@dataclass
class _Source:
    """What a recommendation reads: the measured surface (None for a fitted model), or the ranked
    fits; the difficulties ``[D]``, levels ``[L]``, training weights ``[D, L]`` and measured range."""

    surf: Surface | None
    ranked: list[tradeoff.RankedFit] | None
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
                raise ValueError("method='measured' needs a results Dataset; allowed with a fitted model: 'auto', 'model'")
            best = ranked[0].fit
            difficulties = np.asarray(best.difficulties, dtype=float)
            return cls(None, ranked, difficulties, difficulties.copy(), np.eye(len(difficulties)),
                       float(best.budgets.min()), float(best.budgets.max()), "model")
        surf = surface(results_or_fit)
        finite_budgets = surf.budgets[np.isfinite(surf.mean).any(axis=0)]
        return cls(surf, None, surf.difficulties, surf.levels, surf.train_weights, float(finite_budgets.min()),
                   float(finite_budgets.max()), method)


def _check_range(n: int, src: _Source, allow_extrapolation: bool, notes: list[str]) -> bool:
    """Whether ``n`` lies in the measured range; outside it warn (a note), or refuse when extrapolation
    is not allowed or the method is 'measured'."""
    lo, hi = src.lo, src.hi
    if lo <= n <= hi:
        return True
    msg = (f"budget={n} is outside the measured budget range [{_fmt(lo)}, {_fmt(hi)}]; "
           "the recommendation is a closed-form-model extrapolation")
    if not allow_extrapolation:
        raise ValueError(msg + f"; allowed with allow_extrapolation=False: {_fmt(lo)} <= budget <= {_fmt(hi)}")
    if src.method == "measured":
        raise ValueError(f"budget={n} is outside the measured budget range [{_fmt(lo)}, {_fmt(hi)}]; "
                         "allowed for method='measured': budgets inside it (use method='auto' or 'model')")
    warnings.warn(msg, ExtrapolationWarning, stacklevel=3)
    notes.append(msg)
    return False


def _closed_form(src: _Source, models: Sequence[tradeoff.TradeoffModel] | None, n: int,
                 notes: list[str]) -> tuple[ModelPrediction, ...]:
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
        notes.append(f"the closed-form families disagree by {max(spread) - min(spread):.1f} levels at this budget")
    return predictions


def _from_model(src: _Source, n: int, inside: bool, notes: list[str], common: dict[str, Any]) -> Recommendation:
    """The closed-form model's d*(n), rounded to the nearest measured difficulty."""
    model_pred, difficulties = common["model"], src.difficulties
    if model_pred is None:
        raise ValueError("no closed-form model could be fitted, so there is no prediction for this budget")
    i = _nearest(difficulties, model_pred.d_star)
    notes.append(f"model d*(n) = {model_pred.d_star:.2f} rounded to the nearest measured difficulty {_fmt(difficulties[i])}")
    if src.surf is not None:
        j = int(np.argmin(np.abs(np.log(src.surf.budgets) - np.log(n))))
        k = int(argmin_index(src.surf.mean[:, j], difficulties))
        if k >= 0:
            notes.append(f"at the nearest measured budget ({_fmt(src.surf.budgets[j])}) the measured d* is {_fmt(difficulties[k])}")
    return Recommendation(difficulty=float(difficulties[i]), weights=np.asarray(src.train_weights[i], dtype=float),
                          method="model", extrapolated=not inside, notes=tuple(notes), **common)


def _from_measured(src: _Source, n: int, n_boot: int, min_share: float, seed: int, notes: list[str],
                   common: dict[str, Any]) -> Recommendation:
    """The measured surface's d*(n) (log-n interpolation between bracketing budgets), with the seed bootstrap."""
    surf, difficulties = src.surf, src.difficulties
    risk_n = interpolate(surf.mean, surf.budgets, float(n))
    i = int(argmin_index(risk_n, difficulties))
    if i < 0:
        raise ValueError(f"no difficulty has a finite target risk around budget={n}")
    missing = difficulties[~np.isfinite(risk_n)]
    if missing.size:
        notes.append(f"difficulties {[_num(d) for d in missing]} have no finite risk around this budget and were skipped")
    order = np.argsort(np.where(np.isfinite(risk_n), risk_n, np.inf), kind="stable")
    runner = int(order[1]) if np.isfinite(risk_n).sum() > 1 else None
    bracket = _bracket_d_star(surf, n, notes)
    S = surf.risk.shape[2]
    boot = {"share": {}, "plausible": (float(difficulties[i]),), "expected_loss": None, "loss_q90": None}
    if n_boot and S > 1:
        boot = _bootstrap(surf, n, i, n_boot, min_share, seed)
    elif S <= 1:
        notes.append("one seed only: no seed-bootstrap uncertainty")
    if common["model"] is not None:
        k = _nearest(difficulties, common["model"].d_star)
        if k != i:
            notes.append(f"the closed-form model ({common['model'].family}) would pick difficulty {_fmt(difficulties[k])} instead")
    return Recommendation(
        difficulty=float(difficulties[i]), weights=np.asarray(src.train_weights[i], dtype=float), method="measured",
        extrapolated=False, expected_risk=float(risk_n[i]),
        runner_up=None if runner is None else float(difficulties[runner]),
        margin=None if runner is None else float(risk_n[runner] - risk_n[i]),
        n_boot=n_boot if S > 1 else 0, n_seeds=S, bracket=bracket, notes=tuple(notes), **boot, **common)


def _bracket_d_star(surf: Surface, n: int, notes: list[str]) -> tuple[tuple[float, float], tuple[float, float]]:
    """(budget, measured d*) at the two measured budgets around ``n``; a note when they differ."""
    j0, j1, _ = _bracket(surf.budgets, float(n))

    def at(j: int) -> float:
        k = int(argmin_index(surf.mean[:, j], surf.difficulties))
        return float(surf.difficulties[k]) if k >= 0 else float("nan")

    bracket = ((float(surf.budgets[j0]), at(j0)), (float(surf.budgets[j1]), at(j1)))
    if j0 != j1 and bracket[0][1] != bracket[1][1]:
        notes.append(
            f"d* changes between the bracketing budgets ({_fmt(bracket[0][0])}: d* = {_fmt(bracket[0][1])}; "
            f"{_fmt(bracket[1][0])}: d* = {_fmt(bracket[1][1])}): the log-n interpolation is a guess in "
            f"between; measure budget {n:,} directly to be sure"
        )
    return bracket


def _bootstrap(surf: Surface, n: int, i: int, n_boot: int, min_share: float, seed: int) -> dict[str, Any]:
    """Seed-bootstrap of the interpolated d*(n): each difficulty's share, the plausible set (share
    >= ``min_share``), and the expected and 90th-percentile risk lost by choosing difficulty ``i``."""
    difficulties = surf.difficulties
    boot_mean = resample_seed_means(surf.risk, n_boot, seed)  # [D, N, B]
    boot = interpolate(np.concatenate([surf.mean[:, :, None], boot_mean], axis=2), surf.budgets, float(n))[:, 1:]
    chosen = argmin_index(boot, difficulties)  # [B]
    valid = chosen >= 0
    counts = np.bincount(chosen[valid], minlength=len(difficulties))
    share = {float(difficulties[k]): float(c / valid.sum()) for k, c in enumerate(counts) if c}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN resample stays NaN
        best_b = np.nanmin(boot, axis=0)
    loss = boot[i] - best_b
    loss = loss[np.isfinite(loss)]
    return {"share": share, "plausible": tuple(sorted(d for d, s in share.items() if s >= min_share)),
            "expected_loss": float(np.mean(loss)) if loss.size else None,
            "loss_q90": float(np.quantile(loss, 0.9)) if loss.size else None}


# ---- out-of-sample validation -----------------------------------------------------------------
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
                    f"{_fmt(self.predicted[p][j])} ({self.error[p][j]:+.0f}, "
                    f"{self.regret[p][j]:.3f}, {self.support[p][j]:.0%})"
                )

            ext = " (outside)" if self.extrapolated[j] else ""
            rows.append(
                f"| {_fmt(b)}{ext} | {_fmt(self.measured[j])} | {cell('interpolate')} | "
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
        structure = results_file.level_structure(ds)
    except (ValueError, KeyError, TypeError):
        return None
    if "target_weights" not in ds:
        return None
    return threshold.uncovered_mass(surf.train_weights, ds["target_weights"].values, structure)


def validate_leave_one_budget_out(
    results: xr.Dataset,
    *,
    models: Sequence[tradeoff.TradeoffModel] | None = None,
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        best_risk = np.nanmin(mean, axis=0)
    pred = {p: np.full(N, np.nan) for p in PREDICTORS}
    fitter = threshold.threshold_fitter(_uncovered_mass(results, surf))
    pred["threshold"] = threshold.leave_one_budget_out(fitter, d, surf.budgets, mean).predicted
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
            pred["model"][j] = d[_nearest(d, model_d[j])]
            family.append(ranked[0].fit.model.name)
        except (ValueError, RuntimeError):
            family.append("none")
        pred["auto"][j] = pred["model"][j] if extrapolated[j] else pred["interpolate"][j]
    error = {p: pred[p] - measured for p in PREDICTORS}
    regret = {}
    for p in PREDICTORS:
        r = np.full(N, np.nan)
        for j in range(N):
            if np.isfinite(pred[p][j]):
                r[j] = mean[int(np.flatnonzero(d == pred[p][j])[0]), j] - best_risk[j]
        regret[p] = r
    n_boot = _check_n_boot(n_boot)
    S = surf.risk.shape[2]
    if n_boot and S > 1:
        chosen = argmin_index(resample_seed_means(surf.risk, n_boot, seed), d)  # [N, B]
        boot = np.where(chosen >= 0, d[chosen], np.nan)
    else:
        boot = measured[:, None]
    support = {p: np.mean(boot == pred[p][:, None], axis=1) for p in PREDICTORS}
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
