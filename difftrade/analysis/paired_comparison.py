"""Paired comparisons of every difficulty against d*(n) over a results grid: one-sided paired
p-values (sign-flip, t, Wilcoxon), Holm's step-down correction, and :func:`compare_to_d_star`.

Members that share a seed share their initial weights and test sets, so two difficulties at one
budget are compared *paired* over seeds; non-finite members are skipped. Shapes and d*(n) as in
:mod:`difftrade.analysis.optimum`.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from numpy.typing import ArrayLike

from difftrade.analysis.optimum import seed_mean
from difftrade.theory.grid_values import (
    argmin_index,
    check_alpha,
    check_grid,
    nan_mean,
    quiet_nan_warnings,
)

PAIRED_METHODS = ("sign_flip", "t", "wilcoxon")
SIGN_FLIP_EXACT_MAX = 16  # up to this many paired seeds the sign-flip test enumerates all 2^S flips
SIGN_FLIP_DRAWS = 2**16  # random sign vectors beyond that (fixed generator seed 0)


# ---- paired tests -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=SIGN_FLIP_EXACT_MAX + 1)
def _all_signs(n: int) -> np.ndarray:
    """Every vector in {+1, -1}^n: ``[2^n, n]``."""
    bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
    return 1.0 - 2.0 * bits


def sign_flip_p_value(differences: ArrayLike) -> float:
    """One-sided paired permutation p-value of "the differences are centred above 0".

    ``differences [S]`` (non-finite entries dropped). Under the null each difference is as likely
    negated; the p-value is the share of sign vectors ε with Σ ε_s x_s ≥ Σ x_s, the identity
    included. Exact (all 2^S flips) for S <= ``SIGN_FLIP_EXACT_MAX``; beyond that
    ``SIGN_FLIP_DRAWS`` random sign vectors (generator seed 0) give ``(1 + hits) / (1 + draws)``.
    NaN with no finite difference; 1 when every difference is 0.
    """
    x = np.asarray(differences, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan")
    observed = float(np.sum(x))
    slack = 1e-12 * float(np.sum(np.abs(x)))  # equal sums up to summation-order rounding
    if x.size <= SIGN_FLIP_EXACT_MAX:
        return float(np.mean(_all_signs(x.size) @ x >= observed - slack))
    signs = np.random.default_rng(0).choice([-1.0, 1.0], size=(SIGN_FLIP_DRAWS, x.size))
    hits = int(np.sum(signs @ x >= observed - slack))
    return (1 + hits) / (1 + SIGN_FLIP_DRAWS)


def paired_p_value(differences: ArrayLike, method: str = "sign_flip") -> float:
    """One-sided p-value of "d is worse than d*" from paired differences R(d) − R(d*) ``[S]``.

    ``method``: ``"sign_flip"`` (:func:`sign_flip_p_value`), ``"t"`` (paired t-test,
    ``scipy.stats.ttest_rel``, alternative "greater") or ``"wilcoxon"`` (signed-rank,
    ``scipy.stats.wilcoxon``, alternative "greater", zero differences dropped; its null
    distribution is exact for up to 50 non-zero differences without ties). Non-finite entries are
    dropped. Every method gives 1 when every difference is 0, and NaN with no finite difference
    (the t-test: with fewer than 2).
    """
    if method not in PAIRED_METHODS:
        raise ValueError(f"method={method!r}; allowed: one of {PAIRED_METHODS}")
    x = np.asarray(differences, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0 or (method == "t" and x.size < 2):
        return float("nan")
    if not np.any(x):
        return 1.0
    if method == "sign_flip":
        return sign_flip_p_value(x)
    from scipy import stats

    with np.errstate(all="ignore"), quiet_nan_warnings():
        if method == "t":
            return float(stats.ttest_rel(x, np.zeros_like(x), alternative="greater").pvalue)
        return float(stats.wilcoxon(x, alternative="greater").pvalue)


def holm(p_values: ArrayLike, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down correction of one family of tests: ``p_values [K]`` -> (adjusted ``[K]``,
    reject bool ``[K]``).

    With the m finite p-values sorted, p_(1) <= ... <= p_(m), the adjusted value of p_(i) is
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``; a test is rejected when its adjusted p-value is
    <= ``alpha``. This controls the family-wise error rate at ``alpha``. A NaN p-value (no test
    was possible) is not counted in m, stays NaN and is not rejected.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"p_values has shape {p.shape}; allowed: 1-D [K]")
    alpha = check_alpha(alpha)
    finite = np.flatnonzero(np.isfinite(p))
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError(f"p_values={p.tolist()}; allowed: values in [0, 1] or NaN")
    adjusted = np.full(p.shape, np.nan)
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted, np.isfinite(adjusted) & (adjusted <= alpha)


def paired_differences(risk: ArrayLike, difficulties: ArrayLike, *, tol: float = 0.0) -> np.ndarray:
    """R(d, n, s) − R(d*(n), n, s): ``[D, N, S]`` for ``risk [D, N, S]``.

    d*(n) is :func:`d_star` of the same grid. NaN where either member is non-finite and in every
    budget without a d*; the d* row itself is 0 wherever its member is finite.
    """
    r, d = check_grid(risk, difficulties, ndims=(3,))
    idx = argmin_index(seed_mean(r), d, tol)  # [N]
    best = np.take_along_axis(r, np.maximum(idx, 0)[None, :, None], axis=0)  # [1, N, S]
    diff = r - best  # a budget without d* has no finite member, so its column is NaN
    return np.where(np.isfinite(diff), diff, np.nan)


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """Every difficulty against d*(n), paired over seeds, one column per budget.

    ``difficulties [D]``; ``d_star [N]`` (NaN: a budget without a finite cell). ``[D, N]``:
    ``margin`` (mean paired difference R(d) − R(d*) over the seeds where both are finite; 0 at
    d*), ``p_value`` (one-sided, "d is worse than d*"; NaN at d* and where no test was possible),
    ``p_adjusted`` (Holm over the comparisons of the budget), ``num_seeds`` (seeds used; at d*
    its finite seeds), ``not_worse`` (d* and every difficulty with a finite seed mean that is not
    significantly worse at ``alpha``). ``runner_up [N]``: the difficulty with the second-lowest
    seed mean (ties to the easiest; NaN if none); ``runner_up_margin [N]``: its ``margin``.
    """

    difficulties: np.ndarray
    d_star: np.ndarray
    margin: np.ndarray
    p_value: np.ndarray
    p_adjusted: np.ndarray
    num_seeds: np.ndarray
    not_worse: np.ndarray
    runner_up: np.ndarray
    runner_up_margin: np.ndarray
    method: str
    alpha: float

    def not_worse_set(self, j: int) -> tuple[float, ...]:
        """The difficulties of budget column ``j`` not significantly worse than d*, ascending."""
        return tuple(sorted(float(d) for d in self.difficulties[self.not_worse[:, j]]))


def _compare_column(
    diff: np.ndarray, finite_mean: np.ndarray, best: int, method: str, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One budget: ``diff [D, S]`` paired differences against row ``best``; ``finite_mean [D]``.
    Returns margin, p-value, adjusted p-value, seeds used ``[D]`` and the not-worse mask ``[D]``."""
    used = np.sum(np.isfinite(diff), axis=1)
    margin = nan_mean(diff, axis=1)
    p = np.array(
        [np.nan if i == best else paired_p_value(diff[i], method) for i in range(diff.shape[0])]
    )
    adjusted, reject = holm(p, alpha)
    not_worse = finite_mean & ~reject
    not_worse[best] = True
    return margin, p, adjusted, used, not_worse


def compare_to_d_star(
    risk: ArrayLike,
    difficulties: ArrayLike,
    *,
    method: str = "sign_flip",
    alpha: float = 0.05,
    tol: float = 0.0,
) -> PairedComparison:
    """Per budget, test each difficulty d != d*(n) for being worse than d*(n), paired over seeds.

    ``risk``: ``[D, N, S]``; ``difficulties``: ``[D]``. d*(n) is :func:`d_star` (``tol`` as there).
    For each d the differences R(d, n, s) − R(d*, n, s) over the seeds where both members are
    finite get a one-sided :func:`paired_p_value` (``method``: ``"sign_flip"``, ``"t"`` or
    ``"wilcoxon"``); Holm's step-down correction (:func:`holm`) runs over the D − 1 comparisons of
    each budget at level ``alpha``. A difficulty whose every seed is non-finite is never in the
    not-worse set.

    The test is optimistic: d* is chosen as the lowest mean of the same data it is then compared
    on, so the differences are biased upward and more difficulties look significantly worse than
    an independent replication would show. Read the not-worse set as a lower bound on the set of
    difficulties that could be best. With fewer than 5 seeds the sign-flip test cannot reject at
    0.05 (its smallest p-value is 2^-S); see :func:`support_note`.
    """
    if method not in PAIRED_METHODS:
        raise ValueError(f"method={method!r}; allowed: one of {PAIRED_METHODS}")
    alpha = check_alpha(alpha)
    r, d = check_grid(risk, difficulties, ndims=(3,))
    mean = seed_mean(r)  # [D, N]
    best = argmin_index(mean, d, tol)  # [N]
    diff = paired_differences(r, d, tol=tol)
    shape = mean.shape
    out = {k: np.full(shape, np.nan) for k in ("margin", "p_value", "p_adjusted")}
    used, not_worse = np.zeros(shape, dtype=int), np.zeros(shape, dtype=bool)
    for j in np.flatnonzero(best >= 0):
        col = _compare_column(diff[:, j], np.isfinite(mean[:, j]), int(best[j]), method, alpha)
        (
            out["margin"][:, j],
            out["p_value"][:, j],
            out["p_adjusted"][:, j],
            used[:, j],
            not_worse[:, j],
        ) = col
    rest = np.where(np.arange(shape[0])[:, None] == best[None, :], np.nan, mean)
    second = argmin_index(rest, d)  # [N]
    has_second = (second >= 0) & (best >= 0)
    runner_margin = np.take_along_axis(out["margin"], np.maximum(second, 0)[None, :], axis=0)[0]
    return PairedComparison(
        difficulties=d,
        d_star=np.where(best >= 0, d[np.maximum(best, 0)], np.nan),
        num_seeds=used,
        not_worse=not_worse,
        runner_up=np.where(has_second, d[np.maximum(second, 0)], np.nan),
        runner_up_margin=np.where(has_second, runner_margin, np.nan),
        method=method,
        alpha=alpha,
        **out,
    )
