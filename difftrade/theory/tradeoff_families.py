"""Closed-form difficulty/budget tradeoff families: the modelled target risk and its minimiser d*(n).

Fitting them to measured target risk is :mod:`difftrade.theory.tradeoff_fitting`; d*(n) from
certified bounds is :mod:`difftrade.theory.d_star_from_bounds`; the measured d*(n) and its
bootstrap live in :mod:`difftrade.analysis.optimum`.

Each family models target risk as a generalisation term that grows with difficulty ``d`` and
shrinks with budget ``n``, plus an extrapolation term that shrinks with ``d``::

    power        R = sqrt(c d / n) + a / d                      d* = (2a)^(2/3) (n/c)^(1/3)
    exponential  R = sqrt(c e^(kd) / n) + a e^(-bd)             d* = ln(2ab sqrt(n) / (k sqrt(c))) / (b + k/2)
    pacbayes     R = sqrt((c d + ln(2 sqrt(n)/delta)) / (2n)) + a / d
                 d* = the unique positive root of c^2 d^4 - 8 a^2 n (c d + ln(2 sqrt(n)/delta))

``theory/`` proves (with sympy) that in every family the stationary point is the unique global
minimiser over d > 0 (R decreases before it, increases after) and that dd*/dn > 0. Unimodality is
what makes ``clip(d*, d_min, d_max)`` the constrained minimiser; :func:`numeric_d_star` is the
grid-and-refine minimiser for a family without a closed form. With ``offset=True`` a family
gets a free additive constant ``r0`` (irreducible or train risk); it changes neither d* nor its
derivative.

Parameters are dicts ``{name: value}`` (or sequences in ``param_names`` order). Arrays broadcast:
``risk(d[:, None], n[None, :], params)`` is ``[D, N]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from difftrade.theory.grid_values import nan_mean

Params = Mapping[str, float] | Sequence[float] | np.ndarray


@dataclass(frozen=True)
class TradeoffModel:
    """Base class: subclasses define ``_risk`` and (when they have one) a closed-form ``_d_star``.

    ``positive_names``: parameters fitted in log space (kept > 0). ``offset``: add a free
    real ``r0`` to the risk.
    """

    name: str = field(default="", init=False)
    positive_names: tuple[str, ...] = field(default=(), init=False)
    offset: bool = False

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.positive_names + (("r0",) if self.offset else ())

    def params(self, params: Params) -> dict[str, float]:
        """Normalise ``params`` to a dict of floats, checking names and positivity."""
        if isinstance(params, Mapping):
            missing = [k for k in self.param_names if k not in params]
            if missing:
                raise ValueError(
                    f"params is missing {missing} for model {self.name!r}; allowed names: {self.param_names}"
                )
            out = {k: float(params[k]) for k in self.param_names}
        else:
            vals = np.asarray(params, dtype=float).ravel()
            if vals.shape[0] != len(self.param_names):
                raise ValueError(
                    f"params has {vals.shape[0]} values for model {self.name!r}; "
                    f"allowed: {len(self.param_names)} values for {self.param_names}"
                )
            out = dict(zip(self.param_names, vals.tolist()))
        bad = {k: out[k] for k in self.positive_names if not out[k] > 0}
        if bad:
            raise ValueError(f"params {bad} must be > 0 for model {self.name!r}")
        return out

    def risk(self, d, n, params: Params) -> np.ndarray:
        """Modelled target risk at difficulty ``d`` and budget ``n`` (broadcast, float64)."""
        p = self.params(params)
        d = np.asarray(d, dtype=float)
        n = np.asarray(n, dtype=float)
        return self._risk(d, n, p) + (p["r0"] if self.offset else 0.0)

    def d_star(
        self, n, params: Params, d_min: float | None = None, d_max: float | None = None
    ) -> np.ndarray:
        """Optimal difficulty for budget(s) ``n``: the closed form (or exact root) clipped to
        ``[d_min, d_max]`` when given. float64, shape of ``n``."""
        p = self.params(params)
        n = np.asarray(n, dtype=float)
        ds = self._d_star(n, p)
        if ds is None:
            if d_min is None or d_max is None:
                raise ValueError(f"model {self.name!r} has no closed-form d*; give d_min and d_max")
            return numeric_d_star(self, n, p, d_min, d_max)
        lo = -np.inf if d_min is None else d_min
        hi = np.inf if d_max is None else d_max
        return np.clip(ds, lo, hi)

    # subclasses
    def _risk(self, d: np.ndarray, n: np.ndarray, p: dict) -> np.ndarray:
        raise NotImplementedError

    def _d_star(self, n: np.ndarray, p: dict) -> np.ndarray | None:
        return None

    def initial_guess(self, d: np.ndarray, n: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """A rough starting point for fitting, from the data's scale."""
        return {k: 1.0 for k in self.positive_names}


@dataclass(frozen=True)
class PowerTradeoff(TradeoffModel):
    """R = sqrt(c d / n) + a / d; d* = (2a)^(2/3) (n/c)^(1/3) (see theory/tradeoff_power.md)."""

    name: str = field(default="power", init=False)
    positive_names: tuple[str, ...] = field(default=("c", "a"), init=False)

    def _risk(self, d, n, p):
        return np.sqrt(p["c"] * d / n) + p["a"] / d

    def _d_star(self, n, p):
        return (2.0 * p["a"]) ** (2.0 / 3.0) * (n / p["c"]) ** (1.0 / 3.0)

    def initial_guess(self, d, n, y):
        s, dm, nm = _scales(d, n, y)
        return {"c": (s / 2) ** 2 * nm / dm, "a": s * dm / 2}


@dataclass(frozen=True)
class ExponentialTradeoff(TradeoffModel):
    """R = sqrt(c e^(kd) / n) + a e^(-bd);
    d* = ln(2ab sqrt(n) / (k sqrt(c))) / (b + k/2) (see theory/tradeoff_exponential.md).
    d* grows by 1/(2b + k) per unit of ln n."""

    name: str = field(default="exponential", init=False)
    positive_names: tuple[str, ...] = field(default=("c", "k", "a", "b"), init=False)

    def _risk(self, d, n, p):
        return np.sqrt(p["c"] / n) * np.exp(p["k"] * d / 2) + p["a"] * np.exp(-p["b"] * d)

    def _d_star(self, n, p):
        c, k, a, b = p["c"], p["k"], p["a"], p["b"]
        return (np.log(2 * a * b / (k * np.sqrt(c))) + 0.5 * np.log(n)) / (b + k / 2)

    def initial_guess(self, d, n, y):
        s, dm, nm = _scales(d, n, y)
        span = max(float(np.ptp(d)), 1.0)
        k = b = 1.0 / span
        return {
            "c": (s / 2) ** 2 * nm * np.exp(-k * dm),
            "k": k,
            "a": s / 2 * np.exp(b * dm),
            "b": b,
        }


@dataclass(frozen=True)
class PacBayesTradeoff(TradeoffModel):
    """R = sqrt((c d + ln(2 sqrt(n)/delta)) / (2n)) + a / d (see theory/tradeoff_pacbayes.md).

    The generalisation term has the shape of a PAC-Bayes (Pinsker) bound whose KL grows linearly
    in difficulty; ``delta`` is fixed, not fitted. d* is the unique positive root of the quartic
    ``c^2 d^4 - 8 a^2 n (c d + L)``, ``L = ln(2 sqrt(n)/delta)``, found by Newton's method from
    the right (monotone convergence: the quartic is convex on d > 0 and negative at 0). Assumes
    ``n >= 1`` and ``delta < 1`` so that ``L > 0``.
    """

    name: str = field(default="pacbayes", init=False)
    positive_names: tuple[str, ...] = field(default=("c", "a"), init=False)
    delta: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.delta < 1:
            raise ValueError(f"delta={self.delta!r} is out of range; allowed: 0 < delta < 1")

    def _log_term(self, n):
        return np.log(2 * np.sqrt(n) / self.delta)

    def _risk(self, d, n, p):
        return np.sqrt((p["c"] * d + self._log_term(n)) / (2 * n)) + p["a"] / d

    def _d_star(self, n, p):
        c, a = p["c"], p["a"]
        L = self._log_term(n)
        if np.any(L <= 0):
            raise ValueError(
                f"budget n={n[L <= 0]} gives ln(2 sqrt(n)/delta) <= 0; allowed: n >= 1"
            )
        k2 = 8 * a**2 * n
        # h(x) >= 0 for x >= both of these (see docstring), so Newton from x0 decreases monotonically
        x = np.maximum((2 * k2 / c) ** (1 / 3), (2 * k2 * L / c**2) ** 0.25)
        for _ in range(200):
            h = c**2 * x**4 - k2 * (c * x + L)
            step = h / (4 * c**2 * x**3 - k2 * c)
            x = x - step
            if np.all(np.abs(step) <= 1e-14 * x):
                break
        return x

    def initial_guess(self, d, n, y):
        s, dm, nm = _scales(d, n, y)
        L = float(np.log(2 * np.sqrt(nm) / self.delta))
        return {"c": max(2 * nm * (s / 2) ** 2 - L, 1e-3) / dm, "a": s * dm / 2}


FAMILIES: tuple[TradeoffModel, ...] = (PowerTradeoff(), ExponentialTradeoff(), PacBayesTradeoff())


def _scales(d, n, y) -> tuple[float, float, float]:
    s = float(np.clip(nan_mean(y, axis=None), 1e-3, None))
    return s, float(np.median(d)), float(np.exp(np.mean(np.log(n))))


def numeric_d_star(
    model: TradeoffModel, n, params: Params, d_min: float, d_max: float, grid: int = 2001
) -> np.ndarray:
    """argmin over continuous d in [d_min, d_max] of ``model.risk``: a dense grid of ``grid``
    points, refined by a bounded scalar minimiser between the neighbours of the best grid point.
    Works for any family (no unimodality needed beyond the grid's resolution)."""
    if not d_min < d_max:
        raise ValueError(f"d_min={d_min!r}, d_max={d_max!r}; allowed: d_min < d_max")
    p = model.params(params)
    n = np.asarray(n, dtype=float)
    ds = np.linspace(d_min, d_max, grid)
    out = np.empty(n.shape)
    for i, ni in np.ndenumerate(n):
        r = model.risk(ds, ni, p)
        j = int(np.nanargmin(r))
        lo, hi = ds[max(j - 1, 0)], ds[min(j + 1, grid - 1)]
        res = optimize.minimize_scalar(
            lambda x, ni=ni: float(model.risk(x, ni, p)),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-10 * max(1.0, abs(hi))},
        )
        out[i] = res.x if res.fun <= r[j] else ds[j]
    return out
