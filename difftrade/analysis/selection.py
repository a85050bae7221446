"""Which difficulty is best, with the choice of the winner accounted for.

:func:`~difftrade.analysis.paired_comparison.compare_to_d_star` picks d* as the lowest seed mean
and then tests every other difficulty against it *on the same seeds*: the winner's own luck makes
the others look worse, so its not-worse set is optimistic. Two checks here choose nothing from the
data before testing:

* :func:`best_set` — a confidence set for the best difficulty from **all ordered pairs**: for every
  pair (a, b) of one budget a one-sided paired test of "a is worse than b" (the same paired tests,
  over the seeds where both members are finite), Holm's correction over all D(D − 1) tests of the
  budget, and a difficulty stays in the set unless some other difficulty is significantly better
  than it. Why it holds: every null hypothesis "b* is worse than b" about the truly best b* is
  true, so b* is dropped only by a family-wise error, which Holm keeps below α; the set contains
  the best difficulty with probability at least 1 − α (for the sign-flip test, under its null of
  differences symmetric about 0). No winner is picked first, so no selection enters.
* :func:`split_agreement` — a replication check: the seeds are split into two halves, d* is picked
  on one half and compared with d* on the other; the share of splits on which the two agree.
  Every balanced split is used when there are at most ``MAX_SPLITS``, otherwise that many drawn
  with a fixed generator (seed 0).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
from numpy.typing import ArrayLike

from difftrade.analysis.optimum import seed_mean
from difftrade.analysis.paired_comparison import PAIRED_METHODS, holm, paired_p_value
from difftrade.theory.grid_values import argmin_index, check_alpha, check_grid

MAX_SPLITS = 256


@dataclasses.dataclass(frozen=True)
class BestSet:
    """The all-pairs confidence set for the best difficulty, one column per budget.

    ``difficulties [D]``; ``in_set`` bool ``[D, N]``; ``beaten_by [D, N]``: for a difficulty out of
    the set, the difficulty with the smallest adjusted p-value of being better than it (NaN for
    members of the set); ``method``, ``alpha``.
    """

    difficulties: np.ndarray
    in_set: np.ndarray
    beaten_by: np.ndarray
    method: str
    alpha: float

    def members(self, j: int) -> tuple[float, ...]:
        """The difficulties of budget column ``j`` in the set, ascending."""
        return tuple(sorted(float(d) for d in self.difficulties[self.in_set[:, j]]))


def _column(risk: np.ndarray, method: str, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """One budget, ``risk [D, S]`` -> (in the set ``[D]``, index of the row that beats it ``[D]``, −1 if none)."""
    D = risk.shape[0]
    finite = np.any(np.isfinite(risk), axis=1)
    pairs = [(a, b) for a, b in itertools.permutations(range(D), 2) if finite[a] and finite[b]]
    p = np.array([paired_p_value(risk[a] - risk[b], method) for a, b in pairs])
    adjusted, reject = holm(p, alpha) if pairs else (np.zeros(0), np.zeros(0, dtype=bool))
    beaten = np.full(D, -1)
    smallest = np.full(D, np.inf)
    for (a, b), q, r in zip(pairs, adjusted, reject):
        if r and q < smallest[a]:
            smallest[a], beaten[a] = q, b
    return finite & (beaten < 0), beaten


def best_set(
    risk: ArrayLike, difficulties: ArrayLike, *, method: str = "sign_flip", alpha: float = 0.05
) -> BestSet:
    """The all-pairs confidence set for the best difficulty (module docstring) per budget.

    ``risk [D, N, S]``, ``difficulties [D]``; ``method`` a paired test of
    :func:`~difftrade.analysis.paired_comparison.paired_p_value`.
    """
    if method not in PAIRED_METHODS:
        raise ValueError(f"method={method!r}; allowed: one of {PAIRED_METHODS}")
    alpha = check_alpha(alpha)
    r, d = check_grid(risk, difficulties, ndims=(3,))
    D, N, _ = r.shape
    in_set, beaten_by = np.zeros((D, N), dtype=bool), np.full((D, N), np.nan)
    for j in range(N):
        keep, beaten = _column(r[:, j], method, alpha)
        in_set[:, j] = keep
        beaten_by[:, j] = np.where(beaten >= 0, d[np.maximum(beaten, 0)], np.nan)
    return BestSet(d, in_set, beaten_by, method, alpha)


def seed_splits(num_seeds: int, max_splits: int = MAX_SPLITS) -> np.ndarray:
    """Halves of ``num_seeds`` seeds: bool ``[K, S]`` (True = first half, of size ⌊S/2⌋). Every
    split once (a split and its mirror count once when S is even) when they number at most
    ``max_splits``; otherwise ``max_splits`` drawn with ``numpy.random.default_rng(0)``."""
    if num_seeds < 2:
        raise ValueError(f"num_seeds={num_seeds}; allowed: >= 2 (a split needs two halves)")
    half = num_seeds // 2
    total = math.comb(num_seeds, half) // (2 if 2 * half == num_seeds else 1)
    if total <= max_splits:
        combos = itertools.combinations(range(num_seeds), half)
        chosen = [c for c in combos if 2 * half != num_seeds or 0 in c]
    else:
        rng = np.random.default_rng(0)
        chosen = [tuple(rng.choice(num_seeds, half, replace=False)) for _ in range(max_splits)]
    out = np.zeros((len(chosen), num_seeds), dtype=bool)
    for i, c in enumerate(chosen):
        out[i, list(c)] = True
    return out


def split_agreement(
    risk: ArrayLike, difficulties: ArrayLike, *, max_splits: int = MAX_SPLITS
) -> np.ndarray:
    """``[N]``: the share of seed splits on which d* picked on one half equals d* on the other
    (NaN where a budget has no finite member on some half of every split)."""
    r, d = check_grid(risk, difficulties, ndims=(3,))
    splits = seed_splits(r.shape[2], max_splits)
    agree = np.zeros(r.shape[1])
    counted = np.zeros(r.shape[1])
    for first in splits:
        a = argmin_index(seed_mean(r[:, :, first]), d)
        b = argmin_index(seed_mean(r[:, :, ~first]), d)
        ok = (a >= 0) & (b >= 0)
        agree += ok & (a == b)
        counted += ok
    with np.errstate(invalid="ignore"):
        return np.where(counted > 0, agree / np.maximum(counted, 1), np.nan)
