"""Germain et al.'s disagreement-based domain adaptation bound ("PAC-Bayes and domain adaptation").

:func:`domain_adaptation_bound`: ``R_T(G_Q) ≤ ½ d_T(Q) + β_q(T‖S)·e_S(Q)^(1−1/q) + η`` for the
Gibbs predictor, with the expected disagreement on unlabelled target inputs and the joint error
on labelled source examples each estimated by Monte-Carlo pairs of posterior draws and corrected
by kl⁻¹ at its own δ (sample convergence over the pairs, then a test-set bound over the inputs).
β_q and the out-of-support mass η come from :mod:`difftrade.theory.discrete_divergences`; as with
:mod:`difftrade.theory.change_of_measure`, the bound holds for every order q at once, so
minimising over q is free.

Float64 inside :func:`~difftrade.theory.float64.float64_scope`, jittable and vmappable;
host-known bad inputs raise ValueError, traced ones give NaN.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from difftrade.theory import chernoff
from difftrade.theory.discrete_divergences import check_renyi_order, out_of_support_mass, renyi_beta
from difftrade.theory.float64 import (
    ArrayLike,
    check_range,
    float64_scope,
    halve_delta,
)


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
    check_renyi_order(order)
    quarter = halve_delta(halve_delta(delta))
    d_pairs = chernoff.sample_convergence_bound(target_disagreement, num_pairs, quarter)
    d_upper = chernoff.kl_test_set_bound(d_pairs, target_n, quarter)
    e_pairs = chernoff.sample_convergence_bound(source_joint_error, num_pairs, quarter)
    e_upper = chernoff.kl_test_set_bound(e_pairs, source_n, quarter)
    beta = renyi_beta(t, s, order)
    eta = out_of_support_mass(t, s)
    with float64_scope():
        q = jnp.asarray(order, jnp.float64)
        value = 0.5 * d_upper + beta * jnp.power(e_upper, 1.0 - 1.0 / q) + eta
        return DomainAdaptationBound(jnp.minimum(value, 1.0), d_upper, e_upper, beta, eta)
