"""Racing difficulties at one budget: add seeds, drop the difficulties that are significantly worse,
stop at one answer or when the seeds run out.

A researcher whose pilots cannot rule difficulties out pays for certainty at the budget N itself.
:func:`race` does it on a column of measured risks ``[D, S]`` (seeds in the order they would be
trained): every candidate starts with ``start`` seeds; after each further seed (a *look*) the
all-pairs confidence set for the best difficulty (:func:`~difftrade.analysis.selection.best_set`)
is computed on the survivors' seeds so far, at level α / (number of looks) so that the looks
together keep the family-wise error below α (Bonferroni over looks), and every difficulty outside
it is dropped. The race stops when one difficulty is left or the seeds run out; its answer is the
survivor with the lowest mean. Compute is counted in members trained. :func:`run_race` asks a
``measure`` function for each cell it needs, so one rule serves a finished column (:func:`race`)
and a race that trains its seeds as it goes (:mod:`difftrade.recommender.live_race`).

Each look uses the paired t-test by default: with S seeds the exact sign-flip test cannot go below
2^-S, and Holm over D(D − 1) pairs at α / looks asks for far less (8 seeds, 4 difficulties, 6
looks: 0.0007 against 2^-8 = 0.0039), so a sign-flip race on 8 seeds never drops anything.

:func:`replay` runs races on the columns of a finished grid, over many seed orders, and scores
them against the full column: the risk lost (full-column seed mean of the race's answer minus the
best full-column mean) and the compute spent as a share of the full column's D·S members, beside
a uniform allocation of the same compute (every difficulty gets the same number of seeds, the
lowest mean wins). The full column shares seeds with the race, so its d* is not an independent
check; it is what the whole column says.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from difftrade.analysis.selection import best_set
from difftrade.theory.grid_values import argmin_index, check_alpha, nan_mean


@dataclasses.dataclass(frozen=True)
class Race:
    """One race: ``chosen`` difficulty, ``survivors`` at the end, ``members`` trained, ``looks`` taken."""

    chosen: float
    survivors: tuple[float, ...]
    members: int
    looks: int


# (rows [K] of the difficulties, seeds) -> risk [K, len(seeds)]: reads or trains a column's cells
Measure = Callable[[np.ndarray, range], np.ndarray]


def run_race(
    measure: Measure,
    difficulties: ArrayLike,
    max_seeds: int,
    *,
    alpha: float = 0.05,
    start: int = 3,
    method: str = "t",
) -> tuple[Race, np.ndarray]:
    """The race of the module docstring, asking ``measure`` for each cell it needs: seeds
    ``0..start-1`` of every difficulty, then one seed at a time for the survivors, at most
    ``max_seeds`` each. Returns the race and the risks it measured ``[D, max_seeds]`` (NaN where
    it measured nothing). A difficulty whose first ``start`` seeds are all non-finite is out."""
    d = np.asarray(difficulties, np.float64)
    if not 2 <= start <= max_seeds:
        raise ValueError(f"start={start}; allowed: 2 <= start <= the {max_seeds} seeds available")
    level = check_alpha(alpha) / (max_seeds - start + 1)
    r = np.full((d.size, max_seeds), np.nan)
    alive = np.arange(d.size)
    r[:, :start] = measure(alive, range(start))
    members = d.size * start
    alive = alive[np.any(np.isfinite(r[:, :start]), axis=1)]
    s, looks = start, 0
    while True:
        looks += 1
        if alive.size > 1:
            keep = best_set(r[alive, None, :s], d[alive], alpha=level, method=method).in_set[:, 0]
            alive = alive[keep]
        if alive.size <= 1 or s == max_seeds:
            break
        r[alive, s] = measure(alive, range(s, s + 1))[:, 0]
        members, s = members + alive.size, s + 1
    chosen = alive[int(argmin_index(nan_mean(r[alive, :s], axis=1), d[alive]))]
    return Race(float(d[chosen]), tuple(float(v) for v in d[alive]), members, looks), r


def race(
    risk: ArrayLike,
    difficulties: ArrayLike,
    *,
    alpha: float = 0.05,
    start: int = 3,
    method: str = "t",
) -> Race:
    """Race the difficulties of one budget column ``risk [D, S]`` (module docstring); ``method``
    the paired test of each look (:data:`~difftrade.analysis.paired_comparison.PAIRED_METHODS`)."""
    r = np.asarray(risk, np.float64)
    d = np.asarray(difficulties, np.float64)
    if r.ndim != 2 or r.shape[0] != d.size:
        raise ValueError(f"risk has shape {r.shape}; allowed: [D, S] with D = {d.size}")
    if not 2 <= start <= r.shape[1]:
        raise ValueError(f"start={start}; allowed: 2 <= start <= the column's {r.shape[1]} seeds")
    return run_race(
        lambda rows, seeds: r[rows][:, seeds],
        d,
        r.shape[1],
        alpha=alpha,
        start=start,
        method=method,
    )[0]


@dataclasses.dataclass(frozen=True)
class Replay:
    """Races replayed on every budget of a grid, ``orders`` seed orders each.

    ``[N]`` arrays: ``risk_lost`` and ``compute`` (share of the column's D·S members) of the race,
    means over orders; ``uniform_risk_lost``: a uniform allocation of the same compute (rounded
    down to whole seeds per difficulty, at least 1); ``decided``: share of orders ending with one
    survivor.
    """

    budgets: np.ndarray
    risk_lost: np.ndarray
    compute: np.ndarray
    uniform_risk_lost: np.ndarray
    decided: np.ndarray


def replay(
    risk: ArrayLike,
    difficulties: ArrayLike,
    budgets: ArrayLike,
    *,
    orders: int = 20,
    alpha: float = 0.05,
    start: int = 3,
    method: str = "t",
) -> Replay:
    """Races on each budget column of ``risk [D, N, S]``, seeds permuted ``orders`` times by
    ``numpy.random.default_rng(0)`` (the same orders for every budget)."""
    r = np.asarray(risk, np.float64)
    d = np.asarray(difficulties, np.float64)
    D, N, S = r.shape
    rng = np.random.default_rng(0)
    perms = [rng.permutation(S) for _ in range(orders)]
    out = {k: np.full(N, np.nan) for k in ("risk_lost", "compute", "uniform_risk_lost", "decided")}
    for j in range(N):
        full = nan_mean(r[:, j], axis=1)  # [D]
        if not np.any(np.isfinite(full)):
            continue
        best = np.nanmin(full)
        lost, spent, uniform, decided = [], [], [], []
        for p in perms:
            col = r[:, j, p]
            res = race(col, d, alpha=alpha, start=start, method=method)
            lost.append(full[int(np.flatnonzero(d == res.chosen)[0])] - best)
            spent.append(res.members / (D * S))
            k = max(1, res.members // D)
            pick = int(argmin_index(nan_mean(col[:, :k], axis=1), d))
            uniform.append(full[pick] - best)
            decided.append(len(res.survivors) == 1)
        for key, values in zip(
            ("risk_lost", "compute", "uniform_risk_lost", "decided"),
            (lost, spent, uniform, decided),
        ):
            out[key][j] = float(np.mean(values))
    return Replay(np.asarray(budgets), **out)
