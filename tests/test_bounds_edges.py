"""The float64 bounds of difftrade.theory at the edges of their domain, against mpmath at
60+ digits.

Clopper–Pearson up to n = 1e9 and δ down to 1e-12 (JAX and host paths), the kl inverses for q
down to the smallest normal float and for subnormal q and c, the kl evaluation where XLA's
float64 log1p is inaccurate, the Pinsker-form bound, and the Clopper–Pearson domain. Each check:
the bound is never on the wrong side of the exact value, and within the stated tolerance of it.
References are cached per module; the JAX functions evaluate each grid in one vectorised call.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

from difftrade.theory.clopper_pearson import (
    clopper_pearson_host,
    clopper_pearson_lower,
    clopper_pearson_upper,
)
from difftrade.theory.float64 import float64_scope
from difftrade.theory.kl_inverse import (
    binary_kl,
    kl_inv,
    kl_inv_lower,
    kl_inv_reverse,
    x_minus_log1p,
)
from difftrade.theory.pac_bayes import maurer_bound, pinsker_bound

TINY = float(np.finfo(np.float64).tiny)  # smallest normal float64, 2.2e-308
CP_REL = 2e-9  # Clopper–Pearson: the 1e-9 tail margin plus the incomplete beta's error
KL_REL = 1e-10  # kl inverses (kl_inverse module docstring: ~1e-13, lower ≤ (c/q)·1e-13)
SUBNORMAL_ABS = 1e-297  # absolute slack allowed when an input or the result is subnormal


# ---- mpmath references (cached) ----------------------------------------------------------------
def _dps(n: int) -> int:
    return 60 + len(str(int(n)))


def _binomial_pmf(i: int, n: int, p: mpmath.mpf) -> mpmath.mpf:
    log_choose = mpmath.loggamma(n + 1) - mpmath.loggamma(i + 1) - mpmath.loggamma(n - i + 1)
    return mpmath.exp(log_choose + i * mpmath.log(p) + (n - i) * mpmath.log1p(-p))


@functools.cache
def mp_cdf_le(k: int, n: int, p: mpmath.mpf) -> mpmath.mpf:
    """P(X ≤ k), X ~ Bin(n, p): terms summed from i = k downwards until below 1e-45 of the sum."""
    with mpmath.workdps(_dps(n)):
        p_ = mpmath.mpf(p)
        if p_ <= 0 or p_ >= 1:
            return mpmath.mpf(1 if p_ <= 0 or k == n else 0)
        term = _binomial_pmf(k, n, p_)
        total, i, ratio = term, k, (1 - p_) / p_
        while i > 0 and term >= mpmath.mpf(10) ** -45 * total:
            term *= i * ratio / (n - i + 1)
            total += term
            i -= 1
        return total


@functools.cache
def mp_cdf_ge(k: int, n: int, p: mpmath.mpf) -> mpmath.mpf:
    """P(X ≥ k), X ~ Bin(n, p): terms summed from i = k upwards until below 1e-45 of the sum."""
    with mpmath.workdps(_dps(n)):
        p_ = mpmath.mpf(p)
        if p_ <= 0 or p_ >= 1:
            return mpmath.mpf(1 if p_ >= 1 or k == 0 else 0)
        term = _binomial_pmf(k, n, p_)
        total, i, ratio = term, k, p_ / (1 - p_)
        while i < n and term >= mpmath.mpf(10) ** -45 * total:
            term *= (n - i) * ratio / (i + 1)
            total += term
            i += 1
        return total


def mp_kl(q: mpmath.mpf, p: mpmath.mpf) -> mpmath.mpf:
    """kl(q‖p) with the complements through log1p, so 1 − q is never rounded (q ~ 1e-300)."""
    first = 0 if q == 0 else (mpmath.inf if p == 0 else q * mpmath.log(q / p))
    if q == 1:
        return first
    return first + (mpmath.inf if p == 1 else (1 - q) * (mpmath.log1p(-q) - mpmath.log1p(-p)))


def _bisect_geometric(inside, lo, hi, iterations: int = 240) -> mpmath.mpf:
    """Largest x in [lo, hi] with inside(x) (monotone), to relative precision ~2^-200."""
    for _ in range(iterations):
        mid = mpmath.sqrt(lo * hi)
        lo, hi = (mid, hi) if inside(mid) else (lo, mid)
    return lo


def _kl_inv_digits(q: float, c: float) -> int:
    """60 digits beyond those of the step |p − q| ≳ √(qc) relative to q."""
    if q == 0 or c == 0:
        return 60
    return 70 + max(0, math.ceil(0.5 * (math.log10(q) - math.log10(c))))


@functools.cache
def mp_kl_inv(q: float, c: float, side: str) -> mpmath.mpf:
    """Exact ``upper``/``lower``/``reverse`` kl inverse (masses down to 5e-324), ≥ 60 digits."""
    with mpmath.workdps(_kl_inv_digits(q, c)):
        q_, c_ = mpmath.mpf(q), mpmath.mpf(c)
        if c_ == 0:
            return q_
        if side == "upper":
            if mp_kl(q_, mpmath.mpf(1)) <= c_:
                return mpmath.mpf(1)
            return q_ + _bisect_geometric(
                lambda r: mp_kl(q_, q_ + r) <= c_, mpmath.mpf(10) ** -400, 1 - q_
            )
        if side == "reverse":
            if q_ == 0:
                return q_
            if -mpmath.log(q_) <= c_:
                return mpmath.mpf(1)
            return q_ + _bisect_geometric(
                lambda r: mp_kl(q_ + r, q_) <= c_, mpmath.mpf(10) ** -400, 1 - q_
            )
        if q_ == 0:
            return q_
        # lower: the distance r = q − p near q, or p itself (as 1/u) far below q
        if mp_kl(q_, q_ / 2) <= c_:
            return 1 / _bisect_geometric(
                lambda u: mp_kl(q_, 1 / u) <= c_, 2 / q_, mpmath.mpf(10) ** (10**6)
            )
        return q_ - _bisect_geometric(
            lambda r: mp_kl(q_, q_ - r) <= c_, mpmath.mpf(10) ** -400, q_ / 2
        )


def _check_kl_inv(values: np.ndarray, qs, cs, side: str, side_only: bool = False) -> None:
    """Every value on the conservative side of the exact inverse (upper and reverse: ≥, lower:
    ≤) and, unless ``side_only``, within KL_REL relative or SUBNORMAL_ABS absolute of it."""
    for value, q, c in zip(values.ravel(), np.ravel(qs), np.ravel(cs)):
        truth = mp_kl_inv(float(q), float(c), side)
        value_ = mpmath.mpf(float(value))
        where = (side, float(q), float(c), float(value), mpmath.nstr(truth, 20))
        gap = truth - value_ if side == "lower" else value_ - truth
        assert gap >= 0, where
        assert side_only or gap <= KL_REL * truth + SUBNORMAL_ABS, where


# ---- Clopper–Pearson: large n, small δ ---------------------------------------------------------
CP_N = [3 * 10**7, 10**8, 10**9]
CP_SMALL = [1, 7, 100, 10**4]  # k (upper) or n − k (lower): the complement of p is tiny
CP_DELTAS = [0.05, 1e-6, 1e-12]


def _cp_grid(side_small: bool):
    """(k, n, δ) arrays: k ∈ CP_SMALL if ``side_small`` else n − k ∈ CP_SMALL, plus the other
    side at n = 1e9 (j ↦ n − j) and, at δ = 0.05, n − k = 2e7 (the continued fraction near 1)."""
    rows = [(j, n, d) for n in CP_N for j in CP_SMALL for d in CP_DELTAS]
    rows += [(10**9 - j, 10**9, d) for j in [1, 100, 10**4] for d in [0.05, 1e-12]]
    rows += [(10**9 - 2 * 10**7, 10**9, 0.05)]
    if not side_small:
        rows = [(n - k, n, d) for k, n, d in rows]
    return tuple(np.array(col, dtype=np.float64) for col in zip(*rows))


def _check_cp(values, ks, ns, deltas, upper: bool):
    """Never on the wrong side: the tail at the bound is ≤ δ. Tight: the tail a distance ``slack``
    inward is > δ, so the exact bound is within ``slack`` = CP_REL·min(p, 1 − p) + 2 ulps."""
    for value, k, n, d in zip(np.ravel(values), ks, ns, deltas):
        k, n, value = int(k), int(n), float(value)
        tail = mp_cdf_le if upper else mp_cdf_ge
        where = ("upper" if upper else "lower", k, n, d, value)
        at_bound = tail(k, n, mpmath.mpf(value))
        assert at_bound <= d, (*where, float(at_bound / d - 1))
        slack = mpmath.mpf(CP_REL * min(value, 1 - value) + 2 * math.ulp(value))
        inward = mpmath.mpf(value) - slack if upper else mpmath.mpf(value) + slack
        assert tail(k, n, inward) > d, (*where, float(slack))


def test_clopper_pearson_upper_large_n():
    """k ≪ n: the tail I_{1−p}(n−k, k+1) at p ~ k/n needs p itself, not a rounded 1 − p."""
    ks, ns, ds = _cp_grid(side_small=True)
    _check_cp(np.asarray(clopper_pearson_upper(ks, ns, ds)), ks, ns, ds, upper=True)


def test_clopper_pearson_lower_large_n():
    """n − k ≪ n: the mirror image (the mean k/(n+1) is within 1e-9 of 1)."""
    ks, ns, ds = _cp_grid(side_small=False)
    _check_cp(np.asarray(clopper_pearson_lower(ks, ns, ds)), ks, ns, ds, upper=False)


def test_clopper_pearson_host_small_delta_large_n():
    """Host path: δ down to 1e-12 (no rounded 1 − δ) and n up to 1e9 (no rounded 1 − p)."""
    for side in ("upper", "lower"):
        rows = [
            (j if side == "upper" else n - j, n, d)
            for n in [10**3, 10**7, 10**9]
            for j in [0, 1, 7, 100]
            for d in [1e-3, 3e-12, 1e-12]
            if not (side == "lower" and j == 0)  # k = n: exact, no search
        ]
        ks, ns, ds = (np.array(col, dtype=np.float64) for col in zip(*rows))
        values = np.array([clopper_pearson_host(k, n, d, side=side) for k, n, d in rows])
        _check_cp(values, ks, ns, ds, upper=side == "upper")


def test_clopper_pearson_domain_is_checked_and_clamped():
    for call in (clopper_pearson_upper, clopper_pearson_lower):
        with pytest.raises(ValueError, match=r"n=2000000000\.0.*allowed: values in \[1, 1e\+09\]"):
            call(5, 2 * 10**9, 0.05)
        with pytest.raises(ValueError, match=r"n=10\.5 is not an integer count"):
            call(5, 10.5, 0.05)
    with pytest.raises(ValueError, match=r"n=2000000000\.0"):
        clopper_pearson_host(5, 2 * 10**9, 0.05)
    # traced n beyond the domain: the trivial bound (1 upper, 0 lower), never NaN or a guess
    n = jnp.array([1e3, 2e9])
    upper = np.asarray(jax.jit(lambda n: clopper_pearson_upper(5.0, n, 0.05))(n))
    lower = np.asarray(jax.jit(lambda n: clopper_pearson_lower(5.0, n, 0.05))(n))
    assert upper[1] == 1.0 and lower[1] == 0.0
    assert 0.0 < lower[0] < 5e-3 < upper[0] < 1.0


# ---- kl inverses: tiny and subnormal q, c -------------------------------------------------------
TINY_Q = [TINY, 1e-307, 1e-305, 1e-300]
C_OVER_Q = [0.2, 0.3, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 1.5, 2.5]  # roots near p = q/2, 2q
OTHER_C = [1e-300, 1e-12, 1.0]


def _tiny_grid():
    rows = [(q, q * r) for q in TINY_Q for r in C_OVER_Q] + [
        (q, c) for q in TINY_Q for c in OTHER_C
    ]
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


def test_kl_inv_lower_tiny_q():
    """ln(p/q) for p, q ~ 1e-300 is taken of the quotient, not as a difference of two ~−690 logs."""
    q, c = _tiny_grid()
    _check_kl_inv(np.asarray(kl_inv_lower(q, c)), q, c, "lower")


def test_kl_inv_reverse_tiny_p():
    q, c = _tiny_grid()
    _check_kl_inv(np.asarray(kl_inv_reverse(q, c)), q, c, "reverse")


SUBNORMAL_Q = [5e-324, 1e-320, 1e-310, 2e-308]
SUB_C = [0.0, 1e-307, 1e-300, 1e-3, 1.0]
SUBNORMAL_C_CASES = [
    (0.0, 1e-310),
    (1e-300, 1e-310),
    (1e-290, 5e-324),
    (1e-3, 1e-315),
    (0.5, 5e-324),
]


def _subnormal_grid():
    rows = [(q, c) for q in SUBNORMAL_Q for c in SUB_C] + SUBNORMAL_C_CASES
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


def test_kl_inv_subnormal_q_and_c():
    """Subnormal q or c (flushed to 0 by XLA) are rounded outward; eager and jit agree."""
    q, c = _subnormal_grid()
    upper = np.asarray(kl_inv(q, c))
    _check_kl_inv(upper, q, c, "upper")
    _check_kl_inv(np.asarray(kl_inv_lower(q, c)), q, c, "lower")
    # reverse at a subnormal p is the value at p = 2.2e-308: never below the exact value
    reverse = np.asarray(kl_inv_reverse(q, c))
    sub = (q > 0) & (q < TINY)
    np.testing.assert_array_equal(reverse[sub], np.asarray(kl_inv_reverse(TINY, c[sub])))
    _check_kl_inv(reverse, q, c, "reverse", side_only=True)
    with float64_scope():  # keep the float64 subnormals as they are on their way into jit
        jitted = np.asarray(jax.jit(kl_inv)(jnp.asarray(q), jnp.asarray(c)))
    np.testing.assert_array_equal(jitted, upper)


# ---- kl evaluation where XLA's float64 log1p is off ---------------------------------------------
def test_x_minus_log1p_and_binary_kl_relative_accuracy():
    """h(x) = x − ln(1+x) on [−1/2, −1/4] (XLA's log1p: 2.5e-14 relative there), and kl terms
    that land in that range, to ≤ 1e-14 relative (module docstring: ~2e-15)."""
    x = np.linspace(-0.5, -0.25, 41)
    with float64_scope():
        h = np.asarray(x_minus_log1p(jnp.asarray(x)))
    for xi, hi in zip(x, h):
        with mpmath.workdps(60):
            truth = mpmath.mpf(xi) - mpmath.log1p(mpmath.mpf(xi))
        assert abs(hi - truth) <= 1e-14 * truth, (xi, hi, truth)
    q = np.linspace(0.55, 0.75, 21)
    p = q + 0.42 * (1 - q)  # (1 − p)/(1 − q) − 1 = −0.42
    values = np.asarray(binary_kl(q, p))
    for qi, pi, vi in zip(q, p, values):
        with mpmath.workdps(60):
            truth = mp_kl(mpmath.mpf(qi), mpmath.mpf(pi))
        assert abs(vi - truth) <= 1e-14 * truth, (qi, pi, vi, truth)


# ---- the Pinsker-form bound ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "emp, kl, n, delta",
    [
        (0.0, 0.0, 1, 0.5),
        (0.05, 3.0, 1000, 0.05),
        (0.2, 1e4, 10**9, 1e-12),
        (1 - 1e-9, 1.0, 10**9, 1e-12),
    ],
)
def test_pinsker_bound_is_the_pinsker_form_of_the_kl_bound(emp, kl, n, delta):
    """L̂ + √((KL + ln(2√n/δ))/(2n)), never below it or below the kl bound, within 1e-10."""
    value = float(pinsker_bound(emp, kl, n, delta))
    with mpmath.workdps(60):
        b = mpmath.mpf(kl) + mpmath.log(2 * mpmath.sqrt(n) / mpmath.mpf(delta))
        truth = min(mpmath.mpf(1), mpmath.mpf(emp) + mpmath.sqrt(b / (2 * n)))
    assert mpmath.mpf(value) >= truth and value - truth <= 1e-10 * truth, (value, truth)
    assert value >= float(maurer_bound(emp, kl, n, delta))
