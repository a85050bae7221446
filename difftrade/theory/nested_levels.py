"""Nested difficulty levels: level weights turned into exact weights over shells.

Nested levels: level d = all problems of size ≤ d, a problem drawn "at level d" uniform over
level d. The level weights are then *not* atoms on which T/S is constant; the shells (problems
whose smallest containing level is j) are: :func:`nested_shell_weights` gives the weight of each
shell, the atoms to pass to :mod:`difftrade.theory.change_of_measure`, and
:func:`nested_problem_density` the probability of one problem in each shell. Training at level d
covers every level ≤ d, so the out-of-support mass π(d) is the T-mass of the shells above d:
precisely the part no bound can certify.

Float64 inside :func:`~difftrade.theory.float64.float64_scope`, jittable and vmappable;
host-known bad inputs raise ValueError.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from difftrade.theory.discrete_divergences import check_weight_vectors, normalise_weights
from difftrade.theory.float64 import ArrayLike, float64_scope, host_value


def _check_sizes(level_sizes: ArrayLike) -> None:
    v = host_value(level_sizes)
    if v is None:
        return
    if (
        v.ndim != 1
        or v.size == 0
        or not np.all(np.isfinite(v))
        or v[0] <= 0
        or np.any(np.diff(v) <= 0)
    ):
        raise ValueError(
            f"level_sizes={v.tolist()!r} is not allowed; allowed: a 1-D, positive, strictly increasing "
            "vector of sample-space sizes |level d| (nested levels)"
        )


def nested_shell_weights(level_weights: ArrayLike, level_sizes: ArrayLike) -> jax.Array:
    """Level weights → exact weights over *shells* for nested levels. float64 ``[..., L]``.

    Nested levels: level d's sample space contains level d−1's, ``N_d = |level d|`` (strictly
    increasing), and a problem drawn "at level d" is uniform over level d. Shell j = problems in
    level j but not in level j−1 (``N_j − N_{j−1}`` problems; shell 1 = level 1). A problem in
    shell j has probability ``ρ_j = Σ_{d ≥ j} w_d / N_d`` (it is in every level d ≥ j), so the
    shell's mass is ``(N_j − N_{j−1})·ρ_j``. Within a shell every distribution built this way is
    uniform, hence the density ratio T/S between two such distributions is constant on shells
    and every divergence between the problem-level distributions equals the divergence between
    their shell weights. Example: addition with operands uniform on [0, 10^d) has
    ``N_d = 10^(2d)``.

    Args: ``level_weights`` ``[..., L]`` summing to 1; ``level_sizes`` ``[L]`` (floats are fine:
    only ratios enter). Returns: shell weights ``[..., L]`` summing to 1.
    """
    check_weight_vectors("level_weights", level_weights)
    _check_sizes(level_sizes)
    with float64_scope():
        (w,) = normalise_weights(level_weights)
        sizes = jnp.asarray(level_sizes, jnp.float64)
        prev = jnp.concatenate([jnp.zeros((1,), jnp.float64), sizes[:-1]])
        shell_fraction = 1.0 - prev / sizes  # (N_j − N_{j−1}) / N_j, exact-ish for huge N
        # mass of shell j = Σ_{d≥j} w_d (N_j − N_{j−1}) / N_d = shell_fraction_j Σ_{d≥j} w_d N_j / N_d
        ratio = sizes[:, None] / sizes[None, :]  # [j, d] = N_j / N_d
        upper = jnp.triu(jnp.ones_like(ratio))  # d ≥ j
        return shell_fraction * jnp.einsum("...d,jd->...j", w, ratio * upper)


def nested_problem_density(level_weights: ArrayLike, level_sizes: ArrayLike) -> jax.Array:
    """Probability of one problem in shell j: ``ρ_j = Σ_{d ≥ j} w_d / N_d``. float64 ``[..., L]``.

    The exact problem-level density under nested levels (see :func:`nested_shell_weights`):
    ``T(z)/S(z) = ρ^T_j/ρ^S_j`` for every problem z in shell j.
    """
    check_weight_vectors("level_weights", level_weights)
    _check_sizes(level_sizes)
    with float64_scope():
        (w,) = normalise_weights(level_weights)
        sizes = jnp.asarray(level_sizes, jnp.float64)
        upper = jnp.triu(jnp.ones((sizes.shape[0],) * 2, jnp.float64))
        return jnp.einsum("...d,jd->...j", w, upper / sizes[None, :])
