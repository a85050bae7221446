"""Closed-form difficulty/budget tradeoff families, fitted to measured target risk, and d*(n)
from certified bounds (the measured d*(n) and its bootstrap live in :mod:`difftrade.analysis`).

Each family models target risk as a generalisation term that grows with difficulty ``d`` and
shrinks with budget ``n``, plus an extrapolation term that shrinks with ``d``::

    power        R = sqrt(c d / n) + a / d                      d* = (2a)^(2/3) (n/c)^(1/3)
    exponential  R = sqrt(c e^(kd) / n) + a e^(-bd)             d* = ln(2ab sqrt(n) / (k sqrt(c))) / (b + k/2)
    pacbayes     R = sqrt((c d + ln(2 sqrt(n)/delta)) / (2n)) + a / d
                 d* = the unique positive root of c^2 d^4 - 8 a^2 n (c d + ln(2 sqrt(n)/delta))

``theory/`` proves (with sympy) that in every family the stationary point is the unique global
minimiser over d > 0 (R decreases before it, increases after) and that dd*/dn > 0. Unimodality is
what makes ``clip(d*, d_min, d_max)`` the constrained minimiser. With ``offset=True`` a family
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

from difftrade.analysis import argmin_difficulty, check_grid, nan_mean

Params = Mapping[str, float] | Sequence[float] | np.ndarray


# ---- families ---------------------------------------------------------------------------------
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

    def _guess(self, d: np.ndarray, n: np.ndarray, y: np.ndarray) -> dict[str, float]:
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

    def _guess(self, d, n, y):
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

    def _guess(self, d, n, y):
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

    def _guess(self, d, n, y):
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


# ---- fitting ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FitResult:
    """A family fitted to target risk on a difficulty x budget grid.

    ``residuals``: ``[D, N]`` fitted minus target (NaN where the target is missing). ``rss``: the
    weighted residual sum of squares; ``n_obs``: cells used; ``aic``/``bic``: Gaussian-error
    information criteria ``m ln(rss/m) + 2k`` / ``+ k ln m``.
    """

    model: TradeoffModel
    params: dict[str, float]
    residuals: np.ndarray
    rss: float
    n_obs: int
    aic: float
    bic: float
    difficulties: np.ndarray
    budgets: np.ndarray
    success: bool

    def predict_risk(self, d, n) -> np.ndarray:
        return self.model.risk(d, n, self.params)

    def predict_d_star(self, n, clip: bool = True) -> np.ndarray:
        """d*(n) for any budgets (also ones never run). ``clip``: restrict to the range of
        difficulties the fit saw (a level outside it does not exist in the data)."""
        if clip:
            return self.model.d_star(
                n, self.params, float(self.difficulties.min()), float(self.difficulties.max())
            )
        return self.model.d_star(n, self.params)


def _validate_grid(difficulties, budgets, target_risk, weights):
    d = np.asarray(difficulties, dtype=float)
    n = np.asarray(budgets, dtype=float)
    y = np.asarray(target_risk, dtype=float)
    if d.ndim != 1 or n.ndim != 1:
        raise ValueError(f"difficulties {d.shape} and budgets {n.shape} must be 1-D")
    if y.shape != (d.shape[0], n.shape[0]):
        raise ValueError(
            f"target_risk has shape {y.shape}; allowed: [D, N] = {(d.shape[0], n.shape[0])}"
        )
    if np.any(d <= 0):
        raise ValueError(f"difficulties={d.tolist()} must be > 0 (the families divide by d)")
    if np.any(n < 1):
        raise ValueError(f"budgets={n.tolist()} must be >= 1")
    if weights is None:
        w = np.ones_like(y)
    else:
        w = np.broadcast_to(np.asarray(weights, dtype=float), y.shape)
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError("weights must be finite and >= 0")
    mask = np.isfinite(y) & (w > 0)
    return d, n, y, w, mask


def fit(
    model: TradeoffModel,
    difficulties,
    budgets,
    target_risk,
    weights=None,
    *,
    n_starts: int = 8,
    seed: int = 0,
) -> FitResult:
    """Weighted least squares fit of ``model`` to ``target_risk [D, N]``.

    Positive parameters are fitted in log space. ``n_starts`` starting points: a data-scaled
    guess plus seeded log-normal perturbations of it (sd 1.5 in log space); the best
    ``scipy.optimize.least_squares`` solution wins. NaN targets and zero weights are ignored.
    Deterministic given ``seed``.
    """
    d, n, y, w, mask = _validate_grid(difficulties, budgets, target_risk, weights)
    m = int(mask.sum())
    names = model.param_names
    k = len(names)
    if m <= k:
        raise ValueError(
            f"only {m} usable cells for {k} parameters; allowed: more cells than parameters"
        )
    is_pos = np.array([nm in model.positive_names for nm in names])
    sw = np.sqrt(w[mask])
    D, N = np.meshgrid(d, n, indexing="ij")
    dm, nm_, ym = D[mask], N[mask], y[mask]

    def to_params(theta):
        return dict(zip(names, np.where(is_pos, np.exp(np.clip(theta, -700, 700)), theta)))

    def residual(theta):
        with np.errstate(over="ignore", invalid="ignore"):
            r = model.risk(dm, nm_, to_params(theta)) - ym
        # a cap keeps wild trial points (exp overflow) from overflowing the optimiser's cost
        return np.clip(np.where(np.isfinite(r), sw * r, 1e6), -1e6, 1e6)

    guess = model._guess(d, n, y)
    theta0 = np.array([np.log(guess[nm]) if pos else 0.0 for nm, pos in zip(names, is_pos)])
    if model.offset:
        theta0[names.index("r0")] = 0.0
    rng = np.random.default_rng(seed)
    starts = [theta0] + [
        theta0 + rng.normal(0.0, 1.5, size=k) * is_pos for _ in range(n_starts - 1)
    ]
    best = None
    for th in starts:
        try:
            res = optimize.least_squares(
                residual,
                th,
                method="trf",
                x_scale="jac",
                max_nfev=2000,
                xtol=1e-14,
                ftol=1e-14,
                gtol=1e-14,
            )
        except (ValueError, FloatingPointError):
            continue
        if best is None or res.cost < best.cost:
            best = res
    if best is None:
        raise RuntimeError(f"fitting {model.name!r} failed from every start")
    params = {kk: float(v) for kk, v in to_params(best.x).items()}
    fitted = model.risk(D, N, params)
    resid = np.where(mask, fitted - y, np.nan)
    rss = float(np.sum(w[mask] * (fitted[mask] - ym) ** 2))
    ll = m * np.log(max(rss, 1e-300) / m)
    return FitResult(
        model=model,
        params=params,
        residuals=resid,
        rss=rss,
        n_obs=m,
        aic=float(ll + 2 * k),
        bic=float(ll + k * np.log(m)),
        difficulties=d,
        budgets=n,
        success=bool(best.success),
    )


@dataclass(frozen=True)
class RankedFit:
    """One row of :func:`compare_models`: the fit, its criterion value, the difference to the
    best, and its Akaike/Schwarz weight exp(-delta/2) / sum."""

    fit: FitResult
    criterion: float
    delta: float
    weight: float


def compare_models(
    difficulties,
    budgets,
    target_risk,
    models: Sequence[TradeoffModel] = FAMILIES,
    weights=None,
    criterion: str = "aic",
    **fit_kwargs,
) -> list[RankedFit]:
    """Fit each family and rank them by ``criterion`` (``"aic"`` or ``"bic"``), best first."""
    if criterion not in ("aic", "bic"):
        raise ValueError(f"criterion={criterion!r} is unknown; allowed: 'aic', 'bic'")
    fits = [fit(mod, difficulties, budgets, target_risk, weights, **fit_kwargs) for mod in models]
    vals = np.array([getattr(f, criterion) for f in fits])
    delta = vals - vals.min()
    wts = np.exp(-delta / 2)
    wts = wts / wts.sum()
    order = np.argsort(vals, kind="stable")
    return [RankedFit(fits[i], float(vals[i]), float(delta[i]), float(wts[i])) for i in order]


def risk_variable(ds, variable: str = "target_risk"):
    """``ds[variable]`` after checking it has dims difficulty, budget and optionally seed."""
    if variable not in ds:
        raise ValueError(
            f"variable={variable!r} is not in the dataset; allowed: {sorted(ds.data_vars)}"
        )
    da = ds[variable]
    for dim in ("difficulty", "budget"):
        if dim not in da.dims:
            raise ValueError(
                f"{variable} has dims {da.dims}; allowed: dims including 'difficulty' and 'budget'"
            )
    extra = [dim for dim in da.dims if dim not in ("difficulty", "budget", "seed")]
    if extra:
        raise ValueError(
            f"{variable} has extra dims {extra}; allowed: difficulty, budget, seed (select first)"
        )
    return da


def fit_dataset(
    ds,
    model: TradeoffModel | None = None,
    *,
    variable: str = "target_risk",
    weights=None,
    **fit_kwargs,
) -> FitResult:
    """Fit a family to an ``xarray.Dataset`` with coords ``difficulty`` [D], ``budget`` [N] and
    (optionally) ``seed`` [S], and ``variable`` with those dims (risk = 1 - exact match, in
    [0, 1]). The risk is averaged over seeds (NaN-aware) before fitting. ``model`` defaults to
    :class:`PowerTradeoff`."""
    model = PowerTradeoff() if model is None else model
    da = risk_variable(ds, variable)
    vals = np.asarray(da.values, dtype=float)
    finite = vals[np.isfinite(vals)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise ValueError(
            f"{variable} ranges over [{finite.min():.3g}, {finite.max():.3g}]; allowed: risks in [0, 1]"
        )
    if "seed" in da.dims:
        da = da.reduce(nan_mean, dim="seed")
    da = da.transpose("difficulty", "budget")
    return fit(
        model,
        np.asarray(da["difficulty"].values, dtype=float),
        np.asarray(da["budget"].values, dtype=float),
        np.asarray(da.values, dtype=float),
        weights,
        **fit_kwargs,
    )


def certified_d_star_set(upper, lower) -> np.ndarray:
    """Which difficulties the certificates cannot rule out as the best: bool ``[D, ...]``.

    ``upper`` and ``lower`` ``[D, ...]``: certified upper and lower bounds on each difficulty's
    risk (axis 0 = difficulty; e.g. ``[D, N, S]``). Difficulty d is ruled out when some d′ has
    ``upper[d′] < lower[d]``: then R(d′) < R(d) on the event where both bounds hold. So if every
    interval holds (probability ≥ 1 − Σ_d δ_d by the union bound), the set contains every true
    minimiser. A NaN upper bound rules nothing out; a NaN lower bound is never ruled out. The set
    is never empty (the smallest upper bound's difficulty stays in it whenever lower ≤ upper).
    """
    up, low = np.asarray(upper, np.float64), np.asarray(lower, np.float64)
    if up.shape != low.shape or up.ndim < 1:
        raise ValueError(f"upper has shape {up.shape} and lower {low.shape}; allowed: one shape [D, ...]")
    best_upper = np.min(np.where(np.isnan(up), np.inf, up), axis=0)  # [...]
    return ~(np.where(np.isnan(low), -np.inf, low) > best_upper[None])


def d_star_from_bound(bound, difficulties, vacuous: float | None = None) -> np.ndarray:
    """Difficulty minimising a certified bound ``[D, N]`` (or per seed ``[D, N, S]``): ``[N]`` (``[N, S]``).

    NaN where a column has no finite bound, and, with ``vacuous`` given, where even its smallest
    bound is ``>= vacuous``: bounds that certify nothing order nothing (a tie of vacuous bounds
    would otherwise name the easiest level).
    """
    b, d = check_grid(bound, difficulties, ndims=(2, 3))
    best = argmin_difficulty(b, d)
    if vacuous is None:
        return best
    informative = np.min(np.where(np.isfinite(b), b, np.inf), axis=0) < vacuous
    return np.where(informative, best, np.nan)
