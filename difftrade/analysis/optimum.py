"""Statistics of the optimal training difficulty d*(n) over a results grid.

The one implementation of: seed means, the measured d*(n), the seed bootstrap of d*(n), the
sample-size caveat a report prints, and the trend fractions of the mechanism checks. The helpers
they rest on (NaN-aware means, grid checks, the argmin over difficulty with ties to the easiest
level) are :mod:`difftrade.theory.grid_values`; the paired comparisons of every difficulty against
d*(n) with Holm's correction are :mod:`difftrade.analysis.paired_comparison`.

Shapes: D difficulties, N budgets, S seeds. A risk grid is ``[D, N, S]`` (the results schema's
``target_risk``). A member that diverged or was excluded is a NaN risk; non-finite members are
skipped everywhere, so a cell in which every seed is non-finite has a NaN seed mean and is never
chosen as d*. Members that share a seed share their initial weights and test sets, so two
difficulties at one budget are compared *paired* over seeds.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike

from difftrade.results.divergence import diverged_mask
from difftrade.theory.grid_values import (
    argmin_difficulty,
    check_alpha,
    check_grid,
    nan_mean,
    quiet_nan_warnings,
    tie_mask,
)

MIN_SUPPORTED_SEEDS = 5  # below this, support_note says the intervals and tests support no claim


# ---- seed means ------------------------------------------------------------------------------
def seed_mean(risk: ArrayLike) -> np.ndarray:
    """Seed mean of a risk grid: ``[D, N, S] -> [D, N]`` (any ``[..., S] -> [...]``).

    Non-finite members are skipped; a cell with no finite seed is NaN. Never warns.
    """
    r = np.asarray(risk, dtype=float)
    if r.ndim < 1:
        raise ValueError(
            f"risk has shape {r.shape}; allowed: an array [..., S] with a seed axis last"
        )
    return nan_mean(r, axis=-1)


# ---- argument checks --------------------------------------------------------------------------
def _check_count(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r}; allowed: an integer >= {minimum}")
    return int(value)


# ---- d*(n): argmin over difficulty ------------------------------------------------------------
def d_star(
    risk: ArrayLike | xr.Dataset,
    difficulties: ArrayLike | None = None,
    *,
    tol: float = 0.0,
    return_ties: bool = False,
    variable: str = "target_risk",
) -> np.ndarray | xr.DataArray | tuple[np.ndarray, np.ndarray]:
    """Optimal difficulty per budget: the argmin over difficulty of the seed-mean risk.

    ``risk``: a results Dataset (its ``variable``, diverged members skipped; ``difficulties``
    taken from it), returning an ``xr.DataArray [budget]`` of integer difficulties (float with
    NaN only where a budget has no finite cell); or an array ``[D, N, S]`` (or seed means
    ``[D, N]``) with ``difficulties [D]`` in any order, returning ``[N]`` difficulty values
    (NaN where a budget has no finite cell). Non-finite members are skipped and a cell with no
    finite seed is never chosen. Means within ``tol`` of the lowest (``tol = 0``: exactly
    equal) tie, and ties go to the easiest level. With ``return_ties`` (arrays only) also the
    tie set, bool ``[D, N]``.
    """
    if isinstance(risk, xr.Dataset):
        return _d_star_of_results(risk, variable, tol)
    if difficulties is None:
        raise ValueError(
            "difficulties is missing; allowed: [D] values beside a risk array, or a results Dataset"
        )
    r, d = check_grid(risk, difficulties)
    mean = seed_mean(r) if r.ndim == 3 else r
    best = argmin_difficulty(mean, d, tol)
    return (best, tie_mask(mean, tol)) if return_ties else best


def _d_star_of_results(ds: xr.Dataset, variable: str, tol: float) -> xr.DataArray:
    """:func:`d_star` of a results Dataset: ``[budget]`` integer difficulties."""
    if variable not in ds:
        raise ValueError(
            f"variable={variable!r} is not in the results; allowed: {sorted(map(str, ds.data_vars))}"
        )
    da = ds[variable]
    bad = diverged_mask(ds)
    if bad is not None:
        da = da.where(~bad)
    grid = da.transpose("difficulty", "budget", "seed").values.astype(np.float64)
    best = d_star(grid, ds["difficulty"].values, tol=tol)
    values = best.astype(np.int64) if np.all(np.isfinite(best)) else best
    return xr.DataArray(
        values, coords={"budget": ds["budget"].values}, dims=("budget",), name="d_star"
    )


# ---- seed bootstrap ---------------------------------------------------------------------------
BOOTSTRAP_RESAMPLES = 2000
"""Resamples behind every d*(n) interval that tables, reports and figures show."""
BOOTSTRAP_SEED = 0
"""Seed of the ``numpy.random.default_rng`` generator that draws them: the same resamples everywhere."""


def distinct_resamples(num_seeds: int) -> int:
    """Number of distinct seed resamples (multisets of S draws from S seeds): C(2S - 1, S)."""
    s = _check_count(num_seeds, "num_seeds", 1)
    return math.comb(2 * s - 1, s)


def resample_seed_means(
    risk: ArrayLike, n_boot: int, seed: int | np.random.Generator = 0
) -> np.ndarray:
    """Seed means of ``n_boot`` bootstrap resamples: ``risk [D, N, S] -> [D, N, n_boot]``.

    One resample draws S seed indices with replacement (``rng.integers(0, S, (n_boot, S))``) and
    uses them for every (difficulty, budget) cell, keeping what the runs of one seed share.
    Deterministic given ``seed`` (an int or a ``numpy.random.Generator``, which is advanced).
    """
    r = np.asarray(risk, dtype=float)
    if r.ndim != 3:
        raise ValueError(f"risk has shape {r.shape}; allowed: 3-D [D, N, S]")
    n_boot = _check_count(n_boot, "n_boot", 1)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    idx = rng.integers(0, r.shape[2], size=(n_boot, r.shape[2]))
    return seed_mean(r[:, :, idx])  # [D, N, B, S] -> [D, N, B]


@dataclasses.dataclass(frozen=True)
class BootstrapDStar:
    """Percentile bootstrap interval for d*(n). ``d_star``: the point estimate on all seeds
    ``[N]``; ``low``/``high``: interval ends ``[N]``; ``samples``: ``[n_boot, N]``."""

    d_star: np.ndarray
    low: np.ndarray
    high: np.ndarray
    samples: np.ndarray
    level: float


def bootstrap_d_star(
    target_risk: ArrayLike,
    difficulties: ArrayLike,
    n_boot: int = BOOTSTRAP_RESAMPLES,
    seed: int | np.random.Generator = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> BootstrapDStar:
    """Bootstrap d*(n) by resampling seeds with replacement (see :func:`resample_seed_means`).

    ``target_risk``: ``[D, N, S]``; ``difficulties``: ``[D]``. The interval is the
    ``(1 - level)/2`` and ``(1 + level)/2`` percentiles of the resampled d*, taken conservatively
    on the discrete levels (lower/higher order statistic). Deterministic given ``seed``. Only
    :func:`distinct_resamples` (S) different resamples exist.
    """
    r, d = check_grid(target_risk, difficulties, ndims=(3,))
    level = check_alpha(level, "level")
    means = resample_seed_means(r, n_boot, seed)  # [D, N, B]
    samples = argmin_difficulty(means, d).T  # [B, N]
    alpha = (1 - level) / 2
    with quiet_nan_warnings():
        low = np.nanquantile(samples, alpha, axis=0, method="lower")
        high = np.nanquantile(samples, 1 - alpha, axis=0, method="higher")
    return BootstrapDStar(d_star(r, d), low, high, samples, level)


# ---- what a report may claim ------------------------------------------------------------------
def support_note(num_seeds: int) -> str:
    """A sentence for a report when ``num_seeds`` is too small to support a claim, else "".

    Below ``MIN_SUPPORTED_SEEDS`` (5) seeds: the one-sided sign-flip test cannot reach p < 2^-S
    (1/16 at S = 4, above 0.05), and the seed bootstrap has only C(2S − 1, S) distinct resamples.
    """
    s = _check_count(num_seeds, "num_seeds", 0)
    if s >= MIN_SUPPORTED_SEEDS:
        return ""
    if s == 0:
        return "with no seeds there is no measurement, so nothing can be claimed about d*(n)"
    count = distinct_resamples(s)
    return (
        f"with {s} seed{'s' if s > 1 else ''} (fewer than {MIN_SUPPORTED_SEEDS}) the bootstrap intervals and "
        f"paired tests cannot support a claim about d*(n): the seed bootstrap has only {count} distinct "
        f"resample{'s' if count > 1 else ''}, and the smallest possible sign-flip p-value is {2.0**-s:.4g}"
    )


# ---- mechanism checks -------------------------------------------------------------------------
def trend(values: ArrayLike, tol: float = 0.01) -> float:
    """Among ordered pairs (i < j) whose values differ by more than ``tol``, the fraction with
    values[j] > values[i] (1 = increasing, 0 = decreasing; NaN if every pair is a tie, e.g. all
    gaps saturated at 0 or 1). ``values``: ``[K]``."""
    v = np.asarray(values)
    pairs = [(i, j) for i in range(len(v)) for j in range(i + 1, len(v)) if abs(v[j] - v[i]) > tol]
    return float(np.mean([v[j] > v[i] for i, j in pairs])) if pairs else float("nan")
