"""Select a training subset from an external pool so that its difficulty mix follows a
recommendation.

A practitioner has a pool of ``P`` examples, each with a difficulty score (a model's loss, a
length, a number of reasoning steps: higher = harder), a budget ``n``, and a recommended
distribution over ``L`` difficulty levels (:func:`difftrade.recommender.recommend`).

1. **Bin** the scores into ``L`` levels: quantile bins by default (level ``l`` = the ``l``-th
   ``1/L`` of the pool by score; equal scores always share a level), or explicit edges
   ``bins [L + 1]`` (ascending; scores outside ``[bins[0], bins[-1]]`` are not eligible, so use
   ``-inf``/``inf`` at the ends to cover everything).
2. **Count** per level: ``n * weights`` rounded by largest remainder (floor, then one more for
   the largest fractional parts, ties to the lower level), so the counts sum to ``n`` exactly
   and each is within 1 of ``n * weights[l]``.
3. **Redistribute** when a level has fewer eligible examples than its count: the excess goes
   to the nearest levels with room (distance 1 first, split evenly between the two sides,
   then distance 2, ...). Every move is listed in the :class:`SelectionReport`.
4. **Draw** the counts uniformly without replacement within each level (``numpy`` PCG64,
   seeded): exactly ``n`` distinct indices, deterministic given ``seed``.

Mapping the levels of a synthetic task onto score quantiles of a real pool is an assumption:
it says "level l of L is the l-th slice of my pool by difficulty". Give explicit ``bins`` when
you have a calibrated scale.

Reading a pool's score file and writing a selection: :mod:`difftrade.recommender.pool_files`.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np


class RedistributionWarning(UserWarning):
    """Some level had too few examples; its share went to neighbouring levels."""


# ---- input checks -----------------------------------------------------------------------------
def check_scores(scores: Any, name: str = "scores") -> np.ndarray:
    """Scores as a 1-D float64 array; ``ValueError`` naming the first bad entry (non-numeric,
    NaN or infinite)."""
    arr = np.asarray(scores)
    if arr.ndim != 1:
        raise ValueError(f"{name} has shape {arr.shape}; allowed: a 1-D array of numbers")
    if arr.dtype.kind == "O":  # mixed Python objects: every entry must be a real number
        out = np.empty(arr.shape[0])
        for i, v in enumerate(arr):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, np.number)):
                raise ValueError(  # noqa: TRY004 (the project's convention: bad input is a ValueError)
                    f"{name}[{i}]={v!r} is not a number; allowed: finite numbers"
                )
            out[i] = float(v)
        arr = out
    elif arr.dtype.kind not in "iuf":
        first = f" (e.g. {name}[0]={arr[0]!r})" if arr.size else ""
        raise ValueError(
            f"{name} has dtype {arr.dtype}{first}; allowed: finite numbers (int or float)"
        )
    arr = np.asarray(arr, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(
            f"{name}[{bad[0]}]={float(arr[bad[0]])!r} ({bad.size} non-finite in all); allowed: finite numbers"
        )
    return arr


def check_weights(weights: Any, name: str = "weights") -> np.ndarray:
    """A distribution over levels: 1-D, finite, >= 0, summing to 1 (within 1e-6)."""
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}={weights!r}; allowed: a 1-D array of non-negative numbers summing to 1"
        ) from None
    if w.ndim != 1 or w.shape[0] < 1:
        raise ValueError(
            f"{name} has shape {w.shape}; allowed: a non-empty 1-D distribution over levels"
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{name}={w.tolist()}; allowed: finite, non-negative numbers summing to 1")
    if abs(w.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"{name} sums to {w.sum():.6g} ({w.tolist()}); allowed: non-negative numbers summing to 1"
        )
    return w / w.sum()


def check_budget(budget: Any, pool_size: int, name: str = "budget") -> int:
    if isinstance(budget, bool) or not (
        isinstance(budget, numbers.Integral)
        or (
            isinstance(budget, numbers.Real)
            and np.isfinite(float(budget))
            and float(budget).is_integer()
        )
    ):
        raise ValueError(
            f"{name}={budget!r}; allowed: an integer 1 <= {name} <= {pool_size} (the eligible pool)"
        )
    b = int(budget)
    if b < 1:
        raise ValueError(
            f"{name}={b}; allowed: an integer 1 <= {name} <= {pool_size} (the eligible pool)"
        )
    if b > pool_size:
        raise ValueError(
            f"{name}={b} is larger than the eligible pool ({pool_size} examples); "
            f"allowed: 1 <= {name} <= {pool_size}"
        )
    return b


# ---- the pieces -------------------------------------------------------------------------------
def largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer counts ``[L]`` summing to ``total``, each ``floor(total * w)`` or one more: the
    largest fractional parts get the extra units (ties to the lower index)."""
    w = np.asarray(weights, dtype=np.float64)
    ideal = w * total
    counts = np.floor(ideal + 1e-9).astype(np.int64)  # 1e-9: 0.3 * 10 must floor to 3, not 2
    short = int(total - counts.sum())
    if short > 0:
        frac = ideal - counts
        counts[np.argsort(-frac, kind="stable")[:short]] += 1
    return counts


def bin_scores(
    scores: np.ndarray, num_levels: int, bins: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Level index of every score ``[P]`` (``-1``: outside explicit edges) and the edges ``[L+1]``.

    Default: quantile edges ``quantile(scores, k / L)``; a score equal to an inner edge goes to
    the upper level, so equal scores always share a level (heavy ties can leave a level empty;
    :func:`select` then redistributes). Explicit ``bins``: ``L + 1`` ascending edges; level ``l``
    is ``[bins[l], bins[l+1])``, the last level also includes ``bins[-1]``.
    """
    if bins is None:
        edges = np.quantile(scores, np.linspace(0.0, 1.0, num_levels + 1))
        level = np.searchsorted(edges[1:-1], scores, side="right")
        return level.astype(np.int64), edges
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.shape[0] != num_levels + 1:
        raise ValueError(
            f"bins has {edges.size} edges; allowed: {num_levels + 1} ascending edges for {num_levels} levels"
        )
    if np.any(np.isnan(edges)) or np.any(np.diff(edges) <= 0):
        raise ValueError(
            f"bins={edges.tolist()}; allowed: strictly ascending edges (-inf/inf allowed at the ends)"
        )
    level = np.searchsorted(edges[1:-1], scores, side="right").astype(np.int64)
    outside = (scores < edges[0]) | (scores > edges[-1])
    level[outside] = -1
    return level, edges


def redistribute(
    target: np.ndarray, available: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Cap ``target [L]`` at ``available [L]``, moving the excess to the nearest levels with room.

    Levels are handled in order of decreasing excess (ties: lower level first); at each distance
    the excess is split evenly (largest remainder) over the levels with room on either side.
    Returns the counts and the moves ``(from_level_index, to_level_index, count)``.
    Requires ``target.sum() <= available.sum()``.
    """
    target = np.asarray(target, dtype=np.int64)
    available = np.asarray(available, dtype=np.int64)
    counts = np.minimum(target, available)
    excess = target - counts
    moved: dict[tuple[int, int], int] = {}
    L = target.shape[0]
    for i in np.argsort(-excess, kind="stable"):
        e = int(excess[i])
        for k in range(1, L):
            if e == 0:
                break
            while e > 0:
                room = [j for j in (i - k, i + k) if 0 <= j < L and available[j] > counts[j]]
                if not room:
                    break
                share = largest_remainder(np.full(len(room), 1.0 / len(room)), e)
                for j, s in zip(room, share):
                    s = int(min(s, available[j] - counts[j]))
                    if s:
                        counts[j] += s
                        e -= s
                        moved[(int(i), j)] = moved.get((int(i), j), 0) + s
        if e:
            raise ValueError("the pool is too small for the budget")  # unreachable after checks
    return counts, [(a, b, c) for (a, b), c in sorted(moved.items())]


# ---- selection --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SelectionReport:
    """What :func:`select` did. Arrays are ``[L]`` over ``levels``: ``weights`` (requested),
    ``available`` (eligible pool examples per level), ``target`` (largest-remainder counts),
    ``counts`` (selected). ``moves``: ``(from_level, to_level, count)`` redistributions."""

    budget: int
    pool_size: int
    eligible: int
    seed: int
    levels: np.ndarray
    weights: np.ndarray
    bin_edges: np.ndarray
    binning: str
    available: np.ndarray
    target: np.ndarray
    counts: np.ndarray
    moves: tuple[tuple[Any, Any, int], ...]
    notes: tuple[str, ...]

    @property
    def redistributed(self) -> bool:
        return bool(self.moves)

    @property
    def proportions(self) -> np.ndarray:
        return self.counts / self.budget

    def __str__(self) -> str:
        lines = [
            f"Selected {self.budget:,} of {self.pool_size:,} examples (seed {self.seed}; "
            f"{self.binning} bins over {len(self.levels)} levels"
            + (
                f"; {self.pool_size - self.eligible:,} outside the bin edges"
                if self.eligible < self.pool_size
                else ""
            )
            + ")",
            "  level | score range         | pool  | weight | target | selected",
        ]
        for k, lv in enumerate(self.levels):
            lo, hi = self.bin_edges[k], self.bin_edges[k + 1]
            lines.append(
                f"  {level_label(lv):>5} | [{lo:8.4g}, {hi:8.4g}] | {self.available[k]:5d} | {self.weights[k]:6.3f} | "
                f"{self.target[k]:6d} | {self.counts[k]:8d}"
            )
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class Selection:
    """``indices [n]`` (ascending, distinct, into the pool), ``levels [n]`` (level of each),
    ``scores [n]`` (their scores) and the :class:`SelectionReport`."""

    indices: np.ndarray
    levels: np.ndarray
    scores: np.ndarray
    report: SelectionReport


def level_label(x: Any) -> str:
    """A difficulty level ``x`` (scalar) as text: ``"3"`` for a whole number, else the shortest
    ``:g`` form (``"2.5"``)."""
    x = float(x)
    return str(int(x)) if x.is_integer() else f"{x:g}"


def _weights_and_levels(recommendation_or_weights: Any) -> tuple[np.ndarray, np.ndarray]:
    w = getattr(recommendation_or_weights, "weights", None)
    if w is not None and hasattr(recommendation_or_weights, "levels"):
        return check_weights(w, "recommendation.weights"), np.asarray(
            recommendation_or_weights.levels
        )
    w = check_weights(recommendation_or_weights, "weights")
    return w, np.arange(1, w.shape[0] + 1)


def select_with_report(
    scores: Any, budget: Any, recommendation_or_weights: Any, *, bins: Any = None, seed: int = 0
) -> Selection:
    """:func:`select`, also returning the levels, scores and a :class:`SelectionReport`."""
    s = check_scores(scores)
    weights, levels = _weights_and_levels(recommendation_or_weights)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed={seed!r}; allowed: an integer >= 0")
    L = weights.shape[0]
    level_of, edges = bin_scores(s, L, bins)
    eligible = int(np.sum(level_of >= 0))
    n = check_budget(budget, eligible)
    available = np.bincount(level_of[level_of >= 0], minlength=L).astype(np.int64)
    target = largest_remainder(weights, n)
    counts, moves = redistribute(target, available)
    notes = []
    if eligible < s.shape[0]:
        notes.append(
            f"{s.shape[0] - eligible:,} scores lie outside the bin edges and were not eligible"
        )
    empty = [level_label(levels[k]) for k in range(L) if available[k] == 0]
    if empty:
        notes.append(f"levels {empty} have no examples in the pool (ties or explicit edges)")
    if moves:
        by_from: dict[int, list[str]] = {}
        for a, b, c in moves:
            by_from.setdefault(a, []).append(f"{c:,} to level {level_label(levels[b])}")
        for a, parts in by_from.items():
            notes.append(
                f"level {level_label(levels[a])} needed {target[a]:,} but the pool has {available[a]:,}: "
                f"moved {', '.join(parts)}"
            )
        dev = np.abs(counts / n - weights).sum() / 2
        notes.append(
            f"the selected mix differs from the requested one by {dev:.3f} in total variation"
        )
    rng = np.random.default_rng(seed)
    chosen = []
    for k in range(L):
        members = np.flatnonzero(level_of == k)
        if counts[k]:
            chosen.append(rng.choice(members, size=int(counts[k]), replace=False))
    idx = np.sort(np.concatenate(chosen)).astype(np.int64)
    report = SelectionReport(
        budget=n,
        pool_size=int(s.shape[0]),
        eligible=eligible,
        seed=int(seed),
        levels=levels,
        weights=weights,
        bin_edges=edges,
        binning="quantile" if bins is None else "explicit",
        available=available,
        target=target,
        counts=counts,
        moves=tuple((levels[a].item(), levels[b].item(), c) for a, b, c in moves),
        notes=tuple(notes),
    )
    return Selection(indices=idx, levels=levels[level_of[idx]], scores=s[idx], report=report)


def select(
    scores: Any, budget: Any, recommendation_or_weights: Any, *, bins: Any = None, seed: int = 0
) -> np.ndarray:
    """Choose ``budget`` distinct pool indices whose difficulty mix follows a recommendation.

    ``scores [P]``: per-example difficulty (higher = harder; finite numbers).
    ``recommendation_or_weights``: a :class:`~difftrade.recommend.Recommendation` or a
    distribution ``[L]`` over levels. ``bins``: ``None`` (quantile bins) or ``L + 1`` ascending
    edges. Returns ``[budget]`` int64 indices, ascending, deterministic given ``seed``. Issues a
    :class:`RedistributionWarning` when a level had too few examples (use
    :func:`select_with_report` for the full report).
    """
    sel = select_with_report(scores, budget, recommendation_or_weights, bins=bins, seed=seed)
    if sel.report.redistributed:
        warnings.warn("; ".join(sel.report.notes), RedistributionWarning, stacklevel=2)
    return sel.indices
