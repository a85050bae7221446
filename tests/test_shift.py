"""difftrade.theory's shift bounds: discrete divergences, change of measure, nested-level densities,
gap bands, Germain et al."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from difftrade.theory.change_of_measure import (
    importance_weights,
    kl_shift_bound,
    lp_shift_bound,
    lp_shift_lower,
    renyi_shift_bound,
)
from difftrade.theory.chernoff import kl_test_set_bound, sample_convergence_bound
from difftrade.theory.clopper_pearson import clopper_pearson_upper
from difftrade.theory.discrete_divergences import (
    discrete_kl,
    out_of_support_mass,
    renyi_beta,
    renyi_divergence,
    restrict_to_support,
)
from difftrade.theory.domain_adaptation import domain_adaptation_bound
from difftrade.theory.extrapolation_gap import gap_band
from difftrade.theory.kl_inverse import kl_inv_reverse
from difftrade.theory.nested_levels import nested_problem_density, nested_shell_weights

L = 5


def _dirichlet(rng: np.random.Generator, size: int, zeros: int = 0) -> np.ndarray:
    w = rng.dirichlet(np.ones(size))
    if zeros:
        w[rng.choice(size, zeros, replace=False)] = 0.0
        w /= w.sum()
    return w


seeds = st.integers(0, 2**32 - 1)


@given(seeds, st.integers(0, L - 1))
@settings(max_examples=60, deadline=None)
def test_change_of_measure_bounds_hold_on_synthetic_levels(seed, zeros):
    """Per-level risks r: R_S = s·r, R_T = t·r exactly; every bound must be ≥ R_T."""
    rng = np.random.default_rng(seed)
    t, s, r = _dirichlet(rng, L), _dirichlet(rng, L, zeros), rng.uniform(size=L)
    source, target = float(s @ r), float(t @ r)
    assert float(kl_shift_bound(source, t, s)) >= target
    assert float(lp_shift_bound(source, t, s)) >= target
    for q in [1.2, 2.0, 5.0]:
        assert float(renyi_shift_bound(source, t, s, q)) >= target
    # plugging in an upper bound on R_S keeps it a bound (monotone in R_S)
    assert float(kl_shift_bound(min(1.0, source + 0.1), t, s)) >= float(
        kl_shift_bound(source, t, s)
    )


def _worst_loss(source: float, t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """A per-atom loss in [0, 1] with S-risk ``source`` and the largest T-risk (independent of
    difftrade: scipy's LP solver over the S-mass of errors per atom, e_a ∈ [0, s_a], Σ e ≤ source)."""
    from scipy.optimize import linprog

    covered = s > 0
    rho = np.where(covered, t / np.where(covered, s, 1.0), 0.0)
    res = linprog(
        -rho,
        A_ub=[np.ones_like(s)],
        b_ub=[source],
        bounds=list(zip(np.zeros_like(s), s)),
        method="highs",
    )
    assert res.status == 0
    return np.where(covered, np.clip(res.x / np.where(covered, s, 1.0), 0.0, 1.0), 1.0)


@given(seeds, st.integers(0, L - 1), st.floats(0.0, 1.0))
@settings(max_examples=80, deadline=None)
def test_shift_bounds_hold_against_the_worst_loss(seed, zeros, source):
    """Random losses rarely make data processing tight; the worst loss (an LP) does. Every bound
    must hold against it, and lp_shift_bound must equal it (it is the exact worst case)."""
    rng = np.random.default_rng(seed)
    t, s = _dirichlet(rng, L), _dirichlet(rng, L, zeros)
    loss = _worst_loss(source, t, s)
    target = float(t @ loss)
    assert float(s @ loss) <= source + 1e-9
    lp = float(lp_shift_bound(source, t, s))
    assert lp >= target - 1e-9 and lp == pytest.approx(min(1.0, target), abs=1e-8)
    assert float(kl_shift_bound(source, t, s)) >= lp - 1e-11  # lp carries a 1e-12 margin
    for q in [1.2, 2.0, 5.0]:
        assert float(renyi_shift_bound(source, t, s, q)) >= lp - 1e-11


@given(seeds, st.integers(0, L - 1), st.floats(0.0, 1.0))
@settings(max_examples=80, deadline=None)
def test_lp_shift_lower_is_the_best_case(seed, zeros, source):
    """The lower mirror: scipy's LP (min Σ ρ_a e_a with Σ e_a ≥ R_S, e_a ∈ [0, s_a]) gives the
    smallest T-risk of any loss with S-risk ≥ R_S; lp_shift_lower equals it, stays below the
    T-risk of random per-atom losses, and below lp_shift_bound."""
    from scipy.optimize import linprog

    rng = np.random.default_rng(seed)
    t, s = _dirichlet(rng, L), _dirichlet(rng, L, zeros)
    covered = s > 0
    rho = np.where(covered, t / np.where(covered, s, 1.0), 0.0)
    # HiGHS meets Σ e_a ≥ R_S only to its feasibility tolerance (default 1e-7: at R_S = 6e-8 it
    # returned e = 0), so tighten it and allow ρ_max times what is left
    res = linprog(
        rho,
        A_ub=[-np.ones_like(s)],
        b_ub=[-source],
        bounds=list(zip(np.zeros_like(s), s)),
        method="highs",
        options={"primal_feasibility_tolerance": 1e-10},
    )
    assert res.status == 0
    lower = float(lp_shift_lower(source, t, s))
    assert lower == pytest.approx(res.fun, abs=1e-8 + 1e-9 * rho.max())
    r = rng.uniform(size=L)
    assert float(lp_shift_lower(float(s @ r), t, s)) <= float(t @ r) + 1e-12
    assert lower <= float(lp_shift_bound(source, t, s))


def test_lp_shift_lower_closed_form():
    """t = (0.5, 0.5), s = (0.9, 0.1): ρ = (5/9, 5); R_S = 0.95 puts 0.9 on atom 1 and 0.05 on atom 2."""
    t, s = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    assert float(lp_shift_lower(0.95, t, s)) == pytest.approx(0.9 * 5 / 9 + 0.05 * 5, abs=1e-11)
    assert float(lp_shift_lower(0.3, t, s)) == pytest.approx(0.3 * 5 / 9, abs=1e-11)
    # S misses atom 3: the best case puts nothing there
    assert float(
        lp_shift_lower(1.0, np.array([0.2, 0.2, 0.6]), np.array([0.5, 0.5, 0.0]))
    ) == pytest.approx(0.4, abs=1e-11)


@given(seeds, st.integers(0, L - 1))
@settings(max_examples=60, deadline=None)
def test_importance_weights_recover_the_target_risk(seed, zeros):
    """On a finite space, overlapping components D_l (like nested levels), any loss: the weighted
    S-risk times B plus π bounds R_T computed point by point, with equality when π = 0 or the
    loss is 1 on the components S misses."""
    rng = np.random.default_rng(seed)
    points = 7
    comps = np.stack(
        [_dirichlet(rng, points, zeros=int(rng.integers(0, points - 1))) for _ in range(L)]
    )  # D_l [L, X]
    t, s = _dirichlet(rng, L), _dirichlet(rng, L, zeros)
    loss = rng.uniform(size=points) * (rng.uniform(size=points) < 0.7)
    weight, scale, pi = importance_weights(t, s)
    assert np.all((weight >= 0) & (weight <= 1)) and np.isclose(weight.max(), 1.0)
    target_risk = (t @ comps) @ loss  # T(x) = Σ_l t_l D_l(x), point by point
    weighted = np.sum(s * weight * (comps @ loss))  # E_S[weight_L ℓ(Z)], (L, Z) drawn from S
    bound = scale * weighted + pi
    np.testing.assert_allclose(pi, t[s == 0].sum())
    assert bound >= target_risk - 1e-12
    if zeros == 0:
        np.testing.assert_allclose(bound, target_risk, rtol=1e-12)
    worst = np.where(
        comps[s == 0].sum(axis=0) > 0, 1.0, loss
    )  # 1 wherever an uncovered component lives
    uncovered_one = np.sum(s * weight * (comps @ worst)) * scale + pi
    assert uncovered_one >= (t @ comps) @ worst - 1e-12
    # ... and the bound is attained when the uncovered components live on their own points
    own = np.zeros((L, points + L))
    own[:, :points] = comps * (s > 0)[:, None]
    own[s == 0, points + np.flatnonzero(s == 0)] = 1.0
    loss_own = np.concatenate([loss, np.ones(L)])
    np.testing.assert_allclose(
        scale * np.sum(s * weight * (own @ loss_own)) + pi, (t @ own) @ loss_own, rtol=1e-12
    )


def test_importance_weights_closed_form():
    weight, scale, pi = importance_weights(
        np.ones(3) / 3, np.array([[0.8, 0.1, 0.1], [0.0, 0.5, 0.5], [1.0, 0, 0]])
    )
    np.testing.assert_allclose(scale, [10 / 3, 2 / 3, 1 / 3])
    np.testing.assert_allclose(weight, [[1 / 8, 1, 1], [0, 1, 1], [1, 0, 0]])
    np.testing.assert_allclose(pi, [0, 1 / 3, 2 / 3])
    _, scale0, pi0 = importance_weights(
        np.array([1.0, 0.0]), np.array([0.0, 1.0])
    )  # S covers no target mass
    assert scale0 == 1.0 and pi0 == 1.0


def test_kl_shift_bound_inverts_the_right_argument():
    """t = (0.99, 0.01), s = (0.5, 0.5), errors on atom 1: R_S = 0.5, R_T = 0.99. Inverting
    kl(R_S‖·) gives 0.924, below the true target risk."""
    t, s = np.array([0.99, 0.01]), np.array([0.5, 0.5])
    assert float(lp_shift_bound(0.5, t, s)) == pytest.approx(0.99, abs=1e-11)
    assert float(kl_shift_bound(0.5, t, s)) >= 0.99  # data processing is tight here
    assert float(kl_shift_bound(0.5, t, s)) == pytest.approx(0.99, rel=1e-12)
    # batched: one S row per training difficulty, leading axes of the risk broadcast
    rows = np.asarray(lp_shift_bound(np.array([[0.0], [0.5]]), t, np.stack([s, s[::-1]])))
    np.testing.assert_allclose(rows, [[1e-12, 1e-12], [0.99 + 1e-12, 0.99 + 1e-12]], atol=1e-14)
    assert float(kl_shift_bound(0.0, t, s)) <= 1e-300  # R_S = 0 and T ≪ S: R_T = 0


def test_out_of_support_mass_is_handled_exactly():
    t = np.array([0.1, 0.2, 0.3, 0.4, 0.0])
    s = np.array([0.5, 0.0, 0.5, 0.0, 0.0])
    pi = 0.2 + 0.4
    assert float(out_of_support_mass(t, s)) == pytest.approx(pi)
    t_in, pi2 = restrict_to_support(t, s)
    np.testing.assert_allclose(np.asarray(t_in), [0.25, 0, 0.75, 0, 0])
    assert float(pi2) == pytest.approx(pi)
    kl_in = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    expected = (1 - pi) * float(kl_inv_reverse(0.1, kl_in)) + pi
    assert float(kl_shift_bound(0.1, t, s)) == pytest.approx(expected, rel=1e-14)
    assert float(discrete_kl(t, s)) == math.inf  # the un-restricted KL is infinite


def test_point_mass_training_on_disjoint_levels_is_vacuous():
    s = np.eye(L)[2]  # train only on level 2 (exact-size levels: disjoint supports)
    others = np.array([0.25, 0.25, 0.0, 0.25, 0.25])
    assert float(kl_shift_bound(0.0, others, s)) == 1.0
    assert float(renyi_shift_bound(0.0, others, s, 2.0)) == 1.0
    uniform = np.full(L, 1 / L)  # target includes level 2: only T_2·R_S + (1 − T_2) is certified
    assert float(kl_shift_bound(0.1, uniform, s)) == pytest.approx(0.2 * 0.1 + 0.8, rel=1e-12)
    # batched over training levels: one row of S per difficulty
    rows = np.asarray(kl_shift_bound(np.full(L, 0.1), uniform, np.eye(L)))
    np.testing.assert_allclose(rows, 0.2 * 0.1 + 0.8, rtol=1e-12)


# ---- nested levels ---------------------------------------------------------------------------
SIZES = np.array([3, 7, 12, 20])  # level d = items {0, …, N_d − 1}, uniform


def problem_distribution(level_weights: np.ndarray) -> np.ndarray:
    """Brute force: the distribution over the 20 items of a mixture of nested uniform levels."""
    p = np.zeros(SIZES[-1])
    for w, n in zip(level_weights, SIZES):
        p[:n] += w / n
    return p


def shell_of_item() -> np.ndarray:
    return np.searchsorted(SIZES, np.arange(SIZES[-1]), side="right")


@given(seeds)
@settings(max_examples=40, deadline=None)
def test_nested_shell_weights_are_exact(seed):
    rng = np.random.default_rng(seed)
    t, s = _dirichlet(rng, 4), _dirichlet(rng, 4, zeros=int(rng.integers(0, 3)))
    pt, ps = problem_distribution(t), problem_distribution(s)
    shells = shell_of_item()
    shell_t = np.asarray(nested_shell_weights(t, SIZES))
    np.testing.assert_allclose(shell_t, np.bincount(shells, weights=pt, minlength=4), atol=1e-15)
    np.testing.assert_allclose(np.asarray(nested_problem_density(t, SIZES))[shells], pt, atol=1e-15)
    shell_s = np.asarray(nested_shell_weights(s, SIZES))
    # every divergence between the problem-level distributions equals the one between shells
    support = ps > 0
    if np.all(pt[~support] == 0):
        direct = float(np.sum(pt[pt > 0] * np.log(pt[pt > 0] / ps[pt > 0])))
        assert float(discrete_kl(shell_t, shell_s)) == pytest.approx(direct, rel=1e-12, abs=1e-15)
        renyi = math.log(np.sum(pt[support] ** 2 / ps[support]))
        assert float(renyi_divergence(shell_t, shell_s, 2.0)) == pytest.approx(
            renyi, rel=1e-12, abs=1e-15
        )
    assert float(out_of_support_mass(shell_t, shell_s)) == pytest.approx(
        float(pt[~support].sum()), abs=1e-15
    )
    # with a per-problem loss the bound holds against the exact problem-level target risk
    loss = rng.uniform(size=SIZES[-1])
    assert float(kl_shift_bound(ps @ loss, shell_t, shell_s)) >= pt @ loss - 1e-15


def test_nested_training_level_leaves_exactly_the_harder_mass_uncertified():
    uniform = np.full(4, 0.25)
    for d in range(4):
        s = np.asarray(nested_shell_weights(np.eye(4)[d], SIZES))
        t = np.asarray(nested_shell_weights(uniform, SIZES))
        assert float(out_of_support_mass(t, s)) == pytest.approx(t[d + 1 :].sum(), abs=1e-15)
        assert float(kl_shift_bound(0.0, t, s)) < 1.0 if d == 3 else True
    big = 10.0 ** (2 * np.arange(1, 9))  # addition: operands uniform in [0, 10^d) → N_d = 10^(2d)
    w = np.asarray(nested_shell_weights(np.full(8, 1 / 8), big))
    assert w.sum() == pytest.approx(1.0, abs=1e-14) and np.all(w > 0)


# ---- (a) gap band ----------------------------------------------------------------------------
def test_gap_band_covers_the_true_gap():
    rng = np.random.default_rng(0)
    reps, n_t, n_s, r_t, r_s, delta = 2000, 400, 300, 0.35, 0.1, 0.1
    k_t, k_s = rng.binomial(n_t, r_t, reps), rng.binomial(n_s, r_s, reps)
    band = jax.jit(lambda kt, ks: gap_band(kt, n_t, ks, n_s, delta))(
        k_t.astype(np.float32), k_s.astype(np.float32)
    )
    lower, upper, gap = (np.asarray(x) for x in (band.lower, band.upper, band.measured_gap))
    assert np.all(lower <= gap) and np.all(gap <= upper)
    assert np.mean((lower <= r_t - r_s) & (r_t - r_s <= upper)) >= 1 - delta
    single = gap_band(int(k_t[0]), n_t, int(k_s[0]), n_s, delta)
    assert float(single.lower) == pytest.approx(float(lower[0]), rel=1e-12)
    # each side at δ/4
    assert float(single.target_upper) == float(clopper_pearson_upper(int(k_t[0]), n_t, delta / 4))
    kl_band = gap_band(0.3 * n_t, n_t, 0.1 * n_s, n_s, delta, binary=False)
    assert float(kl_band.target_upper) == float(kl_test_set_bound(0.3, n_t, delta / 4))


# ---- (c) Germain et al. ------------------------------------------------------------------------
def test_domain_adaptation_bound_holds_with_exact_quantities():
    """Finite domain, finite hypothesis set: R_T(G_Q), d_T(Q), e_S(Q) are exact sums."""
    rng = np.random.default_rng(1)
    atoms, hyps = 12, 6
    labels = rng.integers(0, 2, atoms)
    preds = rng.integers(0, 2, (hyps, atoms))
    preds[:3] = labels  # some good hypotheses
    q = rng.dirichlet(np.ones(hyps))
    errors = (preds != labels).astype(float)  # [h, i]
    for zeros in [0, 3]:
        t, s = _dirichlet(rng, atoms), _dirichlet(rng, atoms, zeros)
        gibbs_t = t @ (q @ errors)
        disagree = (preds[:, None, :] != preds[None, :, :]).astype(float)  # [h, g, i]
        disagreement = float(np.einsum("h,g,hgi,i->", q, q, disagree, t))
        joint_s = float(np.einsum("h,g,hi,gi,i->", q, q, errors, errors, s))
        joint_t = float(np.einsum("h,g,hi,gi,i->", q, q, errors, errors, t))
        assert gibbs_t == pytest.approx(0.5 * disagreement + joint_t)  # the decomposition
        for order in [1.5, 2.0, 4.0]:
            exact = domain_adaptation_bound(
                disagreement, 1e12, joint_s, 1e12, 1e12, t, s, order, 0.05
            )
            assert float(exact.bound) >= gibbs_t
            assert float(exact.eta) == pytest.approx(float(out_of_support_mass(t, s)))
            finite = domain_adaptation_bound(disagreement, 500, joint_s, 500, 50, t, s, order, 0.05)
            assert float(finite.bound) >= float(exact.bound)
            assert float(finite.disagreement_upper) == pytest.approx(
                float(
                    kl_test_set_bound(
                        sample_convergence_bound(disagreement, 50, 0.0125), 500, 0.0125
                    )
                ),
                rel=1e-14,
            )
        if zeros == 0:
            beta = float(renyi_beta(t, s, 2.0))
            assert beta == pytest.approx(
                math.exp(0.5 * float(renyi_divergence(t, s, 2.0))), rel=1e-12
            )


# ---- divergences ------------------------------------------------------------------------------
def test_divergences_match_direct_formulas_and_order():
    rng = np.random.default_rng(3)
    t, s = _dirichlet(rng, 6), _dirichlet(rng, 6)
    assert float(discrete_kl(t, s)) == pytest.approx(float(np.sum(t * np.log(t / s))), rel=1e-13)
    assert float(discrete_kl(t, t)) == 0.0
    values = [float(renyi_divergence(t, s, q)) for q in [1.0001, 1.5, 2.0, 4.0, 10.0]]
    assert values == sorted(values)  # D_q is non-decreasing in q
    assert values[0] == pytest.approx(float(discrete_kl(t, s)), rel=1e-3)
    assert values[2] == pytest.approx(math.log(np.sum(t**2 / s)), rel=1e-13)
    batched = jax.vmap(lambda ss: discrete_kl(t, ss))(np.stack([s, t]))
    assert batched.dtype == jnp.float64 and float(batched[1]) == 0.0


@pytest.mark.parametrize(
    "call, field",
    [
        (lambda: discrete_kl(np.array([0.5, 0.6]), np.array([0.5, 0.5])), "t sums to"),
        (lambda: discrete_kl(np.array([0.5, 0.5]), np.array([1.5, -0.5])), "s=.*negative"),
        (lambda: discrete_kl(0.5, np.array([0.5, 0.5])), "t is a scalar"),
        (lambda: renyi_divergence(np.ones(2) / 2, np.ones(2) / 2, 1.0), "order=1.0"),
        (lambda: kl_shift_bound(1.5, np.ones(2) / 2, np.ones(2) / 2), "source_risk=1.5"),
        (lambda: nested_shell_weights(np.ones(2) / 2, np.array([3, 3])), "level_sizes="),
        (lambda: gap_band(5, 10, 1, 10, 1.0), "delta=1.0"),
        (lambda: importance_weights(np.ones(2) / 2, np.array([0.7, 0.7])), "s sums to"),
        (lambda: gap_band(11, 10, 1, 10, 0.1), "k="),
        (lambda: gap_band(11.0, 10, 1.0, 10, 0.1, binary=False), "target_errors="),
        (
            lambda: domain_adaptation_bound(
                0.1, 0, 0.1, 10, 10, np.ones(2) / 2, np.ones(2) / 2, 2.0, 0.1
            ),
            "target_n=0",
        ),
    ],
)
def test_bad_input(call, field):
    with pytest.raises(ValueError, match=field):
        call()


def test_traced_bad_input_gives_nan():
    t = np.ones(3) / 3
    assert np.isnan(float(jax.jit(lambda r: kl_shift_bound(r, t, t))(1.5)))
    assert np.isnan(float(jax.jit(lambda w: discrete_kl(w, t))(jnp.array([0.5, 0.6, 0.1]))))
    assert np.isnan(float(jax.jit(lambda q: renyi_shift_bound(0.1, t, t, q))(0.5)))
