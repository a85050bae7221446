"""Training in a random subspace: a member's weights are ``θ = θ₀ + P z`` with ``z`` of dimension D.

``θ₀`` is the member's data-free initialisation (or the base checkpoint when fine-tuning) and
``P`` a structured random projection from ``R^D`` to the ``p`` weights, never stored as a dense
``p × D`` matrix: a sum of ``r`` Kronecker products (Lotfi et al. 2022, "PAC-Bayes compression
bounds so tight that they can explain generalization"),

    P = r^{-1/2} Σ_k A_k ⊗ B_k,   A_k float32 [p1, d1], B_k float32 [p2, d2],

with ``d1 d2 >= D`` and ``p1 p2 >= p``, so ``P z`` is ``vec(Σ_k A_k Z B_kᵀ)`` for ``Z`` = ``z``
(zero-padded to ``d1 d2``) as a ``[d1, d2]`` matrix, cut to the first ``p`` entries. Each column
of every ``A_k`` and ``B_k`` is a unit-norm Gaussian direction, so for ``r = 1`` every column of
``P`` has norm 1 and for larger ``r`` norm 1 in expectation.

``P`` and ``θ₀`` depend on the run key and the member's seed only (the projection's own root,
``fold_in(run_key, 3)``, then the seed), never on the training data: a code for ``z`` is a code
for the network, which is what the compression certificates (``difftrade.certify.compress``) need.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from difftrade.config.sections import SubspaceConfig
from difftrade.tasks.keys import salted


class Projection(NamedTuple):
    """One member's projection: ``a`` float32 ``[r, p1, d1]``, ``b`` float32 ``[r, p2, d2]``."""

    a: jax.Array
    b: jax.Array


def factor_shape(size: int) -> tuple[int, int]:
    """``(s1, s2)`` with ``s1 = ceil(sqrt(size))``, ``s2 = ceil(size / s1)``: the most square
    factorisation with ``s1 s2 >= size``."""
    s1 = math.isqrt(size - 1) + 1 if size > 1 else 1
    return s1, -(-size // s1)


def _unit_columns(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Gaussian ``[..., rows, cols]`` with every column scaled to unit norm."""
    x = jax.random.normal(key, shape, jnp.float32)
    return x / jnp.linalg.norm(x, axis=-2, keepdims=True)


def make_projection(key: jax.Array, num_params: int, cfg: SubspaceConfig) -> Projection:
    """The projection ``R^D -> R^p`` of one member (vmappable over ``key``)."""
    (p1, p2), (d1, d2) = factor_shape(num_params), factor_shape(cfg.dim)
    ka, kb = jax.random.split(key)
    return Projection(
        _unit_columns(ka, (cfg.terms, p1, d1)), _unit_columns(kb, (cfg.terms, p2, d2))
    )


def project(proj: Projection, z: jax.Array, num_params: int) -> jax.Array:
    """``P z``: float32 ``[D]`` -> float32 ``[num_params]``."""
    r, _, d1 = proj.a.shape
    d2 = proj.b.shape[2]
    zz = jnp.pad(z, (0, d1 * d2 - z.shape[0])).reshape(d1, d2)
    out = jnp.einsum("kpi,ij,kqj->pq", proj.a, zz, proj.b) / jnp.sqrt(jnp.float32(r))
    return out.reshape(-1)[:num_params]


def projection_key(run_key: jax.Array, seed: jax.Array) -> jax.Array:
    """The key of a member's projection: from the run key and its seed only (not its data)."""
    return jax.random.fold_in(salted(run_key, "projection"), seed)


class Subspace:
    """Maps a member's coordinates ``z`` to its weights: ``weights(z) = θ₀ + P z``.

    Built inside the traced per-member function from ``θ₀`` (a params pytree) and the member's
    projection key.
    """

    def __init__(self, cfg: SubspaceConfig, base: Any, key: jax.Array):
        self.flat0, self.unravel = ravel_pytree(base)
        self.num_params = int(self.flat0.shape[0])
        self.proj = make_projection(key, self.num_params, cfg)
        self.dim = cfg.dim

    def start(self) -> jax.Array:
        """``z = 0`` (the weights start at ``θ₀``): float32 ``[D]``."""
        return jnp.zeros((self.dim,), jnp.float32)

    def weights(self, z: jax.Array) -> Any:
        """The params pytree at coordinates ``z`` float32 ``[D]``."""
        return self.unravel(
            self.flat0 + project(self.proj, z, self.num_params).astype(self.flat0.dtype)
        )
