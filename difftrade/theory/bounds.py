"""PAC-Bayes bounds, binary kl and its inverses, test-set bounds. Exact and conservative.

Notation: loss in [0, 1]; ``emp_risk`` = L̂, the empirical risk of the Gibbs
predictor Q on ``n`` examples that never influenced the prior; ``kl`` = KL(Q‖P);
``kl(q‖p) = q ln(q/p) + (1−q) ln((1−q)/(1−p))`` the binary KL;
``kl⁻¹(q, c) = sup{p ∈ [q, 1] : kl(q‖p) ≤ c}``; ``B = KL + ln(ξ/δ)`` with ``ξ = 2√n`` (the usual
relaxation, default) or the exact ``ξ(n) = Σ_k C(n,k)(k/n)^k(1−k/n)^(n−k)``.

**Float64 mechanism (one rule for the whole of ``difftrade.theory``).** Every public function
runs its arithmetic inside :func:`float64_scope` (``jax.enable_x64(True)`` as a context
manager), casts its inputs to float64 and returns float64 ``jax.Array`` s. The global
``jax_enable_x64`` flag is never touched, so a float32 training program is unaffected; the
functions can be called eagerly, under ``jax.jit``, ``jax.vmap`` and ``jax.grad`` in a float32
program and still compute in float64. Outputs stay float64 if used directly (convert with
``np.asarray`` for reporting); arithmetic on them *outside* an x64 scope is canonicalised to
float32 by JAX, so do bound arithmetic through these functions.

**Conservative inverses.** ``kl⁻¹`` is found by bisection over the ordered bit patterns of
float64, so the final bracket is two adjacent floats (relative width 2⁻⁵²). The membership test
is ``kl(q‖p) ≤ c·(1 + 1e-13)``, a margin far above the error of the (cancellation-free) ``kl``
evaluation (~2e-15 relative at worst, for masses down to 2.2e-308), and the *upper*
end of the bracket is returned by :func:`kl_inv` (the *lower* end by :func:`kl_inv_lower`).
Hence the float64 upper inverse is never below the exact one and exceeds it by at most ~1e-13
relative (the lower inverse: never above, and below by at most ~(c/q)·1e-13 ≤ 1e-10 while the
result is a normal float). XLA flushes subnormal floats (below 2.2e-308) to zero, so subnormal
``q`` and ``c`` are first rounded in the direction that can only move the result outward (q up to
2.2e-308 for the upper inverses, down to 0 for the lower one; c up), and a result below 2.2e-308
is reported as that float or above (upper inverse) or as 0 (lower inverse). With subnormal
inputs the results stay conservative and within 1e-10 relative or 1e-297 absolute of the exact
value, except :func:`kl_inv_reverse` at a subnormal ``p``, which is its value at p = 2.2e-308
(never below the exact one, but not tight: kl(x‖p) depends on ln p).

**Bad input.** Concrete inputs (Python numbers, numpy arrays, concrete jax arrays) are checked
on the host: a probability outside [0, 1], a negative KL, ``n < 1``, ``δ ∉ (0, 1)`` raise a
``ValueError`` naming the field, the value and what is allowed. Traced inputs cannot be checked
on the host: out-of-domain entries give NaN in the corresponding output entries.

Every bound is an elementwise function of broadcastable array inputs, vmappable, and clipped
to [0, 1] (a trivially valid range for a [0, 1] loss).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

ArrayLike = Any  # float | np.ndarray | jax.Array (kept loose: accepts tracers)

#: relative margin in the kl⁻¹ membership test (see module docstring); the computed kl is
#: accurate to ~2e-15 relative at worst
KL_INV_REL_MARGIN: float = 1e-13
#: relative margin in the Clopper–Pearson tail tests (covers the incomplete beta's error, ≤ ~1e-10
#: relative for n ≤ 1e9 on the JAX path, ≤ 2e-11 for scipy's on the host path)
BETAINC_REL_MARGIN: float = 1e-9
XiMode = Literal["relaxed", "exact"]


# ---- float64 scope and input checks -----------------------------------------------------------
def float64_scope() -> contextlib.AbstractContextManager:
    """Context manager under which JAX creates float64/int64 arrays, without touching the global flag.

    ``jax.enable_x64(True)`` on new JAX, ``jax.experimental.enable_x64(True)`` on older releases.
    """
    enable = getattr(jax, "enable_x64", None)
    if enable is None:  # jax < 0.6
        from jax.experimental import enable_x64 as enable  # type: ignore[no-redef]
    return enable(True)


def _host_value(x: ArrayLike) -> np.ndarray | None:
    """``x`` as a float64 numpy array if its value is known on the host, else None (a tracer)."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x, dtype=np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError, TypeError):
        return None


def check_range(
    field: str,
    x: ArrayLike,
    lo: float = -math.inf,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    """Raise ``ValueError`` if a host-known ``x`` has an entry outside the interval (or NaN).

    Tracers pass unchecked (the numeric functions return NaN for their bad entries).
    """
    v = _host_value(x)
    if v is None:
        return
    bad = np.isnan(v) | (v < lo) | (v > hi)
    if lo_open:
        bad |= v == lo
    if hi_open:
        bad |= v == hi
    if np.any(bad):
        first = float(v[bad].flat[0]) if v.ndim else float(v)
        where = "" if v.ndim == 0 else f" ({int(bad.sum())} of {v.size} entries bad, first shown)"
        interval = ("(" if lo_open else "[") + f"{lo:g}, {hi:g}" + (")" if hi_open else "]")
        raise ValueError(f"{field}={first!r}{where} is out of range; allowed: values in {interval}")


def _f64(*xs: ArrayLike) -> list[jax.Array]:
    """Cast to float64 (call inside :func:`float64_scope`)."""
    return [jnp.asarray(x, dtype=jnp.float64) for x in xs]


def _check_risk(field: str, x: ArrayLike) -> None:
    check_range(field, x, 0.0, 1.0)


def _check_delta(field: str, x: ArrayLike) -> None:
    check_range(field, x, 0.0, 1.0, lo_open=True, hi_open=True)


def _check_kl(field: str, x: ArrayLike) -> None:
    check_range(field, x, 0.0, math.inf)


def _check_n(field: str, x: ArrayLike) -> None:
    check_range(field, x, 1.0, math.inf)


# ---- accurate kl -----------------------------------------------------------------------------
def _x_minus_log1p(x, xp):
    small = xp.abs(x) < 0.25
    xs = xp.where(small, x, 0.0)
    u = xs / (2.0 + xs)
    v = u * u
    series = xp.zeros_like(v)
    for j in reversed(range(12)):
        series = series * v + 1.0 / (2 * j + 3)
    h_small = 2.0 * v / (1.0 - u) - 2.0 * u * v * series
    xl = xp.where(small, 1.0, x)
    # ln(1+x) as log(1 + x) for x < 0 (1 + x is then rounded by ≤ 2⁻⁵⁴, ~2e-16 of the log):
    # XLA's float64 log1p is off by up to 2.5e-14 relative on [−1/2, −1/4]
    log1p_xl = xp.where(xl < 0, xp.log(1.0 + xl), xp.log1p(xl))
    return xp.where(small, h_small, xl - log1p_xl)


def x_minus_log1p(x: jax.Array) -> jax.Array:
    """``h(x) = x − ln(1 + x) ≥ 0`` for ``x ≥ −1``, accurate to a few ulps *relative* everywhere.

    For ``|x| < 1/4`` the cancellation is removed with ``u = x/(2+x)``, ``ln(1+x) = 2 atanh u``:
    ``h = 2u²/(1−u) − 2u³ Σ_j u^{2j}/(2j+3)`` (``|u| ≤ 1/7``: 12 terms reach 1e-20).
    Elsewhere the direct formula loses at most a factor ~10 to cancellation (~2e-15 relative at
    worst; ``ln(1+x)`` is taken as ``log(1 + x)`` for ``x < 0``). ``h(−1) = +inf``.
    Call inside :func:`float64_scope` for float64 accuracy. Elementwise, any shape.
    """
    return _x_minus_log1p(x, jnp)


def _generalised_kl(a: jax.Array, b_minus_a: jax.Array, b: jax.Array) -> jax.Array:
    """``a ln(a/b) − a + b ≥ 0`` for masses ``a, b ≥ 0``, without cancellation. Elementwise.

    Equals ``a·h((b−a)/a)`` with ``h`` from :func:`x_minus_log1p` while ``b > a/2``. Farther
    below (``b ≤ a/2``) it is ``(b − a) − a·ln(b/a)`` with the log taken of the *quotient*
    ``b/a`` (relative error ≤ 1 ulp, so ``ln(b/a)`` is exact to ~1e-16 absolute); the difference
    ``ln b − ln a`` would lose ~1e-13 absolute for masses near the bottom of the float range
    (``|ln b| ≈ 700``). ``b − a`` is passed in so the caller forms it without cancellation.
    ``a = 0`` gives ``b``; ``b = 0 < a`` gives inf.
    """
    a_pos = a > 0
    a_safe = jnp.where(a_pos, a, 1.0)
    x = b_minus_a / a_safe
    far_below = x <= -0.5  # b ≤ a/2: x + 1 would lose digits, so use the quotient's log
    log_ratio = jnp.where(a_pos & far_below, jnp.log(jnp.where(far_below, b, 0.5) / a_safe), -1.0)
    direct = b_minus_a - a_safe * log_ratio
    near = a_safe * x_minus_log1p(jnp.where(far_below, 0.0, x))
    return jnp.where(a_pos, jnp.where(far_below, direct, near), b_minus_a)


def _binary_kl(q: jax.Array, p: jax.Array) -> jax.Array:
    """Unchecked binary kl(q‖p) in the dtype of the inputs (float64 inside the scope)."""
    d = p - q
    return _generalised_kl(q, d, p) + _generalised_kl(1.0 - q, -d, 1.0 - p)


def _kl_of_masses(x0: jax.Array, y0: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """kl(x0‖x) for two-point masses ``(x0, y0)``, ``(x, y)`` each given with its complement.

    ``x0 + y0 = x + y = 1`` in exact arithmetic; nothing is recomputed as ``1 − ·``, so a mass
    near 1 whose complement is tiny (``y = p ~ 1e-8``, ``x = 1 − p`` rounded) keeps the
    complement's full relative precision. The step ``x − x0 = y0 − y`` is formed from the
    smaller pair (the exact one). Elementwise, broadcastable.
    """
    d = jnp.where(x <= y, x - x0, y0 - y)
    return _generalised_kl(x0, d, x) + _generalised_kl(y0, -d, y)


def binary_kl(q: ArrayLike, p: ArrayLike) -> jax.Array:
    """Binary KL divergence ``kl(q‖p) = q ln(q/p) + (1−q) ln((1−q)/(1−p))``, float64.

    Written as a sum of two non-negative terms ``a·h((b−a)/a)`` so that the result has small
    *relative* error even when ``p ≈ q`` (where ``kl ≈ (p−q)²/(2p(1−p))``). Conventions:
    ``0 ln 0 = 0``; ``kl(q‖p) = +inf`` when ``p ∈ {0, 1}`` and ``q ≠ p``.

    Args: ``q``, ``p``: broadcastable arrays in [0, 1]. Returns: the broadcast shape.
    """
    _check_risk("q", q)
    _check_risk("p", p)
    with float64_scope():
        q, p = _f64(q, p)
        ok = (q >= 0) & (q <= 1) & (p >= 0) & (p <= 1)
        qs, ps = jnp.where(ok, q, 0.5), jnp.where(ok, p, 0.5)
        return jnp.where(ok, _binary_kl(qs, ps), jnp.nan)


# ---- kl inverses (bisection on float64 bit patterns) ------------------------------------------
def _bits(x: jax.Array) -> jax.Array:
    return lax.bitcast_convert_type(jnp.where(x == 0, 0.0, x), jnp.int64)  # -0.0 → +0.0


def _from_bits(b: jax.Array) -> jax.Array:
    return lax.bitcast_convert_type(b, jnp.float64)


_SMALLEST_NORMAL: float = float(np.finfo(np.float64).tiny)  # 2⁻¹⁰²² ≈ 2.2e-308
_SMALLEST_NORMAL_BITS: int = int(np.float64(_SMALLEST_NORMAL).view(np.int64))


def _round_subnormal(x: jax.Array, up: bool) -> jax.Array:
    """``x`` with its positive subnormal entries replaced by the smallest normal float (``up``)
    or by 0. Elementwise, any shape.

    XLA flushes subnormal operands to zero, always downwards, whichever direction is the safe
    one for the caller. The entries are found by bit pattern (``0 < bits < bits(2⁻¹⁰²²)``),
    which flushing does not touch, so the replacement works eagerly and under ``jit``.
    """
    b = lax.bitcast_convert_type(x, jnp.int64)
    subnormal = (b > 0) & (b < _SMALLEST_NORMAL_BITS)
    return jnp.where(subnormal, _SMALLEST_NORMAL if up else 0.0, x)


def _kl_inv_search(q: jax.Array, c: jax.Array, upper: bool, reverse: bool = False) -> jax.Array:
    """Bisection over the float64 bit patterns of [q, 1] (upper) or [0, q] (lower): 64 steps.

    Solves kl(q‖x) ≤ c for x, or kl(x‖q) ≤ c with ``reverse`` (both grow as x leaves q). The
    result is nondecreasing in q and (upper) nondecreasing / (lower) nonincreasing in c, so
    subnormal inputs are first rounded the way that can only move the result outward: q up to
    the smallest normal float (upper, reverse) or down to 0 (lower), c up.
    """
    q = _round_subnormal(q, up=upper)
    c = _round_subnormal(c, up=True)
    c_test = c * (1.0 + KL_INV_REL_MARGIN)
    kl_at = (lambda x: _binary_kl(x, q)) if reverse else (lambda x: _binary_kl(q, x))
    end = jnp.full_like(q, 1.0 if upper else 0.0)
    end_inside = kl_at(end) <= c_test
    inside_b, outside_b = _bits(q), _bits(end)

    def step(_, carry):
        inside_b, outside_b = carry
        lo, hi = (inside_b, outside_b) if upper else (outside_b, inside_b)
        mid = lo + (hi - lo) // 2
        inside = kl_at(_from_bits(mid)) <= c_test
        return jnp.where(inside, mid, inside_b), jnp.where(inside, outside_b, mid)

    inside_b, outside_b = lax.fori_loop(0, 64, step, (inside_b, outside_b))
    p = _from_bits(outside_b)
    if not upper:  # XLA may flush subnormals to zero inside kl: never report one as a lower end
        p = jnp.where(p < _SMALLEST_NORMAL, 0.0, p)
    return jnp.where(end_inside, end, p)


def _implicit_partials(q: jax.Array, p: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Partials ``(∂p/∂q, ∂p/∂c)`` of p(q, c) defined by kl(q‖p) = c (implicit function theorem).

    ``∂p/∂c = 1/∂_p kl`` and ``∂p/∂q = −∂_q kl/∂_p kl`` with ``∂_p kl = (p−q)/(p(1−p))``,
    ``∂_q kl = ln(q/p) − ln((1−q)/(1−p))``. At a saturated end (p ∈ {0, 1}) both are 0; at
    c = 0 (p = q) they are 1 and +inf (the inverse grows like √c).
    """
    interior = (p > 0) & (p < 1) & (p != q)
    ps = jnp.where(interior, p, 0.5)
    qs = jnp.where(interior, q, 0.25)
    dkl_dp = (ps - qs) / (ps * (1.0 - ps))
    d = ps - qs
    # ∂_q kl = −ln(p/q) + ln((1−p)/(1−q)); log1p of the relative step when it is small (p ≈ q)
    rel_p = d / jnp.where(qs > 0, qs, 1.0)
    rel_1mp = -d / (1.0 - qs)
    log_p_over_q = jnp.where(jnp.abs(rel_p) < 0.5, jnp.log1p(rel_p), jnp.log(ps) - jnp.log(qs))
    log_1mp_over_1mq = jnp.where(
        jnp.abs(rel_1mp) < 0.5, jnp.log1p(rel_1mp), jnp.log1p(-ps) - jnp.log1p(-qs)
    )
    dkl_dq = jnp.where(qs > 0, -log_p_over_q, -jnp.inf) + log_1mp_over_1mq
    saturated = (p <= 0) | (p >= 1)
    dp_dq = jnp.where(interior, -dkl_dq / dkl_dp, jnp.where(saturated, 0.0, 1.0))
    dp_dc = jnp.where(interior, 1.0 / dkl_dp, jnp.where(saturated, 0.0, jnp.inf))
    return dp_dq, dp_dc


def _tangent(q, p, q_dot, c_dot):
    dp_dq, dp_dc = _implicit_partials(q, p)
    out = jnp.zeros_like(p)
    if not isinstance(q_dot, SymbolicZero):  # skip: avoids 0·inf where only c is differentiated
        out = out + dp_dq * q_dot
    if not isinstance(c_dot, SymbolicZero):
        out = out + dp_dc * c_dot
    return out


@jax.custom_jvp
def _kl_inv_upper(q, c):
    return _kl_inv_search(q, c, upper=True)


@jax.custom_jvp
def _kl_inv_lower(q, c):
    return _kl_inv_search(q, c, upper=False)


@partial(_kl_inv_upper.defjvp, symbolic_zeros=True)
def _kl_inv_upper_jvp(primals, tangents):
    (q, c), (q_dot, c_dot) = primals, tangents
    p = _kl_inv_upper(q, c)
    return p, _tangent(q, p, q_dot, c_dot)


@partial(_kl_inv_lower.defjvp, symbolic_zeros=True)
def _kl_inv_lower_jvp(primals, tangents):
    (q, c), (q_dot, c_dot) = primals, tangents
    p = _kl_inv_lower(q, c)
    return p, _tangent(q, p, q_dot, c_dot)


# Jitted entry points: an eager call then compiles the 64-step loop once per shape/dtype instead
# of on every call; under an outer jit they are simply inlined.
_kl_inv_upper_jit = jax.jit(_kl_inv_upper)
_kl_inv_lower_jit = jax.jit(_kl_inv_lower)
_kl_inv_reverse_jit = jax.jit(partial(_kl_inv_search, upper=True, reverse=True))


def _kl_inv(q: ArrayLike, c: ArrayLike, upper: bool, reverse: bool = False) -> jax.Array:
    _check_risk("q", q)
    check_range("c", c, 0.0, math.inf)
    with float64_scope():
        q, c = jnp.broadcast_arrays(*_f64(q, c))
        ok = (q >= 0) & (q <= 1) & (c >= 0)
        qs, cs = jnp.where(ok, q, 0.5), jnp.where(ok, c, 0.0)
        if reverse:
            p = _kl_inv_reverse_jit(qs, cs)
        else:
            p = _kl_inv_upper_jit(qs, cs) if upper else _kl_inv_lower_jit(qs, cs)
        return jnp.where(ok, p, jnp.nan)


def kl_inv(q: ArrayLike, c: ArrayLike) -> jax.Array:
    """Upper kl inverse ``kl⁻¹(q, c) = sup{p ∈ [q, 1] : kl(q‖p) ≤ c}``, float64, conservative.

    Bisection over float64 bit patterns to a bracket of two adjacent floats; returns the upper
    end, so the result is ≥ the exact value and within ~1e-13 relative of it (or 1e-297
    absolute; subnormal ``q``, ``c`` are rounded up, see the module docstring). ``c = +inf`` or
    ``q = 1`` give 1. Closed form for checking: ``kl⁻¹(0, c) = 1 − e^(−c)``.
    Differentiable in ``q`` and ``c`` by implicit differentiation (``jax.custom_jvp``).

    Args: ``q`` in [0, 1], ``c ≥ 0``, broadcastable. Returns: the broadcast shape (NaN where a
    traced input is out of domain).
    """
    return _kl_inv(q, c, upper=True)


def kl_inv_reverse(p: ArrayLike, c: ArrayLike) -> jax.Array:
    """Upper inverse in the *first* argument: ``sup{q ∈ [p, 1] : kl(q‖p) ≤ c}``, float64, conservative.

    What a bound of the form ``kl(R‖p) ≤ c`` (data processing with p known) gives for R; not
    :func:`kl_inv`, which inverts ``kl(p‖q) ≤ c`` (they differ: kl is not symmetric). ``p = 0``
    gives 0 (to the smallest normal float) for every finite c, since kl(q‖0) = ∞ for q > 0;
    ``kl(1‖p) = −ln p``, so c ≥ −ln p gives 1. Same bisection, bracket and margin as
    :func:`kl_inv` (never below the exact value, within ~1e-13 relative); a subnormal ``p`` is
    rounded up to 2.2e-308 (still never below, not tight). No custom gradient.
    """
    return _kl_inv(p, c, upper=True, reverse=True)


def kl_inv_lower(q: ArrayLike, c: ArrayLike) -> jax.Array:
    """Lower kl inverse ``inf{p ∈ [0, q] : kl(q‖p) ≤ c}``, float64; returns the bracket's LOWER end.

    Never above the exact value (within ~(c/q)·1e-13 ≤ 1e-10 relative, or 1e-297 absolute);
    a subnormal ``q`` is rounded down to 0, a subnormal ``c`` up. ``q = 0`` or ``c = +inf``
    give 0. Same shapes, checks and gradients as :func:`kl_inv`.
    """
    return _kl_inv(q, c, upper=False)


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
        g = (1.0 - x) * _x_minus_log1p(x / (1.0 - x), np)
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
    _check_n("n", n)
    with float64_scope():
        return 2.0 * jnp.sqrt(_f64(n)[0])


def _log_xi_term(n: ArrayLike, mode: XiMode) -> jax.Array:
    """``ln ξ`` as a float64 array: ``ln 2√n`` (traceable) or exact (``n`` must be host-known)."""
    if mode == "relaxed":
        return jnp.log(2.0) + 0.5 * jnp.log(jnp.asarray(n, dtype=jnp.float64))
    if mode == "exact":
        v = _host_value(n)
        if v is None:
            raise ValueError(
                "xi='exact' needs a host-known n (it was traced); allowed: xi='relaxed' under jit/vmap"
            )
        return jnp.asarray(np.vectorize(log_xi, otypes=[np.float64])(v), dtype=jnp.float64)
    raise ValueError(f"xi={mode!r} is unknown; allowed: 'relaxed' (2√n) or 'exact'")


def argmin(x: jax.Array, axis: int = -1) -> jax.Array:
    """First index of the minimum along ``axis`` (NaN entries ignored), int32.

    Use this instead of ``jnp.argmin`` inside :func:`float64_scope`: ``jnp.argmin``'s lowering
    re-traces with the global dtype and fails on float64 under an outer ``jax.jit``.
    """
    x = jnp.where(jnp.isnan(x), jnp.inf, x)
    smallest = jnp.min(x, axis=axis, keepdims=True)
    index = lax.broadcasted_iota(jnp.int32, x.shape, axis % x.ndim)
    first = jnp.min(jnp.where(x == smallest, index, x.shape[axis]), axis=axis)
    return jnp.minimum(first, x.shape[axis] - 1)


def _bound_inputs(emp_risk, kl, n, delta):
    _check_risk("emp_risk", emp_risk)
    _check_kl("kl", kl)
    _check_n("n", n)
    _check_delta("delta", delta)


def _domain_ok(emp_risk, kl, n, delta):
    return (emp_risk >= 0) & (emp_risk <= 1) & (kl >= 0) & (n >= 1) & (delta > 0) & (delta < 1)


def _complexity(emp_risk, kl, n, delta, mode: XiMode):
    """float64 (L̂, KL, n, δ, B = KL + ln(ξ/δ), ok-mask), inside the scope."""
    log_xi_n = _log_xi_term(n, mode)
    emp_risk, kl, n, delta = _f64(emp_risk, kl, n, delta)
    ok = _domain_ok(emp_risk, kl, n, delta)
    b = kl + log_xi_n - jnp.log(delta)
    return emp_risk, kl, n, delta, b, ok


#: closed-form bounds are multiplied by this so float64 rounding (a few ulps) never lands below
#: the exact value; the excess (1e-14 relative) is far inside the 1e-10 accuracy target.
CLOSED_FORM_ROUND_UP: float = 1.0 + 1e-14


def _finish(ok, value, round_up: bool = True):
    if round_up:
        value = value * CLOSED_FORM_ROUND_UP
    return jnp.where(ok, jnp.clip(value, 0.0, 1.0), jnp.nan)


# ---- PAC-Bayes bounds ------------------------------------------------------------------------
def maurer_bound(
    emp_risk: ArrayLike, kl: ArrayLike, n: ArrayLike, delta: ArrayLike, *, xi: XiMode = "relaxed"
) -> jax.Array:
    """Maurer/Seeger kl bound: ``L ≤ kl⁻¹(L̂, (KL + ln(ξ/δ))/n)`` w.p. ≥ 1−δ, for all Q at once.

    ``xi='relaxed'`` uses ``ξ = 2√n`` (traceable n); ``'exact'`` uses Maurer's ξ(n) (host n).
    The tightest of the family; every other bound here (except Catoni) relaxes it.
    Args: broadcastable arrays. Returns: float64, broadcast shape.
    """
    _bound_inputs(emp_risk, kl, n, delta)
    with float64_scope():
        emp_risk, _, n, _, b, ok = _complexity(emp_risk, kl, n, delta, xi)
        c = jnp.where(ok, b / jnp.where(ok, n, 1.0), 0.0)
        return _finish(
            ok,
            _kl_inv_upper_jit(*jnp.broadcast_arrays(jnp.where(ok, emp_risk, 0.0), c)),
            round_up=False,
        )


def pinsker_bound(
    emp_risk: ArrayLike, kl: ArrayLike, n: ArrayLike, delta: ArrayLike, *, xi: XiMode = "relaxed"
) -> jax.Array:
    """Pinsker form of the kl bound: ``L ≤ L̂ + √((KL + ln(ξ/δ))/(2n))``, clipped to 1.

    :func:`maurer_bound` relaxed by Pinsker's inequality ``kl(q‖p) ≥ 2(p − q)²`` (so never below
    it); with ``ξ = 2√n`` this is ``L̂ + √((KL + ln(2√n/δ))/(2n))``. Often called McAllester's
    bound, but it is not McAllester's (1999) statement, whose complexity term differs.
    Args: broadcastable arrays. Returns: float64, broadcast shape.
    """
    _bound_inputs(emp_risk, kl, n, delta)
    with float64_scope():
        emp_risk, _, n, _, b, ok = _complexity(emp_risk, kl, n, delta, xi)
        return _finish(ok, emp_risk + jnp.sqrt(b / (2.0 * n)))


def quad_bound(
    emp_risk: ArrayLike, kl: ArrayLike, n: ArrayLike, delta: ArrayLike, *, xi: XiMode = "relaxed"
) -> jax.Array:
    """quad bound ``L ≤ (√(L̂ + B/(2n)) + √(B/(2n)))²`` (from ``kl(q‖p) ≥ (p−q)²/(2p)``), clipped to 1."""
    _bound_inputs(emp_risk, kl, n, delta)
    with float64_scope():
        emp_risk, _, n, _, b, ok = _complexity(emp_risk, kl, n, delta, xi)
        e = b / (2.0 * n)
        return _finish(ok, (jnp.sqrt(emp_risk + e) + jnp.sqrt(e)) ** 2)


def optimal_lambda(
    emp_risk: ArrayLike, kl: ArrayLike, n: ArrayLike, delta: ArrayLike, *, xi: XiMode = "relaxed"
) -> jax.Array:
    """Minimiser of the λ-bound: ``λ* = 2 / (√(2nL̂/B + 1) + 1) ∈ (0, 1]``.

    From ``d/dλ [(L̂ + B/(nλ))/(1−λ/2)] = 0 ⇔ L̂λ²/2 + (B/n)λ − B/n = 0``.
    """
    _bound_inputs(emp_risk, kl, n, delta)
    with float64_scope():
        emp_risk, _, n, _, b, ok = _complexity(emp_risk, kl, n, delta, xi)
        return jnp.where(ok, 2.0 / (jnp.sqrt(2.0 * n * emp_risk / b + 1.0) + 1.0), jnp.nan)


def lambda_bound(
    emp_risk: ArrayLike,
    kl: ArrayLike,
    n: ArrayLike,
    delta: ArrayLike,
    lam: ArrayLike | None = None,
    *,
    xi: XiMode = "relaxed",
) -> jax.Array:
    """λ-bound (Thiemann et al. 2017): ``L ≤ L̂/(1−λ/2) + B/(nλ(1−λ/2))``, any λ ∈ (0, 2).

    Holds for all λ simultaneously (it relaxes the kl bound), so ``lam=None`` uses the closed-form
    optimum :func:`optimal_lambda` at no cost in δ. Clipped to 1.
    """
    _bound_inputs(emp_risk, kl, n, delta)
    if lam is not None:
        check_range("lam", lam, 0.0, 2.0, lo_open=True, hi_open=True)
    with float64_scope():
        emp_risk, _, n, _, b, ok = _complexity(emp_risk, kl, n, delta, xi)
        if lam is None:
            lam = 2.0 / (jnp.sqrt(2.0 * n * emp_risk / b + 1.0) + 1.0)
        else:
            (lam,) = _f64(lam)
            ok = ok & (lam > 0) & (lam < 2)
        shrink = 1.0 - lam / 2.0
        return _finish(ok, emp_risk / shrink + b / (n * lam * shrink))


def catoni_bound(
    emp_risk: ArrayLike, kl: ArrayLike, n: ArrayLike, delta: ArrayLike, c: ArrayLike
) -> jax.Array:
    """Catoni's bound with ``C`` fixed in advance: ``L ≤ (1 − exp(−C·L̂ − (KL + ln(1/δ))/n)) / (1 − e^(−C))``.

    Choosing ``C`` after seeing the data is invalid; use :func:`catoni_grid_bound` instead.
    For every C it is ≥ ``kl⁻¹(L̂, (KL + ln(1/δ))/n)`` (the kl bound without the ξ term).
    """
    _bound_inputs(emp_risk, kl, n, delta)
    check_range("c", c, 0.0, math.inf, lo_open=True)
    with float64_scope():
        emp_risk, kl, n, delta, c = _f64(emp_risk, kl, n, delta, c)
        ok = _domain_ok(emp_risk, kl, n, delta) & (c > 0)
        exponent = -c * emp_risk - (kl - jnp.log(delta)) / n
        return _finish(ok, jnp.expm1(exponent) / jnp.expm1(-c))


def catoni_grid_bound(
    emp_risk: ArrayLike,
    kl: ArrayLike,
    n: ArrayLike,
    delta: ArrayLike,
    c_grid: Sequence[float] | ArrayLike,
) -> tuple[jax.Array, jax.Array]:
    """Catoni's bound minimised over a grid of K values of C, paid by a union bound (δ/K each).

    Args: scalar-or-broadcastable ``emp_risk, kl, n, delta``; ``c_grid`` a 1-D array of K > 0
    values fixed before seeing data. Returns ``(bound, best_c)``, both the broadcast shape.
    The bound holds w.p. ≥ 1−δ.
    """
    c_grid_host = _host_value(c_grid)
    if c_grid_host is not None and (c_grid_host.ndim != 1 or c_grid_host.size == 0):
        raise ValueError(f"c_grid has shape {c_grid_host.shape}; allowed: a non-empty 1-D grid")
    check_range("c_grid", c_grid, 0.0, math.inf, lo_open=True)
    _bound_inputs(emp_risk, kl, n, delta)
    with float64_scope():
        (c_grid,) = _f64(c_grid)
        k = c_grid.shape[0]
        emp_risk, kl, n, delta = jnp.broadcast_arrays(*_f64(emp_risk, kl, n, delta))
        bounds = catoni_bound(
            emp_risk[..., None], kl[..., None], n[..., None], delta[..., None] / k, c_grid
        )
        best = argmin(bounds, axis=-1)
        bound = jnp.take_along_axis(bounds, best[..., None], axis=-1)[..., 0]
        return bound, c_grid[best]


# ---- Monte-Carlo and test-set corrections ----------------------------------------------------
def sample_convergence_bound(
    mc_risk: ArrayLike, num_draws: ArrayLike, delta_prime: ArrayLike
) -> jax.Array:
    """Sample convergence (Langford–Caruana): ``L̂(Q) ≤ kl⁻¹(L̂_m, ln(2/δ′)/m)`` w.p. ≥ 1−δ′.

    ``mc_risk`` = L̂_m, the mean over ``m = num_draws`` weight samples from Q (each evaluated on
    the whole bound set) of the empirical risk on that set. Turns the estimate into a bound.
    """
    return _sample_convergence(kl_inv, mc_risk, num_draws, delta_prime)


def sample_convergence_lower(mc_risk: ArrayLike, num_draws: ArrayLike, delta_prime: ArrayLike) -> jax.Array:
    """The lower side of :func:`sample_convergence_bound`: ``L̂(Q) ≥ kl⁻¹_lower(L̂_m, ln(2/δ′)/m)``
    w.p. ≥ 1−δ′ (Langford–Caruana's ln(2/δ′) covers either tail)."""
    return _sample_convergence(kl_inv_lower, mc_risk, num_draws, delta_prime)


def _sample_convergence(invert, mc_risk: ArrayLike, num_draws: ArrayLike, delta_prime: ArrayLike) -> jax.Array:
    _check_risk("mc_risk", mc_risk)
    _check_n("num_draws", num_draws)
    _check_delta("delta_prime", delta_prime)
    with float64_scope():
        mc_risk, m, dp = _f64(mc_risk, num_draws, delta_prime)
        ok = (m >= 1) & (dp > 0) & (dp < 1)
        c = jnp.where(ok, jnp.log(2.0 / jnp.where(ok, dp, 0.5)) / jnp.where(ok, m, 1.0), jnp.nan)
        return invert(mc_risk, c)


def per_example_convergence_bound(mc_risk: ArrayLike, num_terms: ArrayLike, delta_prime: ArrayLike) -> jax.Array:
    """Sample convergence with a fresh weight draw per example: ``L̂(Q) ≤ kl⁻¹(X̄, ln(1/δ′)/N)``.

    Draw ``w_ij ~ Q`` independently for every bound-set example ``z_i`` (r draws each, N = r·n
    terms) and let ``X_ij = ℓ(w_ij, z_i) ∈ [0, 1]``. Given the bound set, the N terms are
    independent (not identically distributed) with average mean L̂(Q), and Hoeffding's (1963)
    Theorem 1 bounds such averages by the same Chernoff–kl tail as i.i.d. ones. So the slack is
    ln(1/δ′)/(r·n), where :func:`sample_convergence_bound`, which reuses each draw on the whole
    set, pays ln(2/δ′)/m.
    """
    return _test_set(kl_inv, mc_risk, num_terms, delta_prime, names=("mc_risk", "num_terms", "delta_prime"))


def per_example_convergence_lower(mc_risk: ArrayLike, num_terms: ArrayLike, delta_prime: ArrayLike) -> jax.Array:
    """The lower side of :func:`per_example_convergence_bound`: ``L̂(Q) ≥ kl⁻¹_lower(X̄, ln(1/δ′)/N)``
    w.p. ≥ 1−δ′ (the other tail of the same Chernoff–Hoeffding bound, a separate δ′)."""
    return _test_set(kl_inv_lower, mc_risk, num_terms, delta_prime, names=("mc_risk", "num_terms", "delta_prime"))


def kl_test_set_bound(emp_risk: ArrayLike, n: ArrayLike, delta: ArrayLike) -> jax.Array:
    """Test-set (Chernoff–kl) bound for any [0, 1] loss: ``L ≤ kl⁻¹(L̂, ln(1/δ)/n)`` w.p. ≥ 1−δ.

    ``emp_risk`` is the mean loss of a *fixed* predictor on ``n`` fresh i.i.d. examples.
    """
    return _test_set(kl_inv, emp_risk, n, delta)


def kl_test_set_lower(emp_risk: ArrayLike, n: ArrayLike, delta: ArrayLike) -> jax.Array:
    """Lower test-set bound for any [0, 1] loss: ``L ≥ kl⁻¹_lower(L̂, ln(1/δ)/n)`` w.p. ≥ 1−δ."""
    return _test_set(kl_inv_lower, emp_risk, n, delta)


def _test_set(invert, emp_risk: ArrayLike, n: ArrayLike, delta: ArrayLike,
              names: tuple[str, str, str] = ("emp_risk", "n", "delta")) -> jax.Array:
    """``invert(L̂, ln(1/δ)/n)`` with the checks the test-set bounds share (errors name ``names``)."""
    _check_risk(names[0], emp_risk)
    _check_n(names[1], n)
    _check_delta(names[2], delta)
    with float64_scope():
        emp_risk, n, delta = _f64(emp_risk, n, delta)
        ok = (n >= 1) & (delta > 0) & (delta < 1)
        c = jnp.where(ok, -jnp.log(jnp.where(ok, delta, 0.5)) / jnp.where(ok, n, 1.0), jnp.nan)
        return invert(emp_risk, c)


# ---- binomial tail inversion (Clopper–Pearson) -----------------------------------------------
#: largest ``n`` the Clopper–Pearson functions accept (the domain their accuracy is tested on)
CLOPPER_PEARSON_MAX_N: float = 1e9


def _check_counts(k, n):
    check_range("n", n, 1.0, CLOPPER_PEARSON_MAX_N)
    check_range("k", k, 0.0, math.inf)
    kv, nv = _host_value(k), _host_value(n)
    if kv is not None and np.any(kv != np.round(kv)):
        bad = float(kv[kv != np.round(kv)].flat[0])
        raise ValueError(f"k={bad!r} is not an integer count; allowed: integers 0..n")
    if nv is not None and np.any(nv != np.round(nv)):
        bad = float(nv[nv != np.round(nv)].flat[0])
        raise ValueError(f"n={bad!r} is not an integer count; allowed: integers 1..1e9")
    if (
        kv is not None
        and nv is not None
        and np.any(np.broadcast_to(kv > nv, np.broadcast_shapes(kv.shape, nv.shape)))
    ):
        raise ValueError(f"k={kv.tolist()!r} exceeds n={nv.tolist()!r}; allowed: 0 <= k <= n")


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
    kl is evaluated by :func:`_kl_of_masses`, so the error stays ~1e-14 relative even for
    ``a, b ~ 1e9`` and ``x`` within 1e-9 of 1. Elementwise, broadcastable.
    """
    x0, y0 = a / (a + b), b / (a + b)
    return (
        -(a + b) * _kl_of_masses(x0, y0, x, y)
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


def _cp_search(k, n, delta, upper: bool):
    """Bit-pattern bisection on the binomial tail, float64; conservative by ``BETAINC_REL_MARGIN``."""
    target = delta * (1.0 - BETAINC_REL_MARGIN)

    def tail(
        p,
    ):  # upper: P(X ≤ k; p) = I_{1−p}(n−k, k+1), decreasing; lower: P(X ≥ k; p) = I_p(k, n−k+1)
        if upper:
            return regularized_incomplete_beta(jnp.maximum(n - k, 1.0), k + 1.0, 1.0 - p, p)
        return regularized_incomplete_beta(jnp.maximum(k, 1.0), n - k + 1.0, p)

    # keep side: tail ≥ target (upper: p small; lower: p large). Return the far end of the bracket.
    keep_b = _bits(jnp.zeros_like(k) if upper else jnp.ones_like(k))
    far_b = _bits(jnp.ones_like(k) if upper else jnp.zeros_like(k))

    def step(_, carry):
        keep_b, far_b = carry
        mid = keep_b + (far_b - keep_b) // 2
        keep = ~(
            tail(_from_bits(mid)) < target
        )  # NaN (no convergence) counts as keep: conservative
        return jnp.where(keep, mid, keep_b), jnp.where(keep, far_b, mid)

    keep_b, far_b = lax.fori_loop(0, 64, step, (keep_b, far_b))
    p = _from_bits(far_b)
    trivial = (k >= n) if upper else (k <= 0)
    return jnp.where(trivial, 1.0 if upper else 0.0, p)


_cp_search_jit = jax.jit(_cp_search, static_argnames="upper")


def _cp(k, n, delta, upper: bool):
    """Checked front end of :func:`_cp_search`: NaN for invalid traced entries, the trivial bound
    (1 upper, 0 lower) for traced ``n`` above :data:`CLOPPER_PEARSON_MAX_N`."""
    _check_counts(k, n)
    _check_delta("delta", delta)
    with float64_scope():
        k, n, delta = jnp.broadcast_arrays(*_f64(k, n, delta))
        ok = (n >= 1) & (k >= 0) & (k <= n) & (delta > 0) & (delta < 1)
        searched = ok & (n <= CLOPPER_PEARSON_MAX_N)
        ks, ns = jnp.where(searched, k, 0.0), jnp.where(searched, n, 1.0)
        ds = jnp.where(searched, delta, 0.5)
        p = jnp.where(searched, _cp_search_jit(ks, ns, ds, upper=upper), 1.0 if upper else 0.0)
        return jnp.where(ok, p, jnp.nan)


def clopper_pearson_upper(k: ArrayLike, n: ArrayLike, delta: ArrayLike) -> jax.Array:
    """One-sided binomial tail inversion: ``sup{p : P(Bin(n, p) ≤ k) ≥ δ}`` (= Beta(1−δ; k+1, n−k)).

    ``risk ≤ upper`` w.p. ≥ 1−δ for a fixed predictor with ``k`` errors (0-1 loss) on ``n`` fresh
    examples. JAX path (vmappable, jittable): bit-pattern bisection on the tail
    ``I_{1−p}(n−k, k+1)`` from :func:`regularized_incomplete_beta` with the complement ``p``
    passed exactly (relative error ≤ ~1e-10 for n ≤ 1e9); the tail is compared with
    ``δ·(1 − 1e-9)``, so the result is never below the exact value, and above it by a tail
    ratio ≤ ~1e-9 (or one ulp of the result, whichever is larger). Host values:
    :func:`clopper_pearson_host`. ``k = n`` gives 1.

    Domain: integers ``0 ≤ k ≤ n``, ``1 ≤ n ≤`` :data:`CLOPPER_PEARSON_MAX_N` (1e9), ``δ ∈ (0, 1)``;
    host-known inputs outside it raise ``ValueError``. Traced: an invalid ``k, δ`` or ``n < 1``
    gives NaN, ``n > 1e9`` gives 1 (trivially valid).
    """
    return _cp(k, n, delta, upper=True)


def clopper_pearson_lower(k: ArrayLike, n: ArrayLike, delta: ArrayLike) -> jax.Array:
    """One-sided lower inversion ``inf{p : P(Bin(n, p) ≥ k) ≥ δ}`` (= Beta(δ; k, n−k+1)).

    ``k = 0`` gives 0. Never above the exact value; same method, accuracy and domain as
    :func:`clopper_pearson_upper` (traced ``n > 1e9`` gives 0).
    """
    return _cp(k, n, delta, upper=False)


def clopper_pearson_interval(
    k: ArrayLike, n: ArrayLike, delta: ArrayLike
) -> tuple[jax.Array, jax.Array]:
    """Two-sided Clopper–Pearson interval at confidence 1−δ (δ/2 per side): ``(lower, upper)``."""
    _check_delta("delta", delta)
    half = _f64_host_or_traced_half(delta)
    return clopper_pearson_lower(k, n, half), clopper_pearson_upper(k, n, half)


def _f64_host_or_traced_half(delta):
    v = _host_value(delta)
    if v is not None:
        return v / 2.0
    with float64_scope():
        return jnp.asarray(delta, dtype=jnp.float64) / 2.0


def clopper_pearson_host(
    k: ArrayLike,
    n: ArrayLike,
    delta: float,
    side: Literal["upper", "lower", "two-sided"] = "two-sided",
):
    """Host (numpy/scipy) Clopper–Pearson, an implementation independent of the JAX path.

    The same 64-step bisection over float64 bit patterns as :func:`clopper_pearson_upper`, on
    scipy's Boost incomplete beta evaluated at ``p`` itself: ``P(X ≤ k; p) = betaincc(k+1, n−k, p)``
    (upper) and ``P(X ≥ k; p) = betainc(k, n−k+1, p)`` (lower). Neither ``1 − p`` nor ``1 − δ`` is
    ever rounded (``beta.ppf(1 − δ)`` and ``bdtr``, which evaluates at ``1 − p`` and takes int32
    counts, lose ~n·1e-16 relative). Boost's tails are within 2e-11 relative of mpmath for
    ``n ≤ 1e9``; the tail is compared with ``δ·(1 − 1e-9)``, so the returned bound satisfies the
    tail condition exactly. ``side='two-sided'`` returns ``(lower, upper)`` at δ/2 each;
    ``'upper'``/``'lower'`` a single array at δ. Domain as :func:`clopper_pearson_upper`
    (``ValueError`` outside it).
    """
    from scipy import special

    _check_counts(k, n)
    _check_delta("delta", delta)
    if side not in ("upper", "lower", "two-sided"):
        raise ValueError(f"side={side!r} is unknown; allowed: 'upper', 'lower', 'two-sided'")
    k, n = np.broadcast_arrays(np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64))
    target = (delta / 2.0 if side == "two-sided" else delta) * (1.0 - BETAINC_REL_MARGIN)

    def upper() -> np.ndarray:
        kk = np.where(k < n, k, 0.0)  # k = n: trivial bound 1
        p = _host_bisect(lambda p: special.betaincc(kk + 1.0, n - kk, p), target, 0.0, 1.0)
        return np.where(k < n, p, 1.0)

    def lower() -> np.ndarray:
        kk = np.where(k > 0, k, 1.0)  # k = 0: trivial bound 0
        p = _host_bisect(lambda p: special.betainc(kk, n - kk + 1.0, p), target, 1.0, 0.0)
        return np.where(k > 0, p, 0.0)

    if side == "upper":
        return upper()
    if side == "lower":
        return lower()
    return lower(), upper()


def _host_bisect(tail, target: float, keep_end: float, far_end: float) -> np.ndarray:
    """Bisection over float64 bit patterns between ``keep_end`` and ``far_end`` (64 steps).

    ``tail(p)`` (vectorised, monotone) is ≥ ``target`` on the keep side; the result is the far
    end of the final bracket: ``far_end`` itself or a point where ``tail < target`` was computed.
    NaN tails count as keep (the conservative direction). Returns the shape of ``tail``'s input.
    """
    shape = np.shape(tail(np.float64(keep_end)))
    keep_b = np.full(shape, np.float64(keep_end)).view(np.int64)
    far_b = np.full(shape, np.float64(far_end)).view(np.int64)
    for _ in range(64):
        mid = keep_b + (far_b - keep_b) // 2
        keep = ~(tail(mid.view(np.float64)) < target)
        keep_b, far_b = np.where(keep, mid, keep_b), np.where(keep, far_b, mid)
    return far_b.view(np.float64)
