"""PAC-Bayes bounds on the risk of a Gibbs predictor: Maurer/Seeger kl, Pinsker, quad, λ, Catoni.

Notation: loss in [0, 1]; ``emp_risk`` = L̂, the empirical risk of the Gibbs
predictor Q on ``n`` examples that never influenced the prior; ``kl`` = KL(Q‖P);
``kl⁻¹(q, c) = sup{p ∈ [q, 1] : kl(q‖p) ≤ c}`` (:mod:`difftrade.theory.kl_inverse`);
``B = KL + ln(ξ/δ)`` with ``ξ = 2√n`` (the usual relaxation, default) or the exact
``ξ(n) = Σ_k C(n,k)(k/n)^k(1−k/n)^(n−k)`` (:mod:`difftrade.theory.special_functions`).

Every bound is an elementwise function of broadcastable array inputs, vmappable, and clipped
to [0, 1] (a trivially valid range for a [0, 1] loss). Float64 scope and input checks: see
:mod:`difftrade.theory.float64`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from difftrade.theory.float64 import (
    ArrayLike,
    argmin,
    as_float64,
    check_delta,
    check_kl,
    check_n,
    check_range,
    check_risk,
    float64_scope,
    host_value,
)
from difftrade.theory.kl_inverse import kl_inv_upper_jit
from difftrade.theory.special_functions import log_xi

XiMode = Literal["relaxed", "exact"]


# ---- shared parts of the bounds: ln ξ, B, domain mask, clipping -----------------------------
def _log_xi_term(n: ArrayLike, mode: XiMode) -> jax.Array:
    """``ln ξ`` as a float64 array: ``ln 2√n`` (traceable) or exact (``n`` must be host-known)."""
    if mode == "relaxed":
        return jnp.log(2.0) + 0.5 * jnp.log(jnp.asarray(n, dtype=jnp.float64))
    if mode == "exact":
        v = host_value(n)
        if v is None:
            raise ValueError(
                "xi='exact' needs a host-known n (it was traced); allowed: xi='relaxed' under jit/vmap"
            )
        return jnp.asarray(np.vectorize(log_xi, otypes=[np.float64])(v), dtype=jnp.float64)
    raise ValueError(f"xi={mode!r} is unknown; allowed: 'relaxed' (2√n) or 'exact'")


def _bound_inputs(emp_risk, kl, n, delta):
    check_risk("emp_risk", emp_risk)
    check_kl("kl", kl)
    check_n("n", n)
    check_delta("delta", delta)


def _domain_ok(emp_risk, kl, n, delta):
    return (emp_risk >= 0) & (emp_risk <= 1) & (kl >= 0) & (n >= 1) & (delta > 0) & (delta < 1)


def _complexity(emp_risk, kl, n, delta, mode: XiMode):
    """float64 (L̂, KL, n, δ, B = KL + ln(ξ/δ), ok-mask), inside the scope."""
    log_xi_n = _log_xi_term(n, mode)
    emp_risk, kl, n, delta = as_float64(emp_risk, kl, n, delta)
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
            kl_inv_upper_jit(*jnp.broadcast_arrays(jnp.where(ok, emp_risk, 0.0), c)),
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
            (lam,) = as_float64(lam)
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
        emp_risk, kl, n, delta, c = as_float64(emp_risk, kl, n, delta, c)
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
    c_grid_host = host_value(c_grid)
    if c_grid_host is not None and (c_grid_host.ndim != 1 or c_grid_host.size == 0):
        raise ValueError(f"c_grid has shape {c_grid_host.shape}; allowed: a non-empty 1-D grid")
    check_range("c_grid", c_grid, 0.0, math.inf, lo_open=True)
    _bound_inputs(emp_risk, kl, n, delta)
    with float64_scope():
        (c_grid,) = as_float64(c_grid)
        k = c_grid.shape[0]
        emp_risk, kl, n, delta = jnp.broadcast_arrays(*as_float64(emp_risk, kl, n, delta))
        bounds = catoni_bound(
            emp_risk[..., None], kl[..., None], n[..., None], delta[..., None] / k, c_grid
        )
        best = argmin(bounds, axis=-1)
        bound = jnp.take_along_axis(bounds, best[..., None], axis=-1)[..., 0]
        return bound, c_grid[best]
