"""Float64 special functions the bounds are built from: Maurer's ξ(n), the incomplete beta.

``ξ(n) = Σ_k C(n,k)(k/n)^k(1−k/n)^(n−k)`` (:func:`log_xi`, :func:`xi`; the usual relaxation
``2√n`` is :func:`xi_relaxed`) enters the kl bounds of :mod:`difftrade.theory.pac_bayes`.
``I_x(a, b)`` (:func:`regularized_incomplete_beta`) gives the binomial tails that
:mod:`difftrade.theory.clopper_pearson` inverts. Both are written with Stirling-series remainders
(``_STIRLING``) and the cancellation-free kl of :mod:`difftrade.theory.kl_inverse`, so no large
logs cancel. Float64 scope and input checks: see :mod:`difftrade.theory.float64`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from difftrade.theory.float64 import ArrayLike, as_float64, check_n, float64_scope
from difftrade.theory.kl_inverse import kl_of_masses, x_minus_log1p_xp

# ---- ξ(n) ------------------------------------------------------------------------------------
_STIRLING = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156)
_XI_ASYMPTOTIC_FROM = 10**10


def _stirling_remainder(m: np.ndarray) -> np.ndarray:
    """``r(m) = ln m! − (m ln m − m + ½ ln(2πm))`` for integers m ≥ 1, absolute error ~1e-16."""
    from scipy.special import gammaln

    m = np.asarray(m, dtype=np.float64)
    big = m >= 10
    mb = np.where(big, m, 10.0)
    inv2 = 1.0 / (mb * mb)
    series = np.zeros_like(mb)
    for coef in reversed(_STIRLING):
        series = series * inv2 + coef
    series /= mb
    ms = np.where(big, 1.0, m)
    direct = gammaln(ms + 1) - (ms * np.log(ms) - ms + 0.5 * np.log(2 * np.pi * ms))
    return np.where(big, series, direct)


def log_xi(n: int) -> float:
    """``ln ξ(n)``, ``ξ(n) = Σ_{k=0}^n C(n,k)(k/n)^k(1−k/n)^(n−k)`` (Maurer's constant), host float.

    Computed through the Abel-type identity ``ξ(n) = Σ_{k=0}^n n!/((n−k)! n^k) = 1 + Q(n)``
    (Ramanujan's Q), whose terms ``T_k = Π_{j<k}(1 − j/n) ≤ exp(−k(k−1)/(2n))`` decay fast: the sum
    stops at ``K ≈ √(160 n)`` and adds the tail bound ``(n−K)·exp(−K(K+1)/(2n))`` (so the value is
    never below the exact one). Each ``ln T_k = −n·g(k/n) − ½ ln(1−k/n) + r(n) − r(n−k)`` with
    ``g(x) = (1−x)·h(x/(1−x))`` and Stirling remainders ``r``: no large cancelling logs, so the
    result is accurate to ~1e-14 relative for any n. For ``n > 1e10`` the asymptotic expansion
    ``√(πn/2) + 2/3 + √(π/(2n))/12`` is used (it over-estimates: the next term is −4/(135n)).
    ``√n ≤ ξ(n) ≤ 2√n``.
    """
    if isinstance(n, bool) or not float(n).is_integer() or n < 1:
        raise ValueError(f"n={n!r} is not allowed; allowed: an integer >= 1")
    return _log_xi_cached(int(n))


@functools.lru_cache(maxsize=4096)
def _log_xi_cached(n: int) -> float:
    if n > _XI_ASYMPTOTIC_FROM:
        return math.log(math.sqrt(math.pi * n / 2) + 2 / 3 + math.sqrt(math.pi / (2 * n)) / 12)
    big_k = min(n, math.ceil(math.sqrt(160.0 * n)) + 2)
    last = min(big_k, n - 1)
    log_terms = [np.zeros(1)]  # T_0 = 1
    if last >= 1:
        k = np.arange(1, last + 1, dtype=np.float64)
        x = k / n
        g = (1.0 - x) * x_minus_log1p_xp(x / (1.0 - x), np)
        log_t = (
            -n * g
            - 0.5 * np.log1p(-x)
            + _stirling_remainder(np.array(n))
            - _stirling_remainder(n - k)
        )
        log_t[0] = 0.0  # T_1 = 1 exactly
        log_terms.append(log_t)
        if big_k >= n:  # T_n = T_{n−1} / n
            log_terms.append(np.array([log_t[-1] - math.log(n)]))
    elif n == 1:
        log_terms.append(np.zeros(1))  # T_1 = 1
    log_t = np.concatenate(log_terms)
    top = log_t.max()
    total = math.fsum(np.exp(log_t - top).tolist())
    if big_k < n:
        total += (n - big_k) * math.exp(-big_k * (big_k + 1) / (2.0 * n) - top)
    return top + math.log(total)


def xi(n: int) -> float:
    """Maurer's ``ξ(n)`` (see :func:`log_xi`), host float; ``√n ≤ ξ(n) ≤ 2√n``."""
    return math.exp(log_xi(n))


def xi_relaxed(n: ArrayLike) -> jax.Array:
    """The usual relaxation ``2√n ≥ ξ(n)``, float64, vmappable."""
    check_n("n", n)
    with float64_scope():
        return 2.0 * jnp.sqrt(as_float64(n)[0])


# ---- regularized incomplete beta ------------------------------------------------------------
_TINY = 1e-300


def _lgamma_remainder(z: jax.Array) -> jax.Array:
    """``r(z) = ln Γ(z) − [(z − ½) ln z − z + ½ ln 2π]`` for z > 0 (Stirling series for z ≥ 10)."""
    big = z >= 10.0
    zb = jnp.where(big, z, 10.0)
    inv2 = 1.0 / (zb * zb)
    series = jnp.zeros_like(zb)
    for coef in reversed(_STIRLING):
        series = series * inv2 + coef
    zs = jnp.where(big, 1.0, z)
    direct = lax.lgamma(zs) - ((zs - 0.5) * jnp.log(zs) - zs + 0.5 * math.log(2 * math.pi))
    return jnp.where(big, series / zb, direct)


def _log_beta_prefactor(a: jax.Array, b: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """``ln[x^a y^b / B(a, b)]`` (``y = 1 − x`` given separately) without large cancelling terms.

    With ``x₀ = a/(a+b)``, ``y₀ = b/(a+b)`` it equals
    ``−(a+b)·kl(x₀‖x) + ½ ln(ab/(2π(a+b))) − r(a) − r(b) + r(a+b)`` (Stirling remainders r);
    kl is evaluated by :func:`kl_of_masses`, so the error stays ~1e-14 relative even for
    ``a, b ~ 1e9`` and ``x`` within 1e-9 of 1. Elementwise, broadcastable.
    """
    x0, y0 = a / (a + b), b / (a + b)
    return (
        -(a + b) * kl_of_masses(x0, y0, x, y)
        + 0.5 * (jnp.log(a) + jnp.log(b) - jnp.log(a + b) - math.log(2 * math.pi))
        - _lgamma_remainder(a)
        - _lgamma_remainder(b)
        + _lgamma_remainder(a + b)
    )


def _beta_continued_fraction(
    a: jax.Array,
    b: jax.Array,
    x: jax.Array,
    y: jax.Array,
    active: jax.Array,
    max_iter: int = 100_000,
) -> jax.Array:
    """Continued fraction of I_x(a, b) (modified Lentz), ``y = 1 − x`` given separately.

    Each ``active`` entry stops (is frozen) once its update factor is within 4e-16 of 1; the loop
    runs until all have; NaN if ``max_iter`` is hit (inactive entries: unspecified values). The
    leading denominator ``1 − (a+b)x/(a+1)`` cancels near the mean; it is formed as
    ``((a+b)y − (b−1))/(a+1)`` when ``y < x`` (``y`` is the exact one there).
    Needs ~O(√max(a, b)) steps near the mean (~10⁴ for a, b ~ 1e8). Elementwise, broadcastable.
    """
    qab, qap, qam = a + b, a + 1.0, a - 1.0

    def fix(v):
        return jnp.where(jnp.abs(v) < _TINY, _TINY, v)

    def cond(state):
        m, _, _, _, done = state
        return (m <= max_iter) & ~jnp.all(done)

    def body(state):
        m, c, d, h, done = state
        m2 = 2.0 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 / fix(1.0 + aa * d)
        c = fix(1.0 + aa / c)
        step = d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 / fix(1.0 + aa * d)
        c = fix(1.0 + aa / c)
        delta = d * c
        h = jnp.where(done, h, h * step * delta)
        return m + 1.0, c, d, h, done | (jnp.abs(delta - 1.0) <= 4e-16)

    lead = jnp.where(x <= y, 1.0 - qab * x / qap, (qab * y - (b - 1.0)) / qap)
    d0 = 1.0 / fix(lead)
    init = (jnp.ones((), x.dtype), jnp.ones_like(x), d0, d0, ~active)
    _, _, _, h, done = lax.while_loop(cond, body, init)
    return jnp.where(done, h, jnp.nan)


#: largest integer b for which I_x(a, b), x > 1/2, is summed as a finite binomial series
#: (:func:`_beta_binomial_series`, ≤ ~9√b terms) instead of by the continued fraction, whose
#: rounding errors grow like ~a·1e-16/√b there (≤ 1e-10 for b > 1e7 and a ≤ 1e9)
_SERIES_MAX_B: float = 1e7


def _beta_binomial_series(
    a: jax.Array,
    b: jax.Array,
    x: jax.Array,
    y: jax.Array,
    active: jax.Array,
    max_iter: int = 100_000,
) -> jax.Array:
    """``Σ_j T_j/T_0`` for integer ``b``: ``I_x(a, b) = T_0 · Σ_{j=0}^{b−1} T_j/T_0``.

    ``T_j = Γ(a+b)/(Γ(a+1+j) Γ(b−j)) x^{a+j} y^{b−1−j}`` (the binomial terms of
    ``P(Bin(a+b−1, y) ≤ b−1)``), ``T_{j+1}/T_j = (b−1−j)x/((a+1+j)y)``: positive terms, no
    cancellation, and ``x`` enters only as a factor, so a rounded ``x = 1 − y`` costs one ulp.
    Below the mean (``y > (b+1)/(a+b+2)``) the ratios are < 1 and shrink: ≤ ~9√b terms to 2⁻⁶⁰.
    Each ``active`` entry stops once its term is below 2⁻⁶⁰ of the sum (or ends at ``j = b−1``);
    NaN if ``max_iter`` is hit. Elementwise, broadcastable.
    """

    def cond(state):
        j, _, _, done = state
        return (j < max_iter) & ~jnp.all(done)

    def body(state):
        j, term, total, done = state
        term = jnp.where(done, term, term * (b - 1.0 - j) * x / ((a + 1.0 + j) * y))
        total = jnp.where(done, total, total + term)
        return j + 1.0, term, total, done | (term <= 2.0**-60 * total)

    ones = jnp.ones_like(x)
    _, _, total, done = lax.while_loop(cond, body, (jnp.zeros((), x.dtype), ones, ones, ~active))
    return jnp.where(done, total, jnp.nan)


def regularized_incomplete_beta(
    a: jax.Array, b: jax.Array, x: jax.Array, y: jax.Array | None = None
) -> jax.Array:
    """``I_x(a, b)`` for a, b > 0, x ∈ [0, 1], float64 (call inside :func:`float64_scope`).

    ``y = 1 − x`` (default: computed). Pass it when it is known more precisely than ``1 − x``
    rounds, i.e. for ``x`` near 1: ``I_{1−p}(n−k, k+1)`` at ``p ~ 1e-8`` needs ``y = p`` exactly,
    since rounding ``1 − p`` moves p by ~1e-16 and the tail by ~n·1e-16 relative.

    A self-contained replacement for ``jax.scipy.special.betainc``, which (i) loses up to ~1e-8
    relative accuracy for arguments ~1e6 and (ii) cannot be lowered inside a float64 scope under
    an outer ``jit`` (its lowering re-traces with the global dtype). Evaluated on the side of the
    mean where the expansions converge fast (``I_x(a, b) = 1 − I_y(b, a)``), as prefactor
    (:func:`_log_beta_prefactor`) times the modified Lentz continued fraction or, where the
    variable exceeds 1/2 and b is an integer ≤ 1e7, the finite binomial series
    (:func:`_beta_binomial_series`; there the fraction's rounding errors grow like a·1e-16/√b).
    Relative error ≤ ~1e-10 for a + b ≤ 1e9 (tested against mpmath through the binomial tails).
    Elementwise, broadcastable.
    """
    if y is None:
        y = 1.0 - x
    direct = jnp.where(x <= y, x * (a + b + 2.0) < a + 1.0, y * (a + b + 2.0) > b + 1.0)
    xs, ys = jnp.where(direct, x, y), jnp.where(direct, y, x)
    as_, bs = jnp.where(direct, a, b), jnp.where(direct, b, a)
    series = (xs > 0.5) & (bs == jnp.floor(bs)) & (bs <= _SERIES_MAX_B)
    ys_safe = jnp.where(ys > 0, ys, 1.0)
    fraction = _beta_continued_fraction(as_, bs, xs, ys, ~series)
    summed = _beta_binomial_series(as_, bs, xs, ys_safe, series) / ys_safe
    prefactor = jnp.exp(_log_beta_prefactor(as_, bs, xs, ys)) / as_
    value = prefactor * jnp.where(series, summed, fraction)
    return jnp.where(direct, value, 1.0 - value)
