"""A per-level threshold model: a level is learned once the training data hold enough examples of it.

The row threshold model (:mod:`difftrade.theory.threshold`) has parameters per training
difficulty, so it describes one grid. This model has parameters per *level* of the task::

    a_l(d, n) = σ((ln(n · m_{d,l}) − ln n_c(l)) / s)          (0 when m_{d,l} = 0)
    R_T(d, n) = Σ_l t_l · (1 − a_l(d, n))

``m_{d,l}``: the share of row d's training data that are examples of level l (its training
weight on l for exact levels; for nested levels, where level k contains every easier level, its
weight on levels k >= l); ``n_c(l)``: the number of such examples at which half of level l is
learned; ``s > 0``: the width of the switch in ln n, shared by every level. It is fitted to a
grid's per-level exact match (least squares over difficulties, budgets and levels) and, having no
parameter tied to a row, predicts the accuracy on every level, the target risk and d*(n) for any
training distribution over the same levels and any target: a grid trained on one distribution can
be checked against the prediction from a grid trained on another.

It ignores transfer between levels (learning level l from examples of other levels) and assumes
each level's threshold is fixed by its own examples, whatever else the row trains on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from difftrade.theory.grid_values import argmin_difficulty


def level_mass(train_weights: np.ndarray, structure: str) -> np.ndarray:
    """``m [D, L]``: the share of each row's training data that are examples of each level.

    ``train_weights [D, L]``; ``structure`` ``"exact"`` (m = w) or ``"nested"`` (m_{d,l} =
    Σ_{k>=l} w_{d,k}: an example of level k is also one of every easier level).
    """
    w = np.asarray(train_weights, np.float64)
    if w.ndim != 2:
        raise ValueError(f"train_weights has shape {w.shape}; allowed: [D, L]")
    if structure == "exact":
        return w
    if structure == "nested":
        return np.cumsum(w[:, ::-1], axis=1)[:, ::-1]
    raise ValueError(f"structure={structure!r} is unknown; allowed: exact, nested")


@dataclass(frozen=True)
class LevelFit:
    """A fitted per-level model: ``log_nc [L]`` (ln n_c per level), ``width`` s, the residual sum
    of squares ``rss`` over ``num_points`` per-level accuracies."""

    log_nc: np.ndarray
    width: float
    rss: float
    num_points: int

    def accuracy(self, mass: np.ndarray, budgets) -> np.ndarray:
        """Exact match ``[D, N, L]`` for rows with level shares ``mass [D, L]`` at ``budgets [N]``."""
        m = np.asarray(mass, np.float64)[:, None, :]
        n = np.asarray(budgets, np.float64)[None, :, None]
        with np.errstate(divide="ignore"):
            z = (np.log(n * m) - self.log_nc[None, None, :]) / self.width
        return np.where(m > 0, special.expit(z), 0.0)

    def target_risk(self, mass: np.ndarray, target: np.ndarray, budgets) -> np.ndarray:
        """Modelled target risk ``[D, N]`` = Σ_l t_l (1 − a_l), ``target [L]``."""
        return np.einsum(
            "dnl,l->dn", 1.0 - self.accuracy(mass, budgets), np.asarray(target, np.float64)
        )

    def d_star(self, mass: np.ndarray, target: np.ndarray, difficulties, budgets) -> np.ndarray:
        """Modelled d*(n) ``[N]``: the difficulty with the smallest modelled target risk."""
        return argmin_difficulty(self.target_risk(mass, target, budgets), np.asarray(difficulties))


def fit_levels(
    mass: np.ndarray, budgets, accuracy: np.ndarray, *, n_starts: int = 6, seed: int = 0
) -> LevelFit:
    """Fit the model to measured per-level exact match ``accuracy [D, N, L]`` (seed means; NaN
    cells are skipped) of rows with level shares ``mass [D, L]`` at ``budgets [N]``.

    Least squares in (ln n_c [L], ln s) from ``n_starts`` starting points (the first at the
    budgets' geometric middle); the best fit is returned. ``ValueError`` when no level has a
    finite accuracy with positive mass.
    """
    m, n = np.asarray(mass, np.float64), np.asarray(budgets, np.float64)
    acc = np.asarray(accuracy, np.float64)
    if acc.shape != (m.shape[0], n.size, m.shape[1]):
        raise ValueError(
            f"accuracy has shape {acc.shape}; allowed: [D, N, L] = {(m.shape[0], n.size, m.shape[1])}"
        )
    keep = np.isfinite(acc) & (m[:, None, :] > 0)
    if not keep.any():
        raise ValueError(
            "no finite per-level accuracy on a level the rows train on; allowed: a grid with one"
        )
    num = m.shape[1]

    def residual(theta: np.ndarray) -> np.ndarray:
        fit = LevelFit(theta[:num], float(np.exp(theta[num])), 0.0, 0)
        return (fit.accuracy(m, n) - np.nan_to_num(acc))[keep]

    rng = np.random.default_rng(seed)
    middle = float(np.mean(np.log(n)))
    best = None
    for k in range(n_starts):
        start = np.concatenate(
            [
                np.full(num, middle) + (rng.normal(0, 1.5, num) if k else 0.0),
                [0.0 if not k else rng.normal(0, 0.5)],
            ]
        )
        sol = optimize.least_squares(
            residual,
            start,
            bounds=(np.r_[np.full(num, -5.0), -4.0], np.r_[np.full(num, 25.0), 4.0]),
        )
        if best is None or sol.cost < best.cost:
            best = sol
    return LevelFit(
        best.x[:num].copy(), float(np.exp(best.x[num])), float(2 * best.cost), int(keep.sum())
    )
