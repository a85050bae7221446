"""Fitting the tradeoff families to measured target risk, and ranking them.

The families are :mod:`difftrade.theory.tradeoff_families`. :func:`fit` is a weighted least
squares fit on a difficulty × budget grid (positive parameters in log space, several seeded
starts, NaN targets ignored); :func:`fit_dataset` fits the seed-mean risk of an
``xarray.Dataset``; :func:`compare_models` fits every family and ranks them by AIC or BIC with
Akaike/Schwarz weights. A :class:`FitResult` predicts the risk and d*(n) for budgets never run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from difftrade.theory.grid_values import nan_mean
from difftrade.theory.tradeoff_families import FAMILIES, PowerTradeoff, TradeoffModel


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

    best = _best_least_squares(residual, _starts(model, d, n, y, is_pos, n_starts, seed))
    if best is None:
        raise RuntimeError(f"fitting {model.name!r} failed from every start")
    params = {kk: float(v) for kk, v in to_params(best.x).items()}
    return _fit_result(model, params, d, n, y, w, mask, success=bool(best.success))


def _starts(model: TradeoffModel, d, n, y, is_pos, n_starts: int, seed: int) -> list[np.ndarray]:
    """Starting points of :func:`fit` (positive parameters in log space): a data-scaled guess, then
    ``n_starts - 1`` seeded log-normal perturbations of it (sd 1.5 in log space)."""
    names = model.param_names
    guess = model.initial_guess(d, n, y)
    theta0 = np.array([np.log(guess[nm]) if pos else 0.0 for nm, pos in zip(names, is_pos)])
    if model.offset:
        theta0[names.index("r0")] = 0.0
    rng = np.random.default_rng(seed)
    return [theta0] + [
        theta0 + rng.normal(0.0, 1.5, size=len(names)) * is_pos for _ in range(n_starts - 1)
    ]


def _best_least_squares(residual, starts):
    """The lowest-cost ``scipy.optimize.least_squares`` solution over ``starts``; None if every
    start failed."""
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
    return best


def _fit_result(
    model: TradeoffModel, params: dict[str, float], d, n, y, w, mask, *, success: bool
) -> FitResult:
    """The :class:`FitResult` of fitted ``params``: residuals, weighted RSS, AIC and BIC."""
    D, N = np.meshgrid(d, n, indexing="ij")
    m = int(mask.sum())
    k = len(model.param_names)
    fitted = model.risk(D, N, params)
    resid = np.where(mask, fitted - y, np.nan)
    rss = float(np.sum(w[mask] * (fitted[mask] - y[mask]) ** 2))
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
        success=success,
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
