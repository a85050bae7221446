"""Extrapolation (domain-shift) bounds: from the training distribution S to the target T.

Four kinds:

(a) :func:`gap_band` — always available, no theory: a certified band around the measured
    extrapolation gap ``R_T − R_S`` from held-out estimates of both risks (binomial tail
    inversion on each side of each risk, δ split over the four one-sided terms).
(b) Change of measure for any [0, 1] loss, with the distributions known exactly (synthetic
    tasks): :func:`lp_shift_bound`, the exact worst case ``sup{E_T ℓ : E_S ℓ = R_S}`` (a
    fractional knapsack over the atoms; every bound below is at least this one);
    :func:`kl_shift_bound` ``R_T ≤ (1−π)·sup{q : kl(q‖R_S) ≤ KL(T_in‖S)} + π`` (data processing)
    and :func:`renyi_shift_bound` ``R_T ≤ (1−π)·exp(((q−1)/q) D_q(T_in‖S))·R_S^(1−1/q) + π``
    (Hölder), where π = T-mass outside the support of S and T_in = T restricted to supp S,
    renormalised. Note the order in the kl bound: data processing gives kl(R_T‖R_S), so R_T is
    the *first* argument (:func:`~difftrade.theory.bounds.kl_inv_reverse`); inverting kl(R_S‖·)
    instead (:func:`~difftrade.theory.bounds.kl_inv`) is not a
    bound: t = (0.99, 0.01), s = (0.5, 0.5), errors on the first atom give R_S = 0.5,
    R_T = 0.99, and kl⁻¹(0.5, KL(T‖S)) = 0.924.
(c) :func:`domain_adaptation_bound` — Germain et al.'s disagreement bound
    ``R_T(G_Q) ≤ ½ d_T(Q) + β_q(T‖S)·e_S(Q)^(1−1/q) + η`` with each Monte-Carlo term corrected
    by kl⁻¹ at its own δ.
(d) :func:`importance_weights` — for a *certificate* of R_T from examples drawn from S: when
    T = Σ t_l D_l and S = Σ s_l D_l mix the same components D_l (difficulty levels, nested or
    not), weighting an example drawn from component l by t_l/s_l makes its S-expectation the
    covered part of R_T. Unlike (b) it sees which components the errors fall on.

**Distributions.** ``t`` and ``s`` are weight vectors over the *atoms* of a partition on which
the density ratio T/S is constant, last axis = atoms, leading axes broadcast (e.g. one ``s``
row per training difficulty). For exact-size (disjoint) difficulty levels with the same
within-level distribution under T and S, the atoms are the levels: by the chain rule the
problem-level divergences equal the level-weight divergences. For **nested** levels (level d =
all problems of size ≤ d, uniform within the level) the level weights are *not* the atoms: use
:func:`nested_shell_weights` to turn them into weights over shells (problems whose smallest
containing level is j), on which T/S is exactly constant.

**Where the bounds are vacuous by construction.** Training on one exact-size level d (a point
mass) against a target spread over levels leaves π = T-mass of all other levels uncertified:
the bound is ``T_d·R_S + (1 − T_d)`` — nothing is said about the other levels, and it is
exactly 1 when T puts no mass on d. With nested levels, S_d covers every level ≤ d, so
π(d) = T-mass of the shells above d: precisely the part no bound can certify.

**Confidence.** Given exact distributions, (b) is deterministic: pass an *upper confidence
bound* for R_S (e.g. :func:`~difftrade.theory.bounds.clopper_pearson_upper` at δ) and the
result holds with the same probability; pass a measured risk and the result is an estimate.
Because (b) and (c) hold for every order q once their probabilistic inputs hold, minimising
over q is free.

All functions compute in float64 inside :func:`~difftrade.theory.bounds.float64_scope`, are
jittable and vmappable; host-known bad inputs raise ValueError, traced ones give NaN.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from difftrade.theory import bounds
from difftrade.theory.bounds import ArrayLike, check_range, float64_scope

# ---- validation --------------------------------------------------------------------------------


def _check_weights(field: str, w: ArrayLike) -> None:
    v = bounds._host_value(w)
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


def _check_order(order: ArrayLike) -> None:
    check_range("order", order, 1.0, math.inf, lo_open=True)


_SUM_TOLERANCE = 1e-6  # as difftrade.data.validate_weights; vectors are renormalised exactly


def _weights_ok(w: jax.Array) -> jax.Array:
    return jnp.all(w >= 0, axis=-1) & (jnp.abs(jnp.sum(w, axis=-1) - 1.0) <= _SUM_TOLERANCE)


def _as_weights(*ws: ArrayLike) -> list[jax.Array]:
    """float64, broadcast, renormalised to sum exactly 1 (call inside the scope, after checks)."""
    out = jnp.broadcast_arrays(*(jnp.asarray(w, jnp.float64) for w in ws))
    return [
        w
        / jnp.where(jnp.sum(w, axis=-1, keepdims=True) > 0, jnp.sum(w, axis=-1, keepdims=True), 1.0)
        for w in out
    ]


# ---- divergences between discrete distributions ------------------------------------------------


def out_of_support_mass(t: ArrayLike, s: ArrayLike) -> jax.Array:
    """π = T-mass on atoms where S has none: ``Σ_{i: sᵢ = 0} tᵢ``. float64, leading axes broadcast."""
    _check_weights("t", t)
    _check_weights("s", s)
    with float64_scope():
        t, s = _as_weights(t, s)
        return jnp.sum(jnp.where(s > 0, 0.0, t), axis=-1)


def restrict_to_support(t: ArrayLike, s: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """``(T_in, π)``: T conditioned on supp S (renormalised; zeros if π = 1) and its lost mass π."""
    _check_weights("t", t)
    _check_weights("s", s)
    with float64_scope():
        t, s = _as_weights(t, s)
        inside = jnp.where(s > 0, t, 0.0)
        mass = jnp.sum(inside, axis=-1, keepdims=True)
        t_in = jnp.where(mass > 0, inside / jnp.where(mass > 0, mass, 1.0), 0.0)
        return t_in, 1.0 - mass[..., 0]


def discrete_kl(t: ArrayLike, s: ArrayLike) -> jax.Array:
    """``KL(T‖S) = Σᵢ tᵢ ln(tᵢ/sᵢ)`` (0 ln 0 = 0; +inf if T puts mass where S has none). float64."""
    _check_weights("t", t)
    _check_weights("s", s)
    with float64_scope():
        t, s = jnp.broadcast_arrays(*(jnp.asarray(x, jnp.float64) for x in (t, s)))
        ok = _weights_ok(t) & _weights_ok(s)
        t, s = _as_weights(t, s)
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
    _check_weights("t", t)
    _check_weights("s", s)
    _check_order(order)


def _pair_and_order(t: ArrayLike, s: ArrayLike, order: ArrayLike) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Broadcast float64 weights, a safe order q (> 1; 2 where invalid) and the validity mask."""
    t, s = jnp.broadcast_arrays(*(jnp.asarray(x, jnp.float64) for x in (t, s)))
    q = jnp.asarray(order, jnp.float64)
    ok = _weights_ok(t) & _weights_ok(s) & (q > 1)
    t, s = _as_weights(t, s)
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


# ---- nested difficulty levels ------------------------------------------------------------------


def _check_sizes(level_sizes: ArrayLike) -> None:
    v = bounds._host_value(level_sizes)
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
    _check_weights("level_weights", level_weights)
    _check_sizes(level_sizes)
    with float64_scope():
        (w,) = _as_weights(level_weights)
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
    _check_weights("level_weights", level_weights)
    _check_sizes(level_sizes)
    with float64_scope():
        (w,) = _as_weights(level_weights)
        sizes = jnp.asarray(level_sizes, jnp.float64)
        upper = jnp.triu(jnp.ones((sizes.shape[0],) * 2, jnp.float64))
        return jnp.einsum("...d,jd->...j", w, upper / sizes[None, :])


# ---- (b) change of measure ---------------------------------------------------------------------


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
    _check_weights("t", t)
    _check_weights("s", s)
    with float64_scope():
        t, s = _as_weights(t, s)
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
    _check_weights("t", t)
    _check_weights("s", s)
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
    :func:`~difftrade.theory.bounds.kl_inv_reverse`; R_S = 0 gives R_{T_in} = 0. Never below
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
        inner = bounds.kl_inv_reverse(jnp.where(ok, r, 0.0), jnp.where(ok, divergence, 0.0))
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
    _check_order(order)
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


# ---- (a) certified band around the measured gap ------------------------------------------------


class GapBand(NamedTuple):
    """Measured extrapolation gap ``R̂_T − R̂_S`` (an ESTIMATE) and a band holding w.p. ≥ 1 − δ."""

    measured_gap: jax.Array
    lower: jax.Array
    upper: jax.Array
    target_lower: jax.Array
    target_upper: jax.Array
    source_lower: jax.Array
    source_upper: jax.Array


def gap_band(
    target_errors: ArrayLike,
    target_n: ArrayLike,
    source_errors: ArrayLike,
    source_n: ArrayLike,
    delta: ArrayLike,
    *,
    binary: bool = True,
) -> GapBand:
    """Certified band for the extrapolation gap ``R_T − R_S`` of a *fixed* predictor.

    Held-out estimates of both risks (fresh examples from T and from S, independent of the
    predictor): with a 0-1 loss (``binary=True``) ``*_errors`` are error counts and each risk gets
    a Clopper–Pearson lower and upper end; otherwise ``*_errors`` are loss sums of a [0, 1] loss
    and each end is the kl/Chernoff test-set bound. The four one-sided statements get δ/4 each,
    so ``lower ≤ R_T − R_S ≤ upper`` with probability ≥ 1 − δ per band. For simultaneous bands
    over B entries (e.g. every difficulty) pass δ/B.
    Shapes broadcast; float64.
    """
    check_range("delta", delta, 0.0, 1.0, lo_open=True, hi_open=True)
    quarter = bounds._f64_host_or_traced_half(bounds._f64_host_or_traced_half(delta))
    if binary:
        t_lo, t_hi = (
            bounds.clopper_pearson_lower(target_errors, target_n, quarter),
            bounds.clopper_pearson_upper(target_errors, target_n, quarter),
        )
        s_lo, s_hi = (
            bounds.clopper_pearson_lower(source_errors, source_n, quarter),
            bounds.clopper_pearson_upper(source_errors, source_n, quarter),
        )
    else:
        for field, errors, n in (
            ("target_errors", target_errors, target_n),
            ("source_errors", source_errors, source_n),
        ):
            ev, nv = bounds._host_value(errors), bounds._host_value(n)
            if ev is not None and nv is not None and np.any((ev < 0) | (ev > nv)):
                raise ValueError(
                    f"{field}={ev.tolist()!r} is out of range; allowed: loss sums in [0, n]"
                )
        with float64_scope():
            rt = jnp.asarray(target_errors, jnp.float64) / jnp.asarray(target_n, jnp.float64)
            rs = jnp.asarray(source_errors, jnp.float64) / jnp.asarray(source_n, jnp.float64)
        t_lo, t_hi = (
            bounds.kl_test_set_lower(rt, target_n, quarter),
            bounds.kl_test_set_bound(rt, target_n, quarter),
        )
        s_lo, s_hi = (
            bounds.kl_test_set_lower(rs, source_n, quarter),
            bounds.kl_test_set_bound(rs, source_n, quarter),
        )
    with float64_scope():
        rt = jnp.asarray(target_errors, jnp.float64) / jnp.asarray(target_n, jnp.float64)
        rs = jnp.asarray(source_errors, jnp.float64) / jnp.asarray(source_n, jnp.float64)
        return GapBand(rt - rs, t_lo - s_hi, t_hi - s_lo, t_lo, t_hi, s_lo, s_hi)


# ---- (c) disagreement-based domain adaptation --------------------------------------------------


class DomainAdaptationBound(NamedTuple):
    """Germain et al.'s bound and its certified ingredients (float64)."""

    bound: jax.Array  # R_T(G_Q) ≤ ½ d̄_T + β_q ē_S^(1−1/q) + η, clipped to 1
    disagreement_upper: jax.Array  # d̄_T ≥ d_T(Q)
    joint_error_upper: jax.Array  # ē_S ≥ e_S(Q)
    beta: jax.Array  # β_q(T‖S)
    eta: jax.Array  # T-mass outside supp S (upper bound on η_{T\S})


def domain_adaptation_bound(
    target_disagreement: ArrayLike,
    target_n: ArrayLike,
    source_joint_error: ArrayLike,
    source_n: ArrayLike,
    num_pairs: ArrayLike,
    t: ArrayLike,
    s: ArrayLike,
    order: ArrayLike,
    delta: ArrayLike,
) -> DomainAdaptationBound:
    """Disagreement-based domain adaptation bound (Germain et al., "PAC-Bayes and domain adaptation").

        R_T(G_Q) ≤ ½ d_T(Q) + β_q(T‖S)·e_S(Q)^(1−1/q) + η_{T\\S}

    ``d_T(Q) = E_{x~T} E_{h,h'~Q²} 1[h(x) ≠ h'(x)]`` (expected disagreement, needs only unlabelled
    target inputs), ``e_S(Q) = E_{(x,y)~S} E_{h,h'~Q²} ℓ(h)ℓ(h')`` (joint error),
    β_q = (E_S[(T/S)^q])^(1/q), η ≤ π = T-mass outside supp S (vacuous there, as in (b)).

    Inputs are Monte-Carlo estimates: ``num_pairs`` = m independent pairs (h_j, h'_j) ~ Q², each
    evaluated on ``target_n`` unlabelled target inputs (mean disagreement ``target_disagreement``)
    and on ``source_n`` labelled source examples (mean joint error ``source_joint_error``). The
    inputs/examples must be independent of Q (held out from training). Each term is corrected
    twice by kl⁻¹, each at its own δ/4: sample convergence over the pairs,
    ``kl⁻¹(·, ln(8/δ)/m)``, then the test-set bound over the inputs, ``kl⁻¹(·, ln(4/δ)/n)``.
    The result holds w.p. ≥ 1 − δ, for every order q at once (minimising over q is free).
    """
    for field, value in (
        ("target_disagreement", target_disagreement),
        ("source_joint_error", source_joint_error),
    ):
        check_range(field, value, 0.0, 1.0)
    for field, value in (("target_n", target_n), ("source_n", source_n), ("num_pairs", num_pairs)):
        check_range(field, value, 1.0, math.inf)
    check_range("delta", delta, 0.0, 1.0, lo_open=True, hi_open=True)
    _check_order(order)
    quarter = bounds._f64_host_or_traced_half(bounds._f64_host_or_traced_half(delta))
    d_pairs = bounds.sample_convergence_bound(target_disagreement, num_pairs, quarter)
    d_upper = bounds.kl_test_set_bound(d_pairs, target_n, quarter)
    e_pairs = bounds.sample_convergence_bound(source_joint_error, num_pairs, quarter)
    e_upper = bounds.kl_test_set_bound(e_pairs, source_n, quarter)
    beta = renyi_beta(t, s, order)
    eta = out_of_support_mass(t, s)
    with float64_scope():
        q = jnp.asarray(order, jnp.float64)
        value = 0.5 * d_upper + beta * jnp.power(e_upper, 1.0 - 1.0 / q) + eta
        return DomainAdaptationBound(jnp.minimum(value, 1.0), d_upper, e_upper, beta, eta)
