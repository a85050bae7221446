"""Distances between member-stacked parameter pytrees (leading member axis on every leaf), in float64."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def _member_dot(a: Any, b: Any) -> np.ndarray:
    """⟨a, b⟩ per member of two parameter pytrees with leading member axis, float64 ``[M]``."""
    return sum(
        np.sum(
            np.asarray(x, np.float64) * np.asarray(y, np.float64), axis=tuple(range(1, np.ndim(x)))
        )
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def _member_diff(a: Any, b: Any) -> Any:
    """a − b leaf by leaf, in float64."""
    return jax.tree.map(lambda x, y: np.asarray(x, np.float64) - np.asarray(y, np.float64), a, b)


def distance(a: Any, b: Any) -> np.ndarray:
    """Euclidean distance between two parameter pytrees with leading member axis, float64 ``[M]``."""
    diff = _member_diff(a, b)
    return np.sqrt(_member_dot(diff, diff))


def retained_displacement(mean: Any, trained: Any, prior: Any) -> np.ndarray:
    """How much of training's move from the prior centre the fitted mean keeps, per member ``[M]``:
    ``⟨μ − w₀, w − w₀⟩ / ‖w − w₀‖²`` (1: μ = the trained weights w; 0: μ back at the prior w₀)."""
    move, kept = _member_diff(trained, prior), _member_diff(mean, prior)
    return _member_dot(kept, move) / _member_dot(move, move)
