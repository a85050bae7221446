"""d*(n) from certified bounds, with no model of the risk.

:func:`d_star_from_bound` is the difficulty minimising a certified upper bound per budget (NaN
where every bound is vacuous: bounds that certify nothing order nothing);
:func:`certified_d_star_set` is the set of difficulties that no two-sided certificate rules out
as the best, which contains every true minimiser whenever all the intervals hold. The modelled
d*(n) is :mod:`difftrade.theory.tradeoff_families`; the measured one :mod:`difftrade.analysis.optimum`.
"""

from __future__ import annotations

import numpy as np

from difftrade.theory.grid_values import argmin_difficulty, check_grid


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
        raise ValueError(
            f"upper has shape {up.shape} and lower {low.shape}; allowed: one shape [D, ...]"
        )
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
