"""Discrete distributions over atoms and the divergences between them, for the shift bounds.

Weight vectors are checked (host-known bad input raises ValueError) and renormalised here for
every shift module; the divergences are the out-of-support mass π (:func:`out_of_support_mass`),
T restricted to supp S (:func:`restrict_to_support`), ``KL(T‖S)`` (:func:`discrete_kl`), the
Rényi divergence ``D_q(T‖S)`` (:func:`renyi_divergence`) and Germain et al.'s ``β_q(T‖S)``
(:func:`renyi_beta`).

**Distributions.** ``t`` and ``s`` are weight vectors over the *atoms* of a partition on which
the density ratio T/S is constant, last axis = atoms, leading axes broadcast (e.g. one ``s``
row per training difficulty). For exact-size (disjoint) difficulty levels with the same
within-level distribution under T and S, the atoms are the levels: by the chain rule the
problem-level divergences equal the level-weight divergences. For **nested** levels the level
weights are *not* the atoms: :func:`~difftrade.theory.nested_levels.nested_shell_weights` turns
them into weights over shells, on which T/S is exactly constant.

All functions compute in float64 inside :func:`~difftrade.theory.float64.float64_scope`, are
jittable and vmappable; host-known bad inputs raise ValueError, traced ones give NaN.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from difftrade.theory.float64 import ArrayLike, check_range, float64_scope, host_value


def check_weight_vectors(field: str, w: ArrayLike) -> None:
    """Raise ``ValueError`` naming ``field`` unless a host-known ``w`` is a batch of probability
    vectors over atoms: shape ``[..., K]`` (at least one axis), entries finite and >= 0, each
    vector along the last axis summing to 1 within ``_SUM_TOLERANCE``. Tracers pass unchecked.
    """
    v = host_value(w)
    if v is None:
        return
    if v.ndim == 0:
        raise ValueError(f"{field} is a scalar; allowed: a weight vector over atoms (last axis)")
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        raise ValueError(
            f"{field}={v.tolist()!r} has negative or non-finite entries; allowed: weights >= 0"
        )
    sums = v.sum(axis=-1)
    if np.any(np.abs(sums - 1.0) > _SUM_TOLERANCE):
        raise ValueError(
            f"{field} sums to {sums.tolist()!r}; allowed: weights summing to 1 along the last axis"
        )


def check_renyi_order(order: ArrayLike) -> None:
    """Raise ``ValueError`` if a host-known Rényi order (any shape) has an entry outside
    (1, inf]; tracers pass unchecked (:func:`~difftrade.theory.float64.check_range`)."""
    check_range("order", order, 1.0, math.inf, lo_open=True)


_SUM_TOLERANCE = (
    1e-6  # as difftrade.config.level_weights.validate_weights; vectors are renormalised exactly
)


def _weights_ok(w: jax.Array) -> jax.Array:
    return jnp.all(w >= 0, axis=-1) & (jnp.abs(jnp.sum(w, axis=-1) - 1.0) <= _SUM_TOLERANCE)


def normalise_weights(*ws: ArrayLike) -> list[jax.Array]:
    """float64, broadcast, renormalised to sum exactly 1 (call inside the scope, after checks)."""
    out = jnp.broadcast_arrays(*(jnp.asarray(w, jnp.float64) for w in ws))
    return [
        w
        / jnp.where(jnp.sum(w, axis=-1, keepdims=True) > 0, jnp.sum(w, axis=-1, keepdims=True), 1.0)
        for w in out
    ]


def out_of_support_mass(t: ArrayLike, s: ArrayLike) -> jax.Array:
    """π = T-mass on atoms where S has none: ``Σ_{i: sᵢ = 0} tᵢ``. float64, leading axes broadcast."""
    check_weight_vectors("t", t)
    check_weight_vectors("s", s)
    with float64_scope():
        t, s = normalise_weights(t, s)
        return jnp.sum(jnp.where(s > 0, 0.0, t), axis=-1)


def restrict_to_support(t: ArrayLike, s: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """``(T_in, π)``: T conditioned on supp S (renormalised; zeros if π = 1) and its lost mass π."""
    check_weight_vectors("t", t)
    check_weight_vectors("s", s)
    with float64_scope():
        t, s = normalise_weights(t, s)
        inside = jnp.where(s > 0, t, 0.0)
        mass = jnp.sum(inside, axis=-1, keepdims=True)
        t_in = jnp.where(mass > 0, inside / jnp.where(mass > 0, mass, 1.0), 0.0)
        return t_in, 1.0 - mass[..., 0]


def discrete_kl(t: ArrayLike, s: ArrayLike) -> jax.Array:
    """``KL(T‖S) = Σᵢ tᵢ ln(tᵢ/sᵢ)`` (0 ln 0 = 0; +inf if T puts mass where S has none). float64."""
    check_weight_vectors("t", t)
    check_weight_vectors("s", s)
    with float64_scope():
        t, s = jnp.broadcast_arrays(*(jnp.asarray(x, jnp.float64) for x in (t, s)))
        ok = _weights_ok(t) & _weights_ok(s)
        t, s = normalise_weights(t, s)
        s_safe = jnp.where(s > 0, s, 1.0)
        t_safe = jnp.where(t > 0, t, 1.0)
        terms = jnp.where(
            t > 0, jnp.where(s > 0, t * (jnp.log(t_safe) - jnp.log(s_safe)), jnp.inf), 0.0
        )
        return jnp.where(ok, jnp.maximum(jnp.sum(terms, axis=-1), 0.0), jnp.nan)


def _log_moment(t: jax.Array, s: jax.Array, order: jax.Array) -> jax.Array:
    """``ln Σ_{sᵢ>0} tᵢ^q sᵢ^(1−q)`` (+inf if T ⊄ supp S), computed with logsumexp."""
    s_safe = jnp.where(s > 0, s, 1.0)
    t_safe = jnp.where(t > 0, t, 1.0)
    q = order[..., None]
    log_terms = jnp.where(
        (t > 0) & (s > 0), q * jnp.log(t_safe) + (1.0 - q) * jnp.log(s_safe), -jnp.inf
    )
    escaped = jnp.any((t > 0) & (s <= 0), axis=-1)
    top = jnp.max(log_terms, axis=-1, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    value = top[..., 0] + jnp.log(jnp.sum(jnp.exp(log_terms - top), axis=-1))
    return jnp.where(escaped, jnp.inf, value)


def _check_pair(t: ArrayLike, s: ArrayLike, order: ArrayLike) -> None:
    check_weight_vectors("t", t)
    check_weight_vectors("s", s)
    check_renyi_order(order)


def _pair_and_order(
    t: ArrayLike, s: ArrayLike, order: ArrayLike
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Broadcast float64 weights, a safe order q (> 1; 2 where invalid) and the validity mask."""
    t, s = jnp.broadcast_arrays(*(jnp.asarray(x, jnp.float64) for x in (t, s)))
    q = jnp.asarray(order, jnp.float64)
    ok = _weights_ok(t) & _weights_ok(s) & (q > 1)
    t, s = normalise_weights(t, s)
    return t, s, jnp.where(q > 1, q, 2.0), ok


def renyi_divergence(t: ArrayLike, s: ArrayLike, order: ArrayLike) -> jax.Array:
    """Rényi divergence ``D_q(T‖S) = ln(Σᵢ tᵢ^q sᵢ^(1−q)) / (q − 1)``, order q > 1; +inf if T ⊄ supp S."""
    _check_pair(t, s, order)
    with float64_scope():
        t, s, q, ok = _pair_and_order(t, s, order)
        value = jnp.maximum(_log_moment(t, s, q) / (q - 1.0), 0.0)
        return jnp.where(ok, value, jnp.nan)


def renyi_beta(t: ArrayLike, s: ArrayLike, order: ArrayLike) -> jax.Array:
    """Germain et al.'s ``β_q(T‖S) = (E_S[(T/S)^q])^(1/q) = (Σ_{sᵢ>0} sᵢ (tᵢ/sᵢ)^q)^(1/q)``.

    T is *not* renormalised on supp S (its outside mass is the separate η term); when T ≪ S,
    ``β_q = exp(((q−1)/q) D_q(T‖S))``.
    """
    _check_pair(t, s, order)
    with float64_scope():
        t, s, q, ok = _pair_and_order(t, s, order)
        inside = jnp.where(s > 0, t, 0.0)
        return jnp.where(ok, jnp.exp(_log_moment(inside, s, q) / q), jnp.nan)
