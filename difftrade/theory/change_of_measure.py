"""Change of measure: the target risk R_T from the source risk R_S, with T and S known exactly.

For any [0, 1] loss and distributions known exactly (synthetic tasks), given as weight vectors
over atoms (:mod:`difftrade.theory.discrete_divergences`):

* :func:`lp_shift_bound`, the exact worst case ``sup{E_T ℓ : E_S ℓ = R_S}`` (a fractional
  knapsack over the atoms, a linear program; every bound below is at least this one), and its
  mirror :func:`lp_shift_lower`, the exact best case (a lower bound on R_T);
* :func:`kl_shift_bound` ``R_T ≤ (1−π)·sup{q : kl(q‖R_S) ≤ KL(T_in‖S)} + π`` (data processing)
  and :func:`renyi_shift_bound` ``R_T ≤ (1−π)·exp(((q−1)/q) D_q(T_in‖S))·R_S^(1−1/q) + π``
  (Hölder), where π = T-mass outside the support of S and T_in = T restricted to supp S,
  renormalised. Note the order in the kl bound: data processing gives kl(R_T‖R_S), so R_T is
  the *first* argument (:func:`~difftrade.theory.kl_inverse.kl_inv_reverse`); inverting kl(R_S‖·)
  instead (:func:`~difftrade.theory.kl_inverse.kl_inv`) is not a bound: t = (0.99, 0.01),
  s = (0.5, 0.5), errors on the first atom give R_S = 0.5, R_T = 0.99, and
  kl⁻¹(0.5, KL(T‖S)) = 0.924;
* :func:`importance_weights`, for a *certificate* of R_T from examples drawn from S: when
  T = Σ t_l D_l and S = Σ s_l D_l mix the same components D_l (difficulty levels, nested or
  not), weighting an example drawn from component l by t_l/s_l makes its S-expectation the
  covered part of R_T. Unlike the bounds above it sees which components the errors fall on.

**Where the bounds are vacuous by construction.** Training on one exact-size level d (a point
mass) against a target spread over levels leaves π = T-mass of all other levels uncertified:
the bound is ``T_d·R_S + (1 − T_d)`` — nothing is said about the other levels, and it is
exactly 1 when T puts no mass on d. With nested levels
(:mod:`difftrade.theory.nested_levels`), S_d covers every level ≤ d, so π(d) = T-mass of the
shells above d: precisely the part no bound can certify.

**Confidence.** Given exact distributions, these bounds are deterministic: pass an *upper
confidence bound* for R_S (e.g. :func:`~difftrade.theory.clopper_pearson.clopper_pearson_upper`
at δ) and the result holds with the same probability; pass a measured risk and the result is an
estimate. Because they hold for every order q once their probabilistic inputs hold, minimising
over q is free.

All functions but the host-numpy :func:`importance_weights` compute in float64 inside
:func:`~difftrade.theory.float64.float64_scope`, are jittable and vmappable; host-known bad
inputs raise ValueError, traced ones give NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from difftrade.theory import kl_inverse
from difftrade.theory.discrete_divergences import (
    check_renyi_order,
    check_weight_vectors,
    discrete_kl,
    normalise_weights,
    renyi_divergence,
    restrict_to_support,
)
from difftrade.theory.float64 import ArrayLike, check_range, float64_scope


def _check_risk_input(field: str, r: ArrayLike) -> None:
    check_range(field, r, 0.0, 1.0)


def lp_shift_bound(source_risk: ArrayLike, t: ArrayLike, s: ArrayLike) -> jax.Array:
    """The exact worst case ``sup{E_T ℓ : ℓ ∈ [0, 1], E_S ℓ ≤ R_S}``: the tightest change of measure.

    T/S is a constant ρ_a = t_a/s_a on atom a, so a loss enters only through the S-mass of its
    errors on each atom, e_a ∈ [0, s_a] with Σ e_a ≤ R_S, and ``R_T = Σ ρ_a e_a + (mass where
    s_a = 0) ≤ Σ ρ_a e_a + π``. Maximising is a fractional knapsack: fill the atoms in
    decreasing ρ. The maximum is attained (by ℓ = e_a/s_a on atom a, 1 off supp S), so every
    valid bound that uses only (R_S, t, s), such as :func:`kl_shift_bound` and
    :func:`renyi_shift_bound`, is at least this one. Non-decreasing in R_S: pass an upper
    confidence bound and it stays a bound at the same confidence.

    Args: ``source_risk`` R_S in [0, 1], ``t``, ``s`` weight vectors over atoms ``[..., A]``
    (leading axes broadcast with ``source_risk``'s). Returns float64 ``[...]``, with an absolute
    margin of 1e-12 for rounding (each term ρ_a·e_a ≤ t_a ≤ 1).
    """
    return _lp_shift(source_risk, t, s, worst=True)


def lp_shift_lower(source_risk: ArrayLike, t: ArrayLike, s: ArrayLike) -> jax.Array:
    """The exact best case ``inf{E_T ℓ : ℓ ∈ [0, 1], E_S ℓ ≥ R_S}``: a lower bound on R_T.

    The mirror of :func:`lp_shift_bound`: the S-mass of errors R_S is placed on the atoms T
    weighs least (increasing ρ_a = t_a/s_a) and nothing on atoms S does not cover. Non-decreasing
    in R_S: pass a *lower* confidence bound on R_S and it is a lower bound on R_T at the same
    confidence. Same arguments; float64 with the rounding margin subtracted (clipped at 0).
    """
    return _lp_shift(source_risk, t, s, worst=False)


def _lp_shift(source_risk: ArrayLike, t: ArrayLike, s: ArrayLike, worst: bool) -> jax.Array:
    """Fractional knapsack over atoms: fill the S-mass R_S in decreasing ρ (``worst``) or increasing ρ."""
    _check_risk_input("source_risk", source_risk)
    check_weight_vectors("t", t)
    check_weight_vectors("s", s)
    with float64_scope():
        t, s = normalise_weights(t, s)
        r = jnp.asarray(source_risk, jnp.float64)
        covered = s > 0
        ratio = t / jnp.where(covered, s, 1.0)
        key = jnp.where(covered, -ratio if worst else ratio, jnp.inf)  # uncovered atoms sort last
        order = jnp.argsort(key, axis=-1)
        s_by, ratio_by = (jnp.take_along_axis(x, order, axis=-1) for x in (s, ratio))
        before = jnp.cumsum(s_by, axis=-1) - s_by  # S-mass of the atoms filled first
        fill = jnp.clip(r[..., None] - before, 0.0, s_by)  # e_a
        value = jnp.sum(jnp.where(s_by > 0, ratio_by * fill, 0.0), axis=-1)
        ok = (r >= 0) & (r <= 1)
        if worst:  # ℓ = 1 where S never looks
            value = value + jnp.sum(jnp.where(covered, 0.0, t), axis=-1)
            return jnp.where(ok, jnp.minimum(value + 1e-12, 1.0), jnp.nan)
        return jnp.where(ok, jnp.maximum(value - 1e-12, 0.0), jnp.nan)


def importance_weights(t: ArrayLike, s: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loss weights that turn an S-sample into a certificate of the target risk. Host numpy.

    T = Σ_l t_l D_l and S = Σ_l s_l D_l mix the same components D_l (for difftrade: the
    difficulty levels an example is *drawn at*; nested levels are fine, the components need not
    be disjoint). With ρ_l = t_l/s_l, B = max ρ_l over the components S covers and
    weight_l = ρ_l/B ∈ [0, 1], any loss ℓ ∈ [0, 1] satisfies, for (L, Z) drawn from S,

        E_S[weight_L · ℓ(Z)] = Σ_{s_l > 0} t_l R_l / B,   so   R_T ≤ B · E_S[weight_L · ℓ(Z)] + π,

    π = Σ_{s_l = 0} t_l, with equality when ℓ ≡ 1 on the uncovered components. So any bound on
    the mean of the [0, 1] loss weight·ℓ (a PAC-Bayes certificate, a test-set bound) times B,
    plus π, bounds R_T at the same confidence. The price is the factor B on that bound's slack.

    Args: ``t`` ``[L]`` and ``s`` ``[..., L]`` weight vectors over components.
    Returns ``(weight [..., L], B [...], π [...])``, float64; weight is 0 where s_l = 0 (never
    drawn) and B = 1 where S covers no target mass (then every weight is 0 and π = 1).
    """
    check_weight_vectors("t", t)
    check_weight_vectors("s", s)
    s, t = np.asarray(s, np.float64), np.broadcast_to(np.asarray(t, np.float64), np.shape(s))
    covered = s > 0
    ratio = np.where(covered, t / np.where(covered, s, 1.0), 0.0)
    scale = ratio.max(axis=-1)
    scale = np.where(scale > 0, scale, 1.0)
    return ratio / scale[..., None], scale, np.where(covered, 0.0, t).sum(axis=-1)


def kl_shift_bound(source_risk: ArrayLike, t: ArrayLike, s: ArrayLike) -> jax.Array:
    """``R_T ≤ (1−π)·sup{q : kl(q‖R_S) ≤ KL(T_in‖S)} + π`` for any [0, 1] loss (data processing).

    ``kl(R_{T_in}‖R_S) ≤ KL(T_in‖S)`` (the loss is a channel), and the π mass outside supp S
    contributes at most π. R_T is the first argument of kl, so the inverse is
    :func:`~difftrade.theory.kl_inverse.kl_inv_reverse`; R_S = 0 gives R_{T_in} = 0. Never below
    :func:`lp_shift_bound`, the exact worst case. Vacuous by construction on the uncovered mass:
    training on one disjoint level d gives ``T_d·R_S + (1 − T_d)``, and exactly 1 if T puts no
    mass on d.

    Args: ``source_risk`` R_S in [0, 1] (an upper confidence bound for a certified result),
    ``t``, ``s`` weight vectors over atoms ``[..., A]``. Returns float64 ``[...]``.
    """
    _check_risk_input("source_risk", source_risk)
    t_in, pi = restrict_to_support(t, s)
    with float64_scope():
        s64 = jnp.asarray(s, jnp.float64)
        r = jnp.asarray(source_risk, jnp.float64)
        some_mass = pi < 1.0
        t_safe = jnp.where(some_mass[..., None], t_in, s64)  # any valid vector where π = 1
        divergence = discrete_kl(t_safe, jnp.broadcast_to(s64, t_safe.shape))
        ok = (r >= 0) & (r <= 1) & jnp.isfinite(divergence)
        inner = kl_inverse.kl_inv_reverse(jnp.where(ok, r, 0.0), jnp.where(ok, divergence, 0.0))
        value = jnp.where(some_mass, (1.0 - pi) * inner + pi, 1.0)
        return jnp.where(ok, jnp.minimum(value, 1.0), jnp.nan)


def renyi_shift_bound(
    source_risk: ArrayLike, t: ArrayLike, s: ArrayLike, order: ArrayLike
) -> jax.Array:
    """Hölder bound ``R_T ≤ (1−π)·min(1, exp(((q−1)/q) D_q(T_in‖S))·R_S^(1−1/q)) + π``, q > 1.

    ``R_{T_in} = E_S[(T_in/S)·ℓ] ≤ ‖T_in/S‖_{L_q(S)}·‖ℓ‖_{L_{q'}(S)}`` and ``ℓ^{q'} ≤ ℓ`` for
    ℓ ∈ [0, 1]. Same vacuity on the uncovered mass π as :func:`kl_shift_bound`.
    """
    _check_risk_input("source_risk", source_risk)
    check_renyi_order(order)
    t_in, pi = restrict_to_support(t, s)
    with float64_scope():
        s64 = jnp.asarray(s, jnp.float64)
        r = jnp.asarray(source_risk, jnp.float64)
        q = jnp.asarray(order, jnp.float64)
        some_mass = pi < 1.0
        t_safe = jnp.where(some_mass[..., None], t_in, s64)
        divergence = renyi_divergence(
            t_safe, jnp.broadcast_to(s64, t_safe.shape), jnp.where(q > 1, q, 2.0)
        )
        ok = (r >= 0) & (r <= 1) & (q > 1) & jnp.isfinite(divergence)
        factor = jnp.exp((q - 1.0) / q * divergence)
        inner = jnp.minimum(1.0, factor * jnp.power(r, 1.0 - 1.0 / q))
        value = jnp.where(some_mass, (1.0 - pi) * inner + pi, 1.0)
        return jnp.where(ok, jnp.minimum(value, 1.0), jnp.nan)
