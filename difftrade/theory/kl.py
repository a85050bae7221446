"""KL divergence between Gaussian posteriors and priors over parameter pytrees, in float64.

    KL(N(μ, diag σ²) ‖ N(w₀, σ_P² I)) = ½ Σᵢ [σᵢ²/σ_P² + (μᵢ − w₀ᵢ)²/σ_P² − 1 + ln(σ_P²/σᵢ²)]

``μ`` (the trained weights) and ``w₀`` (the prior centre: the data-free initialisation, or a
pretrained model that never saw the bound set) are pytrees of the same structure: nested dicts
of arrays, a ``flax.nnx.State``, any JAX pytree. Only floating-point leaves count as parameters
(integer leaves such as RNG counters are skipped, in both trees alike). ``σ`` is a scalar
(isotropic posterior σ² I) or a pytree of per-parameter scales (diagonal posterior).

Each term ``r − 1 − ln r`` (``r = σᵢ²/σ_P²``) is evaluated as ``h(r − 1)`` with the
cancellation-free ``h(x) = x − ln(1+x)`` of :mod:`difftrade.theory.kl_inverse`, and every sum is
accumulated in float64 (see :func:`difftrade.theory.float64.float64_scope`), whatever the
parameter dtype. Everything is jittable and vmappable (e.g. over a population axis).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from difftrade.theory.float64 import ArrayLike, check_range, float64_scope
from difftrade.theory.kl_inverse import x_minus_log1p

PyTree = Any


def parameter_leaves(tree: PyTree) -> list[jax.Array]:
    """The floating-point leaves of ``tree`` (the parameters), in ``jax.tree`` order."""
    return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]


def paired_float_leaves(mean: PyTree, prior_mean: PyTree) -> list[tuple[jax.Array, jax.Array]]:
    """The floating-point leaves of ``mean`` paired with the corresponding leaves of
    ``prior_mean``, in tree-leaf order; integer and boolean leaves are skipped. Raises
    ``ValueError`` if the two trees differ in structure or a paired leaf differs in shape
    (each pair has one shape, any shape).
    """
    s_mean, s_prior = jax.tree.structure(mean), jax.tree.structure(prior_mean)
    if s_mean != s_prior:
        raise ValueError(
            f"prior_mean has tree structure {s_prior}; allowed: the structure of mean, {s_mean}"
        )
    pairs = []
    for path_leaf, prior_leaf in zip(
        jax.tree_util.tree_leaves_with_path(mean), jax.tree.leaves(prior_mean)
    ):
        path, leaf = path_leaf
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            continue
        if jnp.shape(leaf) != jnp.shape(prior_leaf):
            raise ValueError(
                f"prior_mean{jax.tree_util.keystr(path)} has shape {jnp.shape(prior_leaf)}; "
                f"allowed: the shape of mean{jax.tree_util.keystr(path)}, {jnp.shape(leaf)}"
            )
        pairs.append((leaf, prior_leaf))
    return pairs


def num_parameters(tree: PyTree) -> int:
    """Number of scalar parameters (floating-point entries) in ``tree``; a static Python int."""
    return int(sum(math.prod(jnp.shape(x)) for x in parameter_leaves(tree)))


def squared_distance(a: PyTree, b: PyTree) -> jax.Array:
    """``‖a − b‖² = Σᵢ (aᵢ − bᵢ)²`` over the floating leaves of two same-structure pytrees; float64 scalar."""
    with float64_scope():
        total = jnp.zeros((), jnp.float64)
        for x, y in paired_float_leaves(a, b):
            diff = jnp.asarray(x, jnp.float64) - jnp.asarray(y, jnp.float64)
            total = total + jnp.sum(diff * diff)
        return total


def isotropic_gaussian_kl(
    num_params: ArrayLike, sq_distance: ArrayLike, sigma: ArrayLike, prior_sigma: ArrayLike
) -> jax.Array:
    """``KL(N(μ, σ²I) ‖ N(w₀, σ_P²I)) = ½[D·(r − 1 − ln r) + ‖μ − w₀‖²/σ_P²]``, ``r = σ²/σ_P²``.

    Elementwise over broadcastable ``sigma``/``prior_sigma`` (e.g. a σ × σ_P grid) given the
    sufficient statistics ``D = num_params`` and ``‖μ − w₀‖² = sq_distance``. float64.
    Non-positive σ or σ_P: ValueError for host values, NaN for traced ones.
    """
    check_range("sigma", sigma, 0.0, math.inf, lo_open=True, hi_open=True)
    check_range("prior_sigma", prior_sigma, 0.0, math.inf, lo_open=True, hi_open=True)
    check_range("sq_distance", sq_distance, 0.0, math.inf)
    with float64_scope():
        d, sq, s, sp = (
            jnp.asarray(x, jnp.float64) for x in (num_params, sq_distance, sigma, prior_sigma)
        )
        ok = (s > 0) & (sp > 0) & jnp.isfinite(s) & jnp.isfinite(sp)
        s, sp = jnp.where(ok, s, 1.0), jnp.where(ok, sp, 1.0)
        ratio_m1 = (s - sp) * (s + sp) / (sp * sp)  # σ²/σ_P² − 1 without cancellation
        kl = 0.5 * (d * x_minus_log1p(ratio_m1) + sq / (sp * sp))
        return jnp.where(ok, kl, jnp.nan)


def gaussian_kl(
    mean: PyTree, prior_mean: PyTree, sigma: ArrayLike | PyTree, prior_sigma: ArrayLike
) -> jax.Array:
    """KL(Q ‖ P) for ``Q = N(mean, diag σ²)``, ``P = N(prior_mean, σ_P² I)`` over parameter pytrees.

    Args:
      mean: posterior mean μ (the trained weights), a pytree of arrays.
      prior_mean: prior centre w₀, same structure and leaf shapes (initialisation or pretrained
        base). A mismatch raises ValueError naming the first offending leaf.
      sigma: posterior standard deviation: a scalar (isotropic, σ² I) or a pytree with the
        structure of ``mean`` whose leaves broadcast to the parameter leaves (diagonal).
      prior_sigma: prior standard deviation σ_P > 0 (scalar).

    Returns:
      float64 scalar ``½ Σᵢ [σᵢ²/σ_P² − 1 − ln(σᵢ²/σ_P²) + (μᵢ − w₀ᵢ)²/σ_P²]`` (0 iff Q = P).
    """
    pairs = paired_float_leaves(mean, prior_mean)
    if jax.tree_util.treedef_is_leaf(jax.tree.structure(sigma)) and jnp.ndim(sigma) == 0:
        num = sum(math.prod(jnp.shape(m)) for m, _ in pairs)
        return isotropic_gaussian_kl(num, squared_distance(mean, prior_mean), sigma, prior_sigma)
    if jax.tree.structure(sigma) != jax.tree.structure(mean):
        raise ValueError(
            f"sigma has tree structure {jax.tree.structure(sigma)}; allowed: a scalar or the structure of mean"
        )
    sigma_leaves = [
        s
        for s, m in zip(jax.tree.leaves(sigma), jax.tree.leaves(mean))
        if jnp.issubdtype(jnp.result_type(m), jnp.inexact)
    ]
    for i, s in enumerate(sigma_leaves):
        check_range(f"sigma (leaf {i})", s, 0.0, math.inf, lo_open=True, hi_open=True)
    check_range("prior_sigma", prior_sigma, 0.0, math.inf, lo_open=True, hi_open=True)
    with float64_scope():
        sp = jnp.asarray(prior_sigma, jnp.float64)
        ok = (sp > 0) & jnp.isfinite(sp)
        sp = jnp.where(ok, sp, 1.0)
        total = jnp.zeros((), jnp.float64)
        for (m, m0), s in zip(pairs, sigma_leaves):
            s = jnp.broadcast_to(jnp.asarray(s, jnp.float64), jnp.shape(m))
            ok = ok & jnp.all(s > 0) & jnp.all(jnp.isfinite(s))
            diff = jnp.asarray(m, jnp.float64) - jnp.asarray(m0, jnp.float64)
            ratio_m1 = (s - sp) * (s + sp) / (sp * sp)
            total = total + jnp.sum(x_minus_log1p(ratio_m1)) + jnp.sum(diff * diff) / (sp * sp)
        return jnp.where(ok, 0.5 * total, jnp.nan)
