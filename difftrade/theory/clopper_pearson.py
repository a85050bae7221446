"""Clopper–Pearson: exact binomial tail inversion for a 0-1 loss on fresh examples (JAX and host).

:func:`clopper_pearson_upper`, :func:`clopper_pearson_lower` and :func:`clopper_pearson_interval`
are jittable and vmappable: bit-pattern bisection on the tail given by
:func:`~difftrade.theory.special_functions.regularized_incomplete_beta`.
:func:`clopper_pearson_host` is an independent numpy/scipy implementation. Both are conservative
by ``BETAINC_REL_MARGIN`` and accept ``n ≤`` :data:`CLOPPER_PEARSON_MAX_N` (1e9). Float64 scope
and input checks: see :mod:`difftrade.theory.float64`.
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from difftrade.theory.float64 import (
    ArrayLike,
    as_float64,
    check_delta,
    check_range,
    float64_scope,
    halve_delta,
    host_value,
)
from difftrade.theory.kl_inverse import float_bits, float_from_bits
from difftrade.theory.special_functions import regularized_incomplete_beta

#: relative margin in the Clopper–Pearson tail tests (covers the incomplete beta's error, ≤ ~1e-10
#: relative for n ≤ 1e9 on the JAX path, ≤ 2e-11 for scipy's on the host path)
BETAINC_REL_MARGIN: float = 1e-9


# ---- binomial tail inversion (Clopper–Pearson) -----------------------------------------------
#: largest ``n`` the Clopper–Pearson functions accept (the domain their accuracy is tested on)
CLOPPER_PEARSON_MAX_N: float = 1e9


def _check_counts(k, n):
    check_range("n", n, 1.0, CLOPPER_PEARSON_MAX_N)
    check_range("k", k, 0.0, math.inf)
    kv, nv = host_value(k), host_value(n)
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
    keep_b = float_bits(jnp.zeros_like(k) if upper else jnp.ones_like(k))
    far_b = float_bits(jnp.ones_like(k) if upper else jnp.zeros_like(k))

    def step(_, carry):
        keep_b, far_b = carry
        mid = keep_b + (far_b - keep_b) // 2
        keep = ~(
            tail(float_from_bits(mid)) < target
        )  # NaN (no convergence) counts as keep: conservative
        return jnp.where(keep, mid, keep_b), jnp.where(keep, far_b, mid)

    keep_b, far_b = lax.fori_loop(0, 64, step, (keep_b, far_b))
    p = float_from_bits(far_b)
    trivial = (k >= n) if upper else (k <= 0)
    return jnp.where(trivial, 1.0 if upper else 0.0, p)


_cp_search_jit = jax.jit(_cp_search, static_argnames="upper")


def _cp(k, n, delta, upper: bool):
    """Checked front end of :func:`_cp_search`: NaN for invalid traced entries, the trivial bound
    (1 upper, 0 lower) for traced ``n`` above :data:`CLOPPER_PEARSON_MAX_N`."""
    _check_counts(k, n)
    check_delta("delta", delta)
    with float64_scope():
        k, n, delta = jnp.broadcast_arrays(*as_float64(k, n, delta))
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
    check_delta("delta", delta)
    half = halve_delta(delta)
    return clopper_pearson_lower(k, n, half), clopper_pearson_upper(k, n, half)


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
    check_delta("delta", delta)
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
