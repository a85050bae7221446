"""Chernoff–kl bounds on a mean of independent [0, 1] terms: test-set bounds, sample convergence.

Each is ``kl⁻¹(mean, ln(·/δ)/count)`` or its lower counterpart, with the conservative inverses of
:mod:`difftrade.theory.kl_inverse`: the test-set bound for a fixed predictor on fresh examples,
and the corrections that turn a Monte-Carlo estimate of the Gibbs risk L̂(Q) into a bound (the
same weight draws reused on the whole set, Langford–Caruana; or a fresh draw per example).
Float64 scope and input checks: see :mod:`difftrade.theory.float64`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from difftrade.theory.float64 import (
    ArrayLike,
    as_float64,
    check_delta,
    check_n,
    check_risk,
    float64_scope,
)
from difftrade.theory.kl_inverse import kl_inv, kl_inv_lower


# ---- Monte-Carlo and test-set corrections ----------------------------------------------------
def sample_convergence_bound(
    mc_risk: ArrayLike, num_draws: ArrayLike, delta_prime: ArrayLike
) -> jax.Array:
    """Sample convergence (Langford–Caruana): ``L̂(Q) ≤ kl⁻¹(L̂_m, ln(2/δ′)/m)`` w.p. ≥ 1−δ′.

    ``mc_risk`` = L̂_m, the mean over ``m = num_draws`` weight samples from Q (each evaluated on
    the whole bound set) of the empirical risk on that set. Turns the estimate into a bound.
    """
    return _sample_convergence(kl_inv, mc_risk, num_draws, delta_prime)


def sample_convergence_lower(
    mc_risk: ArrayLike, num_draws: ArrayLike, delta_prime: ArrayLike
) -> jax.Array:
    """The lower side of :func:`sample_convergence_bound`: ``L̂(Q) ≥ kl⁻¹_lower(L̂_m, ln(2/δ′)/m)``
    w.p. ≥ 1−δ′ (Langford–Caruana's ln(2/δ′) covers either tail)."""
    return _sample_convergence(kl_inv_lower, mc_risk, num_draws, delta_prime)


def _sample_convergence(
    invert, mc_risk: ArrayLike, num_draws: ArrayLike, delta_prime: ArrayLike
) -> jax.Array:
    check_risk("mc_risk", mc_risk)
    check_n("num_draws", num_draws)
    check_delta("delta_prime", delta_prime)
    with float64_scope():
        mc_risk, m, dp = as_float64(mc_risk, num_draws, delta_prime)
        ok = (m >= 1) & (dp > 0) & (dp < 1)
        c = jnp.where(ok, jnp.log(2.0 / jnp.where(ok, dp, 0.5)) / jnp.where(ok, m, 1.0), jnp.nan)
        return invert(mc_risk, c)


def per_example_convergence_bound(
    mc_risk: ArrayLike, num_terms: ArrayLike, delta_prime: ArrayLike
) -> jax.Array:
    """Sample convergence with a fresh weight draw per example: ``L̂(Q) ≤ kl⁻¹(X̄, ln(1/δ′)/N)``.

    Draw ``w_ij ~ Q`` independently for every bound-set example ``z_i`` (r draws each, N = r·n
    terms) and let ``X_ij = ℓ(w_ij, z_i) ∈ [0, 1]``. Given the bound set, the N terms are
    independent (not identically distributed) with average mean L̂(Q), and Hoeffding's (1963)
    Theorem 1 bounds such averages by the same Chernoff–kl tail as i.i.d. ones. So the slack is
    ln(1/δ′)/(r·n), where :func:`sample_convergence_bound`, which reuses each draw on the whole
    set, pays ln(2/δ′)/m.
    """
    return _test_set(
        kl_inv, mc_risk, num_terms, delta_prime, names=("mc_risk", "num_terms", "delta_prime")
    )


def per_example_convergence_lower(
    mc_risk: ArrayLike, num_terms: ArrayLike, delta_prime: ArrayLike
) -> jax.Array:
    """The lower side of :func:`per_example_convergence_bound`: ``L̂(Q) ≥ kl⁻¹_lower(X̄, ln(1/δ′)/N)``
    w.p. ≥ 1−δ′ (the other tail of the same Chernoff–Hoeffding bound, a separate δ′)."""
    return _test_set(
        kl_inv_lower, mc_risk, num_terms, delta_prime, names=("mc_risk", "num_terms", "delta_prime")
    )


def kl_test_set_bound(emp_risk: ArrayLike, n: ArrayLike, delta: ArrayLike) -> jax.Array:
    """Test-set (Chernoff–kl) bound for any [0, 1] loss: ``L ≤ kl⁻¹(L̂, ln(1/δ)/n)`` w.p. ≥ 1−δ.

    ``emp_risk`` is the mean loss of a *fixed* predictor on ``n`` fresh i.i.d. examples.
    """
    return _test_set(kl_inv, emp_risk, n, delta)


def kl_test_set_lower(emp_risk: ArrayLike, n: ArrayLike, delta: ArrayLike) -> jax.Array:
    """Lower test-set bound for any [0, 1] loss: ``L ≥ kl⁻¹_lower(L̂, ln(1/δ)/n)`` w.p. ≥ 1−δ."""
    return _test_set(kl_inv_lower, emp_risk, n, delta)


def _test_set(
    invert,
    emp_risk: ArrayLike,
    n: ArrayLike,
    delta: ArrayLike,
    names: tuple[str, str, str] = ("emp_risk", "n", "delta"),
) -> jax.Array:
    """``invert(L̂, ln(1/δ)/n)`` with the checks the test-set bounds share (errors name ``names``)."""
    check_risk(names[0], emp_risk)
    check_n(names[1], n)
    check_delta(names[2], delta)
    with float64_scope():
        emp_risk, n, delta = as_float64(emp_risk, n, delta)
        ok = (n >= 1) & (delta > 0) & (delta < 1)
        c = jnp.where(ok, -jnp.log(jnp.where(ok, delta, 0.5)) / jnp.where(ok, n, 1.0), jnp.nan)
        return invert(emp_risk, c)
