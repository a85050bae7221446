"""The change-of-measure fields of ``bounds.nc``: the certified band of each member's measured
extrapolation gap from its per-level held-out test sets, and the target risk carried over from
a certified source risk by the exact worst case over [0, 1] losses on the task's level
structure (:func:`~difftrade.theory.change_of_measure.lp_shift_bound`)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from difftrade.config.run_config import RunConfig
from difftrade.results import divergence
from difftrade.tasks.base import Task
from difftrade.theory import clopper_pearson
from difftrade.theory.change_of_measure import lp_shift_bound, lp_shift_lower
from difftrade.theory.nested_levels import nested_shell_weights
from difftrade.train.run_task import run_task


def shift_atoms(task: Task, weights: np.ndarray) -> np.ndarray:
    """Weights ``[..., L]`` over the atoms on which T/S is constant (``task.level_structure``):
    shells for nested levels, the levels themselves for exact ones."""
    if task.level_structure == "nested":
        sizes = [task.sample_space_size(d) for d in task.levels]
        if any(size is None for size in sizes):
            raise ValueError(
                f"task {task.name!r} declares nested levels but not every level's sample_space_size"
            )
        return np.asarray(nested_shell_weights(weights, np.array(sizes, np.float64)))
    if task.level_structure == "exact":
        return np.asarray(weights, np.float64)
    raise ValueError(
        f"task {task.name!r}: level_structure={task.level_structure!r} has no shift atoms; allowed: exact, nested"
    )


def level_bands(
    level_exact: np.ndarray, n_test: int, delta: float
) -> tuple[np.ndarray, np.ndarray]:
    """Clopper–Pearson lower/upper ends of every level risk, each side at δ/(2L). ``[..., L]``."""
    num_levels = level_exact.shape[-1]
    errors = np.rint((1.0 - level_exact) * n_test)
    each = delta / (2 * num_levels)
    lower = np.asarray(clopper_pearson.clopper_pearson_lower(errors, n_test, each))
    upper = np.asarray(clopper_pearson.clopper_pearson_upper(errors, n_test, each))
    return lower, upper


# which change of measure made shift_target_bound (and, for bound_set="train", target_bound);
# files without this attribute were written with an inverted kl bound that is not valid
SHIFT_BOUND = "lp (exact worst case over [0, 1] losses)"


def shift_variables(
    cfg: RunConfig,
    ds: xr.Dataset,
    in_dist_bound: np.ndarray,
    bound_set: str,
    delta_heldout: float,
    in_dist_lower: np.ndarray | None = None,
) -> dict[str, tuple]:
    """The change-of-measure fields of bounds.nc, from the measured results and the certificates.

    ``extrap_gap_lower/upper`` ``[D, N, S]``: the held-out per-level Clopper–Pearson band of
    R_T − R_S; ``heldout_target_lower/upper``: the same bands' interval for the deterministic
    network's R_T (from the run's test sets, no KL: what held-out data certifies);
    ``shift_target_bound``: the deterministic network's R_T from its certified R_S by
    :func:`~difftrade.theory.change_of_measure.lp_shift_bound`; ``target_bound`` (``bound_set="train"``
    only, NaN where ``in_dist_bound`` is): the same change of measure applied to the certified
    L_S(Q), and ``target_lower_bound`` (from ``in_dist_lower``, the certified lower ends of
    L_S(Q)): the best case of the same change of measure (:func:`~difftrade.theory.change_of_measure.lp_shift_lower`);
    ``uncoverable_mass`` ``[D]``: π per training difficulty. Every ``[D, N, S]`` field is NaN for
    a diverged member (:func:`difftrade.results.divergence.diverged_members`): nothing about it is certified.
    """
    dims = ("difficulty", "budget", "seed")
    task = run_task(cfg)
    train_w, target_w = cfg.train_weights(), cfg.target_weights()  # [D, L], [L]
    lower, upper = level_bands(ds["level_exact"].values, cfg.eval.n_test, delta_heldout)
    source_upper = np.einsum("dl,dnsl->dns", train_w, upper)
    source_lower = np.einsum("dl,dnsl->dns", train_w, lower)
    target_upper, target_lower = upper @ target_w, lower @ target_w
    s_atoms = shift_atoms(task, train_w)[:, None, None, :]
    t_atoms = shift_atoms(task, target_w)
    out = {
        "extrap_gap_lower": (dims, target_lower - source_upper),
        "extrap_gap_upper": (dims, target_upper - source_lower),
        "heldout_target_lower": (dims, target_lower),
        "heldout_target_upper": (dims, target_upper),
        "shift_target_bound": (
            dims,
            np.asarray(lp_shift_bound(np.clip(source_upper, 0, 1), t_atoms, s_atoms)),
        ),
        "uncoverable_mass": (
            ("difficulty",),
            np.asarray([t_atoms[s_atoms[i, 0, 0] == 0].sum() for i in range(len(train_w))]),
        ),
    }
    if bound_set == "train":  # no target bound set: L_T(Q) by change of measure from L_S(Q)
        ok = np.isfinite(in_dist_bound)
        composed = np.asarray(lp_shift_bound(np.where(ok, in_dist_bound, 1.0), t_atoms, s_atoms))
        out["target_bound"] = (dims, np.where(ok, composed, np.nan))
        if in_dist_lower is not None:
            ok = np.isfinite(in_dist_lower)
            best = np.asarray(lp_shift_lower(np.where(ok, in_dist_lower, 0.0), t_atoms, s_atoms))
            out["target_lower_bound"] = (dims, np.where(ok, best, np.nan))
    bad = divergence.diverged_members(ds).reshape(cfg.grid_shape)
    return {k: (d, np.where(bad, np.nan, v)) if d == dims else (d, v) for k, (d, v) in out.items()}
