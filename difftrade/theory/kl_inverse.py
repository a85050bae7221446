"""Binary kl, evaluated without cancellation, and its conservative float64 inverses.

Notation: ``kl(q‖p) = q ln(q/p) + (1−q) ln((1−q)/(1−p))`` the binary KL;
``kl⁻¹(q, c) = sup{p ∈ [q, 1] : kl(q‖p) ≤ c}``. Float64 scope and input checks: see
:mod:`difftrade.theory.float64`.

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
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from difftrade.theory.float64 import ArrayLike, as_float64, check_range, check_risk, float64_scope

#: relative margin in the kl⁻¹ membership test (see module docstring); the computed kl is
#: accurate to ~2e-15 relative at worst
KL_INV_REL_MARGIN: float = 1e-13


# ---- accurate kl -----------------------------------------------------------------------------
def x_minus_log1p_xp(x, xp):
    """:func:`x_minus_log1p` with the array namespace passed in: ``xp`` is ``numpy`` (host
    float64 arithmetic, no tracing) or ``jax.numpy`` (call inside :func:`float64_scope`).
    Elementwise: ``x`` is an array of any shape with entries >= -1; returns
    ``x - ln(1 + x)`` with the same shape.
    """
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
    return x_minus_log1p_xp(x, jnp)


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


def kl_of_masses(x0: jax.Array, y0: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
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
    check_risk("q", q)
    check_risk("p", p)
    with float64_scope():
        q, p = as_float64(q, p)
        ok = (q >= 0) & (q <= 1) & (p >= 0) & (p <= 1)
        qs, ps = jnp.where(ok, q, 0.5), jnp.where(ok, p, 0.5)
        return jnp.where(ok, _binary_kl(qs, ps), jnp.nan)


# ---- kl inverses (bisection on float64 bit patterns) ------------------------------------------
def float_bits(x: jax.Array) -> jax.Array:
    """The float64 entries of ``x`` reinterpreted as their int64 bit patterns (``-0.0`` taken
    as ``+0.0``). Elementwise, any shape. For non-negative floats the bit patterns are ordered
    like the values, so bisecting on them halves the remaining count of floats each step."""
    return lax.bitcast_convert_type(jnp.where(x == 0, 0.0, x), jnp.int64)  # -0.0 → +0.0


def float_from_bits(b: jax.Array) -> jax.Array:
    """The int64 bit patterns ``b`` reinterpreted as float64 values, the inverse of
    :func:`float_bits`. Elementwise, any shape."""
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
    inside_b, outside_b = float_bits(q), float_bits(end)

    def step(_, carry):
        inside_b, outside_b = carry
        lo, hi = (inside_b, outside_b) if upper else (outside_b, inside_b)
        mid = lo + (hi - lo) // 2
        inside = kl_at(float_from_bits(mid)) <= c_test
        return jnp.where(inside, mid, inside_b), jnp.where(inside, outside_b, mid)

    inside_b, outside_b = lax.fori_loop(0, 64, step, (inside_b, outside_b))
    p = float_from_bits(outside_b)
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
    """Upper kl inverse ``sup{p ∈ [q, 1] : kl(q‖p) ≤ c}`` of float64 arrays ``q``, ``c`` of one
    shape (broadcast them first), without input checks: every entry must already be valid
    (``q`` in [0, 1], ``c ≥ 0``). Call inside :func:`float64_scope`. Differentiable in ``q`` and
    ``c`` (implicit derivative); returns an array of that shape. :func:`kl_inv` is the checked
    form for any inputs; :func:`kl_inv_upper_jit` is this function jitted.
    """
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
kl_inv_upper_jit = jax.jit(_kl_inv_upper)
_kl_inv_lower_jit = jax.jit(_kl_inv_lower)
_kl_inv_reverse_jit = jax.jit(partial(_kl_inv_search, upper=True, reverse=True))


def _kl_inv(q: ArrayLike, c: ArrayLike, upper: bool, reverse: bool = False) -> jax.Array:
    check_risk("q", q)
    check_range("c", c, 0.0, math.inf)
    with float64_scope():
        q, c = jnp.broadcast_arrays(*as_float64(q, c))
        ok = (q >= 0) & (q <= 1) & (c >= 0)
        qs, cs = jnp.where(ok, q, 0.5), jnp.where(ok, c, 0.0)
        if reverse:
            p = _kl_inv_reverse_jit(qs, cs)
        else:
            p = kl_inv_upper_jit(qs, cs) if upper else _kl_inv_lower_jit(qs, cs)
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
