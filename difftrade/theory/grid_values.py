"""Pure-numpy helpers on grids of values indexed by difficulty: NaN-aware means, argument checks,
and the argmin over difficulty with ties to the easiest level.

Shapes: D difficulties, N budgets, S seeds. A grid of values is ``[D, ...]`` with difficulty on
axis 0 (a risk grid ``[D, N]`` or ``[D, N, S]``, a bound ``[D, N]``, bootstrap means
``[D, N, B]``); ``difficulties`` is ``[D]``, in any order. Non-finite entries (NaN, ±inf: a
diverged or excluded member, a vacuous bound) are skipped everywhere: a column with no finite
entry has a NaN mean, no tie, and no minimiser (index ``-1``, difficulty NaN).

The measured d*(n), seed means and the seed bootstrap built on these are
:mod:`difftrade.analysis.optimum`; the modelled and certified d*(n) are in this stage
(:mod:`difftrade.theory.tradeoff_families`, :mod:`difftrade.theory.d_star_from_bounds`).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from collections.abc import Iterator

import numpy as np
from numpy.typing import ArrayLike


# ---- NaN-aware means --------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_nan_warnings() -> Iterator[None]:
    """Silence numpy's RuntimeWarnings for all-NaN slices ('Mean of empty slice', 'All-NaN
    slice encountered'); such slices stay NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def nan_mean(values: ArrayLike, axis: int | None = -1) -> np.ndarray:
    """Mean over ``axis`` of the finite entries of ``values`` (NaN and ±inf are skipped); NaN
    where a slice has no finite entry. Never warns. ``values [..., K, ...] -> [...]``."""
    v = np.asarray(values, dtype=float)
    finite = np.isfinite(v)
    total = np.sum(np.where(finite, v, 0.0), axis=axis)
    count = np.sum(finite, axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# ---- argument checks --------------------------------------------------------------------------
def check_grid(
    risk: ArrayLike, difficulties: ArrayLike, ndims: tuple[int, ...] = (2, 3)
) -> tuple[np.ndarray, np.ndarray]:
    """``risk`` and ``difficulties`` as float arrays; ``ValueError`` unless ``risk`` has one of
    ``ndims`` dimensions (``[D, N]`` or ``[D, N, S]``) and ``difficulties`` is finite ``[D]``."""
    r = np.asarray(risk, dtype=float)
    d = np.asarray(difficulties, dtype=float)
    if r.ndim not in ndims:
        allowed = " or ".join(f"{k}-D" for k in ndims)
        raise ValueError(f"target_risk has shape {r.shape}; allowed: {allowed} [D, N(, S)]")
    if d.ndim != 1 or d.shape[0] != r.shape[0]:
        raise ValueError(f"difficulties has shape {d.shape}; allowed: [D] with D = {r.shape[0]}")
    if not np.all(np.isfinite(d)):
        raise ValueError(f"difficulties={d.tolist()}; allowed: finite values")
    return r, d


def _check_tol(tol: float) -> float:
    """``tol`` as a float when it is a finite real number >= 0; ``ValueError`` otherwise."""
    if (
        isinstance(tol, bool)
        or not isinstance(tol, numbers.Real)
        or not math.isfinite(tol)
        or tol < 0
    ):
        raise ValueError(f"tol={tol!r}; allowed: a finite number >= 0")
    return float(tol)


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """``alpha`` as a float when it is a real number in (0, 1); ``ValueError`` naming ``name`` otherwise."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
        raise ValueError(f"{name}={alpha!r}; allowed: 0 < {name} < 1")
    return float(alpha)


# ---- argmin over difficulty -------------------------------------------------------------------
def tie_mask(values: ArrayLike, tol: float = 0.0) -> np.ndarray:
    """The difficulties tied for the lowest value: bool ``[D, ...]`` for ``values [D, ...]``.

    A finite entry is tied when it is at most ``tol`` above the smallest finite entry of its
    column (``tol = 0``: exactly equal). A column with no finite entry has no tie.
    """
    v = np.asarray(values, dtype=float)
    tol = _check_tol(tol)
    finite = np.isfinite(v)
    low = np.min(np.where(finite, v, np.inf), axis=0)
    return finite & (v <= low + tol)


def argmin_index(values: ArrayLike, difficulties: ArrayLike, tol: float = 0.0) -> np.ndarray:
    """Index (axis 0) of the lowest finite value per column: int ``[...]`` for ``values [D, ...]``.

    Ties (see :func:`tie_mask`) go to the easiest difficulty, the smallest value of
    ``difficulties [D]``; ``-1`` where a column has no finite value.
    """
    v = np.asarray(values, dtype=float)
    d = np.asarray(difficulties, dtype=float)
    if v.ndim < 1 or d.shape != (v.shape[0],):
        raise ValueError(
            f"difficulties has shape {d.shape}; allowed: [D] with values [D, ...] = {v.shape}"
        )
    tied = tie_mask(v, tol)
    rank = np.argsort(np.argsort(d, kind="stable"), kind="stable")  # 0 = easiest
    rank = rank.reshape((-1,) + (1,) * (v.ndim - 1))
    idx = np.argmin(np.where(tied, rank, v.shape[0]), axis=0)
    return np.where(tied.any(axis=0), idx, -1)


def argmin_difficulty(values: ArrayLike, difficulties: ArrayLike, tol: float = 0.0) -> np.ndarray:
    """Difficulty value with the lowest finite entry per column: ``[...]`` for ``values [D, ...]``;
    ties to the easiest level; NaN where a column has no finite value."""
    d = np.asarray(difficulties, dtype=float)
    idx = argmin_index(values, d, tol)
    return np.where(idx >= 0, d[np.maximum(idx, 0)], np.nan)
