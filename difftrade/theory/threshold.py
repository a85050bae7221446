"""A threshold model of target risk, fitted per difficulty, and leave-one-budget-out validation.

The measured grids look like steps, not like smooth power laws: a level is either not learned
(risk near 1 on it) or learned (near 0), and the budget at which the switch happens grows with
difficulty. The threshold model writes that down::

    R_T(d, n) = π(d) + (1 − π(d)) · σ((ln n_c(d) − ln n) / s)

``π(d)``: the target mass that training at ``d`` does not reach (the risk left at n → ∞);
``n_c(d)``: the budget at which half of the reachable mass is learned, non-decreasing in ``d``
(ln n_c(d_1) free, then non-negative log-increments); ``s > 0``: the width of the switch in ln n,
shared by every difficulty. ``π`` is either given (the coverage of the target by the training
distribution, :func:`uncovered_mass`) or fitted per difficulty. d*(n) is the difficulty with the
smallest modelled risk; since n_c rises with d and π falls, it moves to harder data as n grows.

:func:`leave_one_budget_out` scores any fitter the same way: fit on every budget but one, predict
d* at the held-out budget (argmin over the grid's difficulties), compare with the measured d*.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from difftrade.theory.grid_values import argmin_difficulty


def uncovered_mass(
    train_weights: np.ndarray, target_weights: np.ndarray, structure: str
) -> np.ndarray:
    """``π [D]``: target mass on levels the training distribution of each row does not contain.

    ``train_weights [D, L]``, ``target_weights [L]``; ``structure`` is the task's
    ``level_structure``: for ``"exact"`` levels a level is covered when the row puts weight on it,
    for ``"nested"`` ones every level up to the hardest weighted one is covered.
    """
    w, t = np.asarray(train_weights, np.float64), np.asarray(target_weights, np.float64)
    if w.ndim != 2 or t.shape != (w.shape[1],):
        raise ValueError(
            f"train_weights {w.shape} and target_weights {t.shape}; allowed: [D, L] and [L]"
        )
    covered = w > 0
    if structure == "nested":
        covered = (
            np.cumsum(covered[:, ::-1], axis=1)[:, ::-1] > 0
        )  # levels at or below a weighted one
    elif structure != "exact":
        raise ValueError(f"structure={structure!r}; allowed: exact, nested")
    return np.clip(1.0 - covered @ t, 0.0, 1.0)


@dataclass(frozen=True)
class ThresholdFit:
    """A fitted threshold model on difficulties ``[D]``.

    ``pi``, ``log_nc`` float64 ``[D]``; ``width`` = s; ``rss`` over the ``n_obs`` cells used;
    ``num_params`` (π counts only when fitted); ``aic`` = m ln(rss/m) + 2k, comparable with
    :class:`difftrade.theory.tradeoff_fitting.FitResult` fitted to the same seed means.
    """

    difficulties: np.ndarray
    pi: np.ndarray
    log_nc: np.ndarray
    width: float
    rss: float
    n_obs: int
    num_params: int
    aic: float

    def predict_risk(self, n) -> np.ndarray:
        """Modelled risk ``[D, *n.shape]`` at budgets ``n``."""
        ln = np.log(np.asarray(n, np.float64))
        z = (self.log_nc.reshape((-1,) + (1,) * ln.ndim) - ln) / self.width
        pi = self.pi.reshape((-1,) + (1,) * ln.ndim)
        return pi + (1.0 - pi) * special.expit(z)

    def predict_d_star(self, n) -> np.ndarray:
        """Modelled d*(n) over the fitted difficulties, shape of ``n``."""
        return argmin_difficulty(self.predict_risk(n), self.difficulties)


THRESHOLD_SHAPES = ("free", "linear")


def _num_shape_params(num: int, shape: str) -> int:
    """Parameters of ln n_c over ``num`` difficulties: ``free`` 1 + (num − 1) increments,
    ``linear`` 2 (intercept and slope)."""
    return num if shape == "free" else 2


def _unpack(
    theta: np.ndarray, difficulties: np.ndarray, pi: np.ndarray | None, shape: str = "free"
) -> tuple[np.ndarray, np.ndarray, float]:
    """θ = [ln n_c parameters, ln s, (logit π [D])] → (π, ln n_c, s).

    ``free``: ln n_c(d_1), then non-negative log-increments between neighbours (D − 1);
    ``linear``: ln n_c(d) = θ₀ + e^θ₁ (d − d_1), one non-negative slope in ln n per level.
    """
    num = difficulties.size
    k = _num_shape_params(num, shape)
    if shape == "free":
        log_nc = theta[0] + np.concatenate([[0.0], np.cumsum(np.exp(theta[1:num]))])
    else:
        log_nc = theta[0] + np.exp(theta[1]) * (difficulties - difficulties.min())
    width = float(np.exp(theta[k]))
    fitted_pi = special.expit(theta[k + 1 :]) if pi is None else pi
    return fitted_pi, log_nc, width


def fit_threshold(
    difficulties, budgets, risk, pi=None, *, shape: str = "free", n_starts: int = 6, seed: int = 0
) -> ThresholdFit:
    """Least-squares fit of the threshold model to ``risk [D, N]`` (seed means; NaN cells skipped).

    ``pi [D]``: the uncovered target mass, fixed (e.g. :func:`uncovered_mass`), or None to fit
    it per difficulty in (0, 1). ``shape``: how ln n_c(d) may vary (:func:`_unpack`): ``"free"``
    (any non-decreasing sequence; a row whose switch no budget shows is unconstrained) or
    ``"linear"`` (a constant step per level: rows not yet learning are placed by the ones that are,
    which is what predicting larger budgets from small pilots needs). Starts: thresholds spread over the budgets' range plus seeded
    perturbations; the best ``scipy.optimize.least_squares`` solution wins (deterministic).
    """
    d = np.asarray(difficulties, np.float64)
    n = np.asarray(budgets, np.float64)
    y = np.asarray(risk, np.float64)
    if y.shape != (d.size, n.size) or d.ndim != 1 or n.ndim != 1 or np.any(n < 1):
        raise ValueError(
            f"risk {y.shape}, difficulties {d.shape}, budgets {n.shape}; allowed: [D, N], [D], [N] with budgets >= 1"
        )
    fixed = None if pi is None else np.asarray(pi, np.float64)
    if fixed is not None and (fixed.shape != d.shape or np.any((fixed < 0) | (fixed > 1))):
        raise ValueError(f"pi={fixed.tolist()!r}; allowed: [D] values in [0, 1]")
    if shape not in THRESHOLD_SHAPES:
        raise ValueError(f"shape={shape!r}; allowed: one of {THRESHOLD_SHAPES}")
    mask = np.isfinite(y)
    k = _num_shape_params(d.size, shape) + 1 + (d.size if fixed is None else 0)
    if mask.sum() <= k:
        raise ValueError(
            f"only {int(mask.sum())} finite cells for {k} parameters; allowed: more cells than parameters"
        )
    ln = np.log(n)

    def residual(theta: np.ndarray) -> np.ndarray:
        p, lnc, s = _unpack(theta, d, fixed, shape)
        model = p[:, None] + (1 - p[:, None]) * special.expit((lnc[:, None] - ln[None, :]) / s)
        return (model - y)[mask]

    rng = np.random.default_rng(seed)
    span = max(ln.max() - ln.min(), 1.0)
    steps = np.full(_num_shape_params(d.size, shape) - 1, np.log(span / d.size))
    base = np.concatenate([[ln.min()], steps, [np.log(0.5)]])
    if fixed is None:
        base = np.concatenate([base, np.zeros(d.size)])
    best = None
    for i in range(n_starts):
        start = base if i == 0 else base + rng.normal(0.0, 1.0, base.size)
        res = optimize.least_squares(residual, start, method="trf", max_nfev=4000)
        if best is None or res.cost < best.cost:
            best = res
    p, lnc, s = _unpack(best.x, d, fixed, shape)
    rss = float(np.sum(residual(best.x) ** 2))
    m = int(mask.sum())
    return ThresholdFit(d, p, lnc, s, rss, m, k, float(m * np.log(max(rss, 1e-300) / m) + 2 * k))


Fitter = Callable[[np.ndarray, np.ndarray, np.ndarray], Callable[[float], np.ndarray]]


@dataclass(frozen=True)
class HoldoutScore:
    """Leave-one-budget-out result. ``predicted``/``measured`` d* ``[N]`` (each budget predicted
    by a fit that never saw it); ``error`` = mean |predicted − measured| in difficulty units;
    ``exact`` = share of budgets predicted exactly; ``risk_rmse`` over held-out cells."""

    predicted: np.ndarray
    measured: np.ndarray
    error: float
    exact: float
    risk_rmse: float


def leave_one_budget_out(fitter: Fitter, difficulties, budgets, risk) -> HoldoutScore:
    """Hold out each budget in turn: ``fitter(d [D], n [N-1], risk [D, N-1])`` returns a function
    ``n -> predicted risk [D]``; d* at the held-out budget is its argmin over ``difficulties``."""
    d, n, y = (np.asarray(a, np.float64) for a in (difficulties, budgets, risk))
    predicted, measured, sq = np.full(n.size, np.nan), argmin_difficulty(y, d), []
    for j in range(n.size):
        keep = np.arange(n.size) != j
        try:
            predict = fitter(d, n[keep], y[:, keep])
        except (ValueError, RuntimeError):
            continue
        r = np.asarray(predict(float(n[j])), np.float64)
        predicted[j] = argmin_difficulty(r[:, None], d)[0]
        ok = np.isfinite(y[:, j])
        sq.extend(((r - y[:, j])[ok] ** 2).tolist())
    hit = np.isfinite(predicted) & np.isfinite(measured)
    err = np.abs(predicted - measured)[hit]
    return HoldoutScore(
        predicted,
        measured,
        float(err.mean()) if err.size else np.nan,
        float(np.mean(err == 0)) if err.size else np.nan,
        float(np.sqrt(np.mean(sq))) if sq else np.nan,
    )


def threshold_fitter(pi=None, shape: str = "free") -> Fitter:
    """A :data:`Fitter` for :func:`leave_one_budget_out` from :func:`fit_threshold`."""

    def fitter(d: np.ndarray, n: np.ndarray, y: np.ndarray) -> Callable[[float], np.ndarray]:
        result = fit_threshold(d, n, y, pi, shape=shape)
        return lambda budget: result.predict_risk(np.asarray([budget]))[:, 0]

    return fitter
