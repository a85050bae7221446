"""Difficulty distributions: weight vectors over a task's levels ``d_min..d_max`` (float64
``[num_levels]``, non-negative, summing to one).

Pure numpy. A distribution depends on the levels only (their range and the task's name for error
messages), so a run config computes its rows' training distributions without building the task:
any object with ``name``, ``d_min``, ``d_max`` and ``num_levels`` (a :class:`Levels`) will do,
a task family or :meth:`difftrade.config.run_config.RunConfig.levels`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Levels(Protocol):
    """A range of integer difficulty levels ``d_min..d_max`` with a name for messages."""

    @property
    def name(self) -> str: ...
    @property
    def d_min(self) -> int: ...
    @property
    def d_max(self) -> int: ...
    @property
    def num_levels(self) -> int: ...


@dataclass(frozen=True)
class LevelRange:
    """Levels ``d_min..d_max`` of the task called ``name`` (a :class:`Levels` without the task)."""

    name: str
    d_min: int
    d_max: int

    @property
    def num_levels(self) -> int:
        return self.d_max - self.d_min + 1


def _level_index(task: Levels, d: int, field: str) -> int:
    if not isinstance(d, (int, np.integer)) or not task.d_min <= int(d) <= task.d_max:
        raise ValueError(
            f"{field}={d!r} is out of range for task {task.name!r}: allowed {task.d_min}..{task.d_max}"
        )
    return int(d) - task.d_min


def validate_weights(
    weights: Sequence[float] | np.ndarray, num_levels: int, field: str = "weights"
) -> np.ndarray:
    """Check a weight vector: length, finite, non-negative, sums to one (1e-6). Returns float64 copy."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] != num_levels:
        raise ValueError(
            f"{field} has shape {w.shape}; allowed: a vector of {num_levels} level weights"
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(
            f"{field}={w.tolist()} has negative or non-finite entries; allowed: weights >= 0"
        )
    if abs(w.sum() - 1.0) > 1e-6:
        raise ValueError(f"{field} sums to {w.sum():.8g}; allowed: weights summing to 1")
    return w


def point(task: Levels, d: int) -> np.ndarray:
    """All mass on level ``d``. float64 ``[num_levels]``."""
    w = np.zeros(task.num_levels)
    w[_level_index(task, d, "difficulty")] = 1.0
    return w


def window(task: Levels, lo: int, hi: int) -> np.ndarray:
    """Uniform over levels ``lo..hi`` inclusive."""
    i, j = _level_index(task, lo, "window.lo"), _level_index(task, hi, "window.hi")
    if j < i:
        raise ValueError(f"window.hi={hi} < window.lo={lo}; allowed: lo <= hi")
    w = np.zeros(task.num_levels)
    w[i : j + 1] = 1.0 / (j - i + 1)
    return w


def uniform(task: Levels) -> np.ndarray:
    """Uniform over all levels (the default target distribution)."""
    return np.full(task.num_levels, 1.0 / task.num_levels)


def mixture(task: Levels, d: int, main: float = 0.8) -> np.ndarray:
    """Mass ``main`` on level ``d``, the rest spread uniformly over all levels.

    Every level keeps positive mass when ``main < 1``, which makes change-of-measure bounds
    to any target finite.
    """
    if not 0.0 <= main <= 1.0:
        raise ValueError(f"mixture.main={main!r}; allowed: 0 <= main <= 1")
    return main * point(task, d) + (1.0 - main) * uniform(task)


def distribution(task: Levels, kind: str, d: int, main: float = 0.8) -> np.ndarray:
    """Training distribution of a grid row: ``kind`` in point / mixture / up_to (uniform on d_min..d)."""
    if kind == "point":
        return point(task, d)
    if kind == "mixture":
        return mixture(task, d, main)
    if kind == "up_to":
        return window(task, task.d_min, d)
    raise ValueError(f"train_distribution={kind!r} is unknown; allowed: point, mixture, up_to")
