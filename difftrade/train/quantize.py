"""Quantizing a member's subspace coordinates to L values of a learned codebook.

A member's ``z`` float32 ``[D]`` becomes symbols ``s`` int32 ``[D]`` in ``0..L-1`` and a codebook
``c`` ``[L]`` (ascending), with ``ẑ = c[s]``. The codebook starts at the quantiles of ``z``, is
refined by a few Lloyd (k-means) iterations, and is then trained together with ``z`` by
quantization-aware training: the forward pass sees ``c[s(z)]``, the gradient reaches ``z``
straight through the rounding (``ẑ + z - stop_gradient(z)``) and ``c`` through the lookup
(:class:`QuantizedView`, a trainer view for ``difftrade.train.trainer``).

The codebook that a certificate describes is stored in half precision (16 bits a value): the
evaluated network uses :func:`stored_codebook`, exactly the values the code length pays for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from difftrade.config.sections import SubspaceConfig
from difftrade.model.transformer import Params
from difftrade.train.subspace import Subspace

CODEBOOK_BITS = 16  # each codebook value is stored as an IEEE half


def initial_codebook(z: jax.Array, levels: int, iterations: int = 10) -> jax.Array:
    """A codebook float32 ``[L]`` for ``z`` ``[D]``: the ``(i + 1/2) / L`` quantiles, then Lloyd
    iterations (a value with no members keeps its place); ascending."""
    c = jnp.quantile(z, (jnp.arange(levels) + 0.5) / levels)

    def lloyd(c, _):
        s = assign(z, c)
        total = jax.ops.segment_sum(z, s, num_segments=levels)
        count = jax.ops.segment_sum(jnp.ones_like(z), s, num_segments=levels)
        return jnp.where(count > 0, total / jnp.maximum(count, 1), c), None

    c, _ = jax.lax.scan(lloyd, c, None, length=iterations)
    return jnp.sort(c)


def assign(z: jax.Array, codebook: jax.Array) -> jax.Array:
    """Symbols int32 ``[D]``: the index of the nearest codebook value (the lower one on a tie)."""
    return jnp.argmin(jnp.abs(z[:, None] - codebook[None, :]), axis=1).astype(jnp.int32)


def straight_through(z: jax.Array, codebook: jax.Array) -> jax.Array:
    """``c[s(z)]`` ``[D]`` in the forward pass; gradient 1 to ``z``, and to ``c`` through the lookup."""
    return codebook[assign(z, codebook)] + z - jax.lax.stop_gradient(z)


def stored_codebook(codebook: jax.Array) -> jax.Array:
    """The codebook as the code stores it: rounded to half precision, sorted, as float32 ``[L]``."""
    return jnp.sort(codebook.astype(jnp.float16).astype(jnp.float32))


def quantized(z: jax.Array, codebook: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The description of ``z`` ``[D]``: (symbols int32 ``[D]``, stored codebook ``[L]``, ``ẑ = c[s]`` ``[D]``)."""
    c = stored_codebook(codebook)
    s = assign(z, c)
    return s, c, c[s]


@dataclasses.dataclass(frozen=True)
class QuantizedView:
    """Trainer view for quantization-aware training: trained variables ``{"z": [D], "codebook": [L]}``,
    weights ``θ₀ + P c[s(z)]``. It has no default start: pass ``start`` (from a subspace run)."""

    cfg: SubspaceConfig

    def start(self, params0: Params) -> Any:
        raise ValueError(
            "quantization-aware training starts from trained coordinates; pass start={'z', 'codebook'}"
        )

    def bind(self, params0: Params, key: jax.Array) -> Callable[[Any], Params]:
        space = Subspace(self.cfg, params0, key)
        return lambda w: space.weights(straight_through(w["z"], w["codebook"]))
