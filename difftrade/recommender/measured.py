"""The measured target-risk surface of a results file.

:class:`Surface`: the seed risks on the difficulty x budget grid (budgets sorted, diverged members
excluded as NaN) and the training distribution of every grid row; :func:`interpolate`: the risk
at any budget inside the measured range, linear in ``log n`` between the two measured budgets
that bracket it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from difftrade.analysis.optimum import seed_mean
from difftrade.results import divergence
from difftrade.theory import tradeoff_fitting


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
    bad = divergence.diverged_mask(ds)
    if bad is None or not set(bad.dims) <= set(da.dims):
        return da, 0
    return da.where(~bad), int(bad.sum())


def surface(ds: xr.Dataset, variable: str = "target_risk") -> Surface:
    """Extract the measured :class:`Surface` from a results Dataset (schema of
    :mod:`difftrade.results.schema`). ``train_weights`` is used when present, else every difficulty
    is taken as a point distribution on the level of the same value. Diverged members
    (``diverged``, or ``nonfinite_steps > 0``) are excluded (NaN); ``ValueError`` if no member
    is left with a finite risk."""
    if not isinstance(ds, xr.Dataset):
        raise ValueError(  # noqa: TRY004 (the project's convention: bad input is a ValueError)
            f"results is a {type(ds).__name__}; allowed: an xarray.Dataset or a FitResult"
        )
    da, diverged = _exclude_diverged(ds, tradeoff_fitting.risk_variable(ds, variable))
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


def bracket_budgets(budgets: np.ndarray, n: float) -> tuple[int, int, float]:
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
        j0, j1, t = bracket_budgets(b, n)
        v = mean[i][ok]
        out[i] = (1 - t) * v[j0] + t * v[j1]
    return out
