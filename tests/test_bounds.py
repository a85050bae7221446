"""The float64 bounds (kl_inverse, special_functions, pac_bayes, chernoff, clopper_pearson under
difftrade.theory) against mpmath (50+ digits), closed forms, orderings and bad input."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from difftrade.theory.chernoff import (
    kl_test_set_bound,
    kl_test_set_lower,
    per_example_convergence_bound,
    per_example_convergence_lower,
    sample_convergence_bound,
    sample_convergence_lower,
)
from difftrade.theory.clopper_pearson import (
    clopper_pearson_host,
    clopper_pearson_interval,
    clopper_pearson_lower,
    clopper_pearson_upper,
)
from difftrade.theory.kl_inverse import binary_kl, kl_inv, kl_inv_lower, kl_inv_reverse
from difftrade.theory.pac_bayes import (
    catoni_bound,
    catoni_grid_bound,
    lambda_bound,
    maurer_bound,
    optimal_lambda,
    pinsker_bound,
    quad_bound,
)
from difftrade.theory.special_functions import xi, xi_relaxed

mpmath.mp.dps = 50
REL = 1e-10
MONO_SLACK = 1 + 1e-12  # mathematically monotone; float64 results may differ by ~1e-13 relative


# ---- mpmath references -----------------------------------------------------------------------
def mp_kl(q, p):
    q, p = mpmath.mpf(q), mpmath.mpf(p)
    first = 0 if q == 0 else (mpmath.inf if p == 0 else q * mpmath.log(q / p))
    second = 0 if q == 1 else (mpmath.inf if p == 1 else (1 - q) * mpmath.log((1 - q) / (1 - p)))
    return first + second


def _digits_for(c: float) -> int:
    return 60 + (int(-math.log10(c)) if 0 < c < 1 else 0)


def _geometric_bisection(inside, lo, hi, iterations=260):
    """Largest x in [lo, hi] with inside(x) (monotone), to relative precision ~2^-200."""
    for _ in range(iterations):
        mid = mpmath.sqrt(lo * hi)
        if inside(mid):
            lo = mid
        else:
            hi = mid
    return lo


def mp_kl_inv(q: float, c: float, upper: bool = True):
    """Exact kl inverse at ≥ 60 digits, relative precision in whichever quantity is small.

    Near q the unknown is the distance r = |p − q| (geometric bisection on r); for the lower
    inverse far below q it is p itself (geometric bisection on p, down to 10^-(10^8)).
    """
    with mpmath.workdps(_digits_for(c)):
        q_, c_ = mpmath.mpf(q), mpmath.mpf(c)
        if c == 0:
            return q_
        end = mpmath.mpf(1) if upper else mpmath.mpf(0)
        if upper and q == 0:
            return -mpmath.expm1(-c_)
        if mp_kl(q_, end) <= c_:
            return end
        if upper:
            r = _geometric_bisection(
                lambda r: mp_kl(q_, q_ + r) <= c_, mpmath.mpf(10) ** -400, 1 - q_
            )
            return q_ + r
        if mp_kl(q_, q_ / 2) <= c_:  # root below q/2: p itself is the small quantity
            return 1 / _geometric_bisection(
                lambda u: mp_kl(q_, 1 / u) <= c_, 2 / q_, mpmath.mpf(10) ** (10**8)
            )
        r = _geometric_bisection(lambda r: mp_kl(q_, q_ - r) <= c_, mpmath.mpf(10) ** -400, q_ / 2)
        return q_ - r


def rel_err(value, truth):
    truth = mpmath.mpf(truth)
    if truth == 0:
        return abs(mpmath.mpf(value))
    return abs(mpmath.mpf(value) - truth) / abs(truth)


Q_GRID = [0.0, 1e-10, 1e-3, 0.1, 0.5, 0.9, 1 - 1e-6, 1 - 1e-12, 1.0]
C_GRID = [0.0, 1e-300, 1e-12, 1e-3, 0.1, 1.0, 10.0, 1e6]


@pytest.fixture(scope="module")
def kl_inv_grid():
    q, c = np.meshgrid(np.array(Q_GRID), np.array(C_GRID), indexing="ij")
    return q, c, np.asarray(kl_inv(q, c)), np.asarray(kl_inv_lower(q, c))


def test_kl_inv_upper_matches_mpmath_and_is_conservative(kl_inv_grid):
    q, c, upper, _ = kl_inv_grid
    assert upper.dtype == np.float64
    for (i, j), value in np.ndenumerate(upper):
        truth = mp_kl_inv(q[i, j], c[i, j], upper=True)
        assert mpmath.mpf(value) >= truth, (q[i, j], c[i, j], value, truth)
        tol = REL if truth > 1e-290 else 1e-300  # truth 0: allow the smallest normal float
        assert rel_err(value, truth) <= tol or abs(value - float(truth)) <= 3e-308, (
            q[i, j],
            c[i, j],
            value,
        )


def test_kl_inv_lower_matches_mpmath_and_is_conservative(kl_inv_grid):
    q, c, _, lower = kl_inv_grid
    for (i, j), value in np.ndenumerate(lower):
        truth = mp_kl_inv(q[i, j], c[i, j], upper=False)
        assert mpmath.mpf(value) <= truth, (q[i, j], c[i, j], value, truth)
        assert rel_err(value, truth) <= REL or abs(value - float(truth)) <= 3e-308, (
            q[i, j],
            c[i, j],
            value,
        )


def mp_kl_inv_reverse(p: float, c: float):
    """Exact sup{q ∈ [p, 1] : kl(q‖p) ≤ c} at ≥ 60 digits (geometric bisection on q − p)."""
    with mpmath.workdps(_digits_for(c)):
        p_, c_ = mpmath.mpf(p), mpmath.mpf(c)
        if c == 0 or p == 0:  # kl(q‖0) = ∞ for q > 0
            return p_
        if p == 1 or -mpmath.log(p_) <= c_:  # kl(1‖p) = −ln p
            return mpmath.mpf(1)
        return p_ + _geometric_bisection(
            lambda r: mp_kl(p_ + r, p_) <= c_, mpmath.mpf(10) ** -400, 1 - p_
        )


def test_kl_inv_reverse_matches_mpmath_and_is_conservative():
    """The inverse in kl's first argument (what data processing, kl(R_T‖R_S) ≤ KL, needs)."""
    p, c = np.meshgrid(np.array(Q_GRID), np.array(C_GRID), indexing="ij")
    values = np.asarray(kl_inv_reverse(p, c))
    for (i, j), value in np.ndenumerate(values):
        truth = mp_kl_inv_reverse(p[i, j], c[i, j])
        assert mpmath.mpf(value) >= truth, (p[i, j], c[i, j], value, truth)
        assert rel_err(value, truth) <= REL or abs(value - float(truth)) <= 3e-308, (
            p[i, j],
            c[i, j],
            value,
        )
    # not the same function as kl_inv: kl(0.99‖0.5) = 0.637, and kl_inv(0.5, 0.637) = 0.924 < 0.99
    c99 = float(mp_kl(mpmath.mpf("0.99"), mpmath.mpf("0.5")))
    assert float(kl_inv_reverse(0.5, c99)) == pytest.approx(0.99, rel=1e-12)
    assert float(kl_inv(0.5, c99)) < 0.93


@given(st.floats(0.0, 1e3))
@settings(max_examples=60, deadline=None)
def test_kl_inv_at_zero_is_closed_form(c):
    value = float(kl_inv(0.0, c))
    truth = -mpmath.expm1(-mpmath.mpf(c))
    assert mpmath.mpf(value) >= truth
    assert rel_err(value, truth) <= REL or value <= 2.3e-308  # below the smallest normal float


def test_binary_kl_matches_mpmath_relative():
    qs = np.array([0.0, 1e-10, 0.1, 0.5, 0.5, 0.5, 0.9, 1 - 1e-12, 1.0, 0.3])
    ps = np.array(
        [0.2, 1e-9, 0.1 + 1e-12, 0.5 + 1e-15, 1 - 1e-15, 1e-20, 0.3, 1 - 1e-14, 0.99, 0.3]
    )
    values = np.asarray(binary_kl(qs, ps))
    for q, p, v in zip(qs, ps, values):
        with mpmath.workdps(100):
            truth = mp_kl(q, p)
        if truth == 0:
            assert v == 0
        else:
            assert rel_err(v, truth) <= 1e-13, (q, p, v, truth)
    assert float(binary_kl(0.3, 0.0)) == math.inf and float(binary_kl(0.3, 1.0)) == math.inf


# ---- ξ(n) ------------------------------------------------------------------------------------
def mp_xi_definition(n: int):
    n_ = mpmath.mpf(n)
    return mpmath.fsum(
        mpmath.binomial(n, k) * (k / n_) ** k * (1 - k / n_) ** (n - k) for k in range(n + 1)
    )


def mp_xi_ramanujan(n: int):
    """ξ(n) = Σ_k n!/((n−k)! n^k): positive, fast-decaying terms (an independent formula)."""
    total, term, k = mpmath.mpf(1), mpmath.mpf(1), 0
    while k < n:
        term *= mpmath.mpf(n - k) / n
        k += 1
        total += term
        if term < mpmath.mpf(10) ** -60:
            break
    return total


@pytest.mark.parametrize("n", [1, 2, 3, 10, 57, 1000, 4000])
def test_xi_matches_definition(n):
    assert rel_err(xi(n), mp_xi_definition(n)) <= 1e-13


@pytest.mark.parametrize("n", [10**5, 10**6])
def test_xi_large_n_matches_ramanujan_form(n):
    assert rel_err(xi(n), mp_xi_ramanujan(n)) <= 1e-12


def test_xi_asymptotic_branch_continuous_and_sandwiched():
    for n in [1, 2, 5, 100, 10**4, 10**7, 10**10, 10**10 + 1, 10**12, 10**15]:
        v = xi(n)
        assert math.sqrt(n) <= v <= 2 * math.sqrt(n)
    a, b = xi(10**10), xi(10**10 + 1)  # exact sum vs asymptotic expansion
    assert abs(b / a - math.sqrt(1 + 1e-10)) < 1e-12
    assert float(xi_relaxed(100)) == 20.0


def test_xi_bad_input():
    for bad in [0, -3, 2.5, True]:
        with pytest.raises(ValueError, match="n="):
            xi(bad)


# ---- every bound against mpmath ---------------------------------------------------------------
BOUND_CASES = [  # (emp_risk, kl, n, delta)
    (0.0, 0.0, 1, 0.5),
    (0.0, 1e-300, 100, 0.05),
    (0.05, 3.0, 1000, 0.05),
    (0.3, 100.0, 10**5, 1e-6),
    (1 - 1e-12, 1.0, 50, 0.01),
    (0.2, 1e6, 10**4, 0.05),
    (0.5, 12.0, 500, 0.1),
]


def mp_b(kl, n, delta, log_xi=None):
    log_xi = mpmath.log(2 * mpmath.sqrt(n)) if log_xi is None else log_xi
    return mpmath.mpf(kl) + log_xi - mpmath.log(mpmath.mpf(delta))


def _check_bound(value, truth):
    truth = min(mpmath.mpf(1), mpmath.mpf(truth))
    assert mpmath.mpf(float(value)) >= truth, (float(value), truth)
    assert rel_err(float(value), truth) <= REL, (float(value), truth)


@pytest.mark.parametrize("emp, kl, n, delta", BOUND_CASES)
def test_bounds_match_mpmath(emp, kl, n, delta):
    b = mp_b(kl, n, delta)
    e = b / (2 * n)
    _check_bound(maurer_bound(emp, kl, n, delta), mp_kl_inv(emp, float(b / n)))
    _check_bound(pinsker_bound(emp, kl, n, delta), emp + mpmath.sqrt(e))
    _check_bound(quad_bound(emp, kl, n, delta), (mpmath.sqrt(emp + e) + mpmath.sqrt(e)) ** 2)
    lam = 2 / (mpmath.sqrt(2 * n * mpmath.mpf(emp) / b + 1) + 1)
    _check_bound(
        lambda_bound(emp, kl, n, delta), emp / (1 - lam / 2) + b / (n * lam * (1 - lam / 2))
    )
    for c in [0.5, 2.0, 10.0]:
        cat = (1 - mpmath.exp(-c * mpmath.mpf(emp) - (kl - mpmath.log(mpmath.mpf(delta))) / n)) / (
            1 - mpmath.exp(-c)
        )
        _check_bound(catoni_bound(emp, kl, n, delta, c), cat)
    if n <= 10**5:
        b_exact = mp_b(kl, n, delta, log_xi=mpmath.log(mp_xi_ramanujan(n)))
        _check_bound(
            maurer_bound(emp, kl, n, delta, xi="exact"), mp_kl_inv(emp, float(b_exact / n))
        )


def test_sample_convergence_and_test_set_bounds_match_mpmath():
    for mc, m, dp in [(0.1, 100, 0.05), (0.0, 10, 0.01), (0.7, 1000, 1e-4)]:
        _check_bound(
            sample_convergence_bound(mc, m, dp),
            mp_kl_inv(mc, float(mpmath.log(2 / mpmath.mpf(dp)) / m)),
        )
        _check_bound(
            kl_test_set_bound(mc, m, dp), mp_kl_inv(mc, float(mpmath.log(1 / mpmath.mpf(dp)) / m))
        )
        low = float(kl_test_set_lower(mc, m, dp))
        assert mpmath.mpf(low) <= mp_kl_inv(
            mc, float(mpmath.log(1 / mpmath.mpf(dp)) / m), upper=False
        )
        # the lower sides of both Monte-Carlo corrections: never above the exact inverse, within 1e-10
        for value, c in (
            (sample_convergence_lower(mc, m, dp), mpmath.log(2 / mpmath.mpf(dp)) / m),
            (per_example_convergence_lower(mc, m, dp), mpmath.log(1 / mpmath.mpf(dp)) / m),
        ):
            exact = mp_kl_inv(mc, float(c), upper=False)
            assert mpmath.mpf(float(value)) <= exact and float(exact - float(value)) <= 1e-10 * max(
                float(exact), 1e-300
            )


# ---- orderings and monotonicity (hypothesis) --------------------------------------------------
risks = st.floats(0.0, 1.0)
kls = st.floats(0.0, 1e4)
ns = st.integers(1, 10**7)
deltas = st.floats(1e-9, 0.999)
RELAXATIONS = [pinsker_bound, quad_bound, lambda_bound]


@given(risks, kls, ns, deltas)
@settings(max_examples=100, deadline=None)
def test_relaxations_dominate_kl_bound(emp, kl, n, delta):
    kl_bound = float(maurer_bound(emp, kl, n, delta))
    assert kl_bound >= emp
    for relax in RELAXATIONS:
        assert float(relax(emp, kl, n, delta)) >= kl_bound
    assert kl_bound * MONO_SLACK >= float(maurer_bound(emp, kl, n, delta, xi="exact"))


ALL_BOUNDS = [maurer_bound, pinsker_bound, quad_bound, lambda_bound]


@given(risks, risks, kls, kls, ns, ns, deltas, deltas)
@settings(max_examples=60, deadline=None)
def test_bounds_monotone(e1, e2, k1, k2, n1, n2, d1, d2):
    (e1, e2), (k1, k2), (n1, n2), (d1, d2) = (
        sorted([e1, e2]),
        sorted([k1, k2]),
        sorted([n1, n2]),
        sorted([d1, d2]),
    )
    # one vectorised call per bound: [base, larger L̂, larger KL, fewer examples, smaller δ]
    emp = np.array([e1, e2, e1, e1, e1])
    kl = np.array([k1, k1, k2, k1, k1])
    n = np.array([n2, n2, n2, n1, n2])
    delta = np.array([d2, d2, d2, d2, d1])
    for bound in ALL_BOUNDS:
        values = np.asarray(bound(emp, kl, n, delta))
        assert np.all(values[1:] * MONO_SLACK >= values[0]), (bound.__name__, values)
    for c in [0.5, 3.0]:
        values = np.asarray(catoni_bound(emp, kl, n, delta, c))
        assert np.all(values[1:] * MONO_SLACK >= values[0]), ("catoni", values)
    base, other = np.asarray(
        sample_convergence_bound(np.array([e1, e2]), np.array([n2, n1]), np.array([d2, d1]))
    )
    assert base >= e1 and other * MONO_SLACK >= base


@given(risks, kls, ns, deltas)
@settings(max_examples=100, deadline=None)
def test_catoni_dominates_kl_without_xi_and_grid_pays(emp, kl, n, delta):
    grid = np.array([0.25, 1.0, 4.0, 16.0])
    kl_no_xi = float(kl_inv(emp, (kl - math.log(delta)) / n))
    for c in grid:
        assert float(catoni_bound(emp, kl, n, delta, c)) >= kl_no_xi * (1 - 1e-12)
    bound, best_c = catoni_grid_bound(emp, kl, n, delta, grid)
    paid = [float(catoni_bound(emp, kl, n, delta / grid.size, c)) for c in grid]
    unpaid = [float(catoni_bound(emp, kl, n, delta, c)) for c in grid]
    assert float(bound) == min(paid) and float(best_c) == grid[int(np.argmin(paid))]
    assert float(bound) >= min(unpaid)  # paying ln K is never free
    assert float(bound) >= float(kl_inv(emp, (kl + math.log(grid.size / delta)) / n)) * (1 - 1e-12)


@given(st.floats(1e-4, 0.9), st.floats(0.0, 50.0), st.integers(10, 10**6), st.floats(1e-6, 0.5))
@settings(max_examples=40, deadline=None)
def test_lambda_closed_form_is_grid_minimum(emp, kl, n, delta):
    lam_star = float(optimal_lambda(emp, kl, n, delta))
    assert 0 < lam_star <= 1
    best = float(lambda_bound(emp, kl, n, delta))
    grid = np.linspace(1e-4, 2 - 1e-4, 200_001)
    b = kl + math.log(2 * math.sqrt(n) / delta)
    values = emp / (1 - grid / 2) + b / (n * grid * (1 - grid / 2))
    dense = min(values.min(), 1.0)
    assert best <= dense * (1 + 1e-12)
    assert best >= dense * (1 - 1e-6)
    assert float(lambda_bound(emp, kl, n, delta, lam=lam_star)) == pytest.approx(best, rel=1e-14)


# ---- Clopper–Pearson ---------------------------------------------------------------------------
def mp_binom_cdf(k, n, p):
    p = mpmath.mpf(p)
    return mpmath.fsum(mpmath.binomial(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


CP_CASES = [(0, 10), (1, 10), (3, 100), (50, 1000), (999, 1000), (7, 10**8), (30, 10**6)]


@pytest.mark.parametrize("k, n", CP_CASES)
def test_clopper_pearson_is_exact_and_conservative(k, n):
    delta = 0.05
    lo, up = (float(x) for x in clopper_pearson_interval(k, n, delta))
    host_lo, host_up = clopper_pearson_host(k, n, delta)
    # upper: P(X ≤ k; up) ≤ δ/2 (conservative) and only just (tight)
    tail_up = mp_binom_cdf(k, n, up)
    assert tail_up <= delta / 2
    assert tail_up >= delta / 2 * (1 - 1e-6)
    assert mp_binom_cdf(k, n, float(host_up)) <= delta / 2
    if k > 0:  # lower: P(X ≥ k; lo) ≤ δ/2
        tail_lo = 1 - mp_binom_cdf(k - 1, n, lo)
        assert tail_lo <= delta / 2
        assert tail_lo >= delta / 2 * (1 - 1e-6)
        assert 1 - mp_binom_cdf(k - 1, n, float(host_lo)) <= delta / 2
    else:
        assert lo == 0.0 and host_lo == 0.0
    assert lo <= k / n <= up


def test_clopper_pearson_trivial_ends_and_vmap():
    assert float(clopper_pearson_upper(10, 10, 0.05)) == 1.0
    assert float(clopper_pearson_lower(0, 10, 0.05)) == 0.0
    f = jax.jit(jax.vmap(lambda k: clopper_pearson_upper(k, 1000, 0.05)))
    batched = np.asarray(f(jnp.arange(5.0)))
    single = np.array([float(clopper_pearson_upper(k, 1000, 0.05)) for k in range(5)])
    np.testing.assert_array_equal(batched, single)
    np.testing.assert_allclose(
        batched, clopper_pearson_host(np.arange(5), 1000, 0.05, side="upper"), rtol=1e-9
    )


# ---- float64 mechanism, transformations, gradients ----------------------------------------------
def test_float64_without_global_x64():
    assert not jax.config.jax_enable_x64
    assert kl_inv(0.1, 0.2).dtype == jnp.float64
    out = jax.jit(lambda q: maurer_bound(q, 3.0, 100, 0.05))(jnp.float32(0.1))
    assert out.dtype == jnp.float64
    assert jnp.zeros(2).dtype == jnp.float32  # the global flag is untouched


def test_vmap_jit_match_eager():
    q = np.linspace(0, 1, 7).astype(np.float32).astype(np.float64)  # survive jit's float32 inputs
    c = np.geomspace(1e-6, 10, 7).astype(np.float32).astype(np.float64)
    eager = np.asarray(kl_inv(q, c))
    np.testing.assert_array_equal(np.asarray(jax.vmap(kl_inv)(q, c)), eager)
    np.testing.assert_array_equal(np.asarray(jax.jit(kl_inv)(q, c)), eager)
    bounds = jax.jit(jax.vmap(lambda e, k: catoni_grid_bound(e, k, 100, 0.05, [1.0, 2.0])[0]))(q, c)
    # closed forms may differ by an ulp between fused (GPU) and eager programs
    np.testing.assert_allclose(
        np.asarray(bounds),
        np.asarray(catoni_grid_bound(q, c, 100, 0.05, [1.0, 2.0])[0]),
        rtol=1e-14,
    )


@pytest.mark.parametrize("fn", [kl_inv, kl_inv_lower])
def test_implicit_gradients_match_finite_differences(fn):
    for q, c in [(0.2, 0.1), (0.01, 0.5), (0.7, 0.02)]:
        gq, gc = jax.grad(lambda a, b: fn(a, b), argnums=(0, 1))(q, c)
        h = 1e-6
        fd_q = (float(fn(q + h, c)) - float(fn(q - h, c))) / (2 * h)
        fd_c = (float(fn(q, c + h)) - float(fn(q, c - h))) / (2 * h)
        assert float(gq) == pytest.approx(fd_q, rel=1e-5)
        assert float(gc) == pytest.approx(fd_c, rel=1e-5)
    assert float(jax.grad(lambda a: fn(a, 0.0))(0.3)) == pytest.approx(1.0)  # kl⁻¹(q, 0) = q
    g = jax.grad(lambda e: maurer_bound(e, 5.0, 1000, 0.05))(0.1)
    assert np.isfinite(float(g)) and float(g) > 0


# ---- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call, field",
    [
        (lambda: kl_inv(1.5, 0.1), "q=1.5"),
        (lambda: kl_inv(-0.1, 0.1), "q=-0.1"),
        (lambda: kl_inv(0.1, -1.0), "c=-1.0"),
        (lambda: binary_kl(0.1, 2.0), "p=2.0"),
        (lambda: maurer_bound(0.1, -1.0, 100, 0.05), "kl=-1.0"),
        (lambda: maurer_bound(0.1, 1.0, 0, 0.05), "n=0"),
        (lambda: maurer_bound(0.1, 1.0, 10, 0.0), "delta=0.0"),
        (lambda: pinsker_bound(0.1, 1.0, 10, 1.0), "delta=1.0"),
        (lambda: quad_bound(np.array([0.1, 1.2]), 1.0, 10, 0.1), "emp_risk=1.2"),
        (lambda: lambda_bound(0.1, 1.0, 10, 0.1, lam=2.0), "lam=2.0"),
        (lambda: catoni_bound(0.1, 1.0, 10, 0.1, 0.0), "c=0.0"),
        (lambda: catoni_grid_bound(0.1, 1.0, 10, 0.1, [[1.0]]), "c_grid"),
        (lambda: sample_convergence_bound(0.1, 0, 0.1), "num_draws=0"),
        (lambda: sample_convergence_bound(0.1, 10, 2.0), "delta_prime=2.0"),
        (lambda: per_example_convergence_bound(1.5, 10, 0.1), "mc_risk=1.5"),
        (lambda: per_example_convergence_bound(0.1, 0, 0.1), "num_terms=0"),
        (lambda: per_example_convergence_lower(0.1, 10, 0.0), "delta_prime=0.0"),
        (lambda: sample_convergence_lower(-0.1, 10, 0.1), "mc_risk=-0.1"),
        (lambda: clopper_pearson_upper(3.5, 10, 0.1), "k="),
        (lambda: clopper_pearson_upper(11, 10, 0.1), "k="),
        (lambda: clopper_pearson_host(1, 10, 0.1, side="left"), "side="),
        (lambda: maurer_bound(0.1, 1.0, 10.0, 0.1, xi="approx"), "xi="),
    ],
)
def test_bad_host_input_raises(call, field):
    with pytest.raises(ValueError, match=field.replace("[", r"\[")):
        call()


def test_bad_traced_input_gives_nan():
    assert np.isnan(float(jax.jit(kl_inv)(1.5, 0.1)))
    assert np.isnan(float(jax.jit(kl_inv)(0.5, -0.1)))
    assert np.isnan(float(jax.jit(maurer_bound)(0.1, -1.0, 100.0, 0.05)))
    assert np.isnan(float(jax.jit(pinsker_bound)(0.1, 1.0, 0.5, 0.05)))
    assert np.isnan(float(jax.jit(catoni_bound)(0.1, 1.0, 100.0, 1.5, 1.0)))
    assert np.isnan(float(jax.jit(clopper_pearson_upper)(11.0, 10.0, 0.05)))
    out = np.asarray(jax.vmap(kl_inv)(jnp.array([0.1, 2.0]), jnp.array([0.1, 0.1])))
    assert np.isfinite(out[0]) and np.isnan(out[1])
    with pytest.raises(ValueError, match="xi='exact'"):
        jax.jit(lambda n: maurer_bound(0.1, 1.0, n, 0.05, xi="exact"))(100.0)
