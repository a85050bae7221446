"""difftrade.theory.kl: Gaussian KL over parameter pytrees (closed forms, Monte-Carlo, nnx State)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

from difftrade.theory import kl as K


def _tree(rng: np.random.Generator, scale: float = 1.0) -> dict:
    return {
        "dense": {"kernel": scale * rng.normal(size=(3, 4)), "bias": scale * rng.normal(size=(4,))},
        "out": scale * rng.normal(size=(4, 2)),
        "step": np.int32(7),  # a non-parameter leaf: ignored
    }


def test_kl_zero_when_posterior_equals_prior():
    tree = _tree(np.random.default_rng(0))
    assert float(K.gaussian_kl(tree, tree, 0.3, 0.3)) == 0.0
    sigma = jax.tree.map(lambda x: np.full(np.shape(x), 0.3), tree)
    assert float(K.gaussian_kl(tree, tree, sigma, 0.3)) == 0.0
    assert K.num_parameters(tree) == 12 + 4 + 8


def test_isotropic_closed_form_against_mpmath():
    rng = np.random.default_rng(1)
    mean, prior = _tree(rng), _tree(rng)
    sigma, prior_sigma = 0.05, 0.2
    leaves = [
        np.ravel(a) - np.ravel(b)
        for a, b in zip(jax.tree.leaves(mean), jax.tree.leaves(prior))
        if np.ndim(a) > 0
    ]
    diff = np.concatenate(leaves)
    s2, p2 = mpmath.mpf(sigma) ** 2, mpmath.mpf(prior_sigma) ** 2
    truth = mpmath.mpf(0.5) * mpmath.fsum(
        s2 / p2 + mpmath.mpf(float(d)) ** 2 / p2 - 1 + mpmath.log(p2 / s2) for d in diff
    )
    value = float(K.gaussian_kl(mean, prior, sigma, prior_sigma))
    assert abs(value - truth) / truth < 1e-13
    # the diagonal path with a constant σ agrees with the isotropic one
    sig_tree = jax.tree.map(lambda x: np.full(np.shape(x), sigma), mean)
    assert float(K.gaussian_kl(mean, prior, sig_tree, prior_sigma)) == pytest.approx(
        value, rel=1e-13
    )


def test_tiny_variance_ratio_has_no_cancellation():
    # σ/σ_P = 1 + 1e-9: KL = D·(r − 1 − ln r)/2 ≈ D·(2e-9)²/4; the naive formula returns ~1e-7 noise.
    sigma = 1.0 + 1e-9
    value = float(K.isotropic_gaussian_kl(1000, 0.0, sigma, 1.0))
    with mpmath.workdps(60):
        r = mpmath.mpf(sigma) ** 2
        truth = 500 * (r - 1 - mpmath.log(r))
    assert abs(value - truth) / truth < 1e-9


def test_diagonal_kl_matches_monte_carlo():
    rng = np.random.default_rng(2)
    mean = {"a": rng.normal(size=(5,)), "b": rng.normal(size=(2, 3))}
    prior = {"a": np.zeros(5), "b": 0.5 * np.ones((2, 3))}
    sigma = {"a": rng.uniform(0.2, 1.0, size=(5,)), "b": rng.uniform(0.2, 1.0, size=(2, 3))}
    prior_sigma = 0.8
    exact = float(K.gaussian_kl(mean, prior, sigma, prior_sigma))
    # KL = E_Q[ln q(w) − ln p(w)], estimated with 400k draws
    mu = np.concatenate([np.ravel(mean["a"]), np.ravel(mean["b"])])
    w0 = np.concatenate([np.ravel(prior["a"]), np.ravel(prior["b"])])
    s = np.concatenate([np.ravel(sigma["a"]), np.ravel(sigma["b"])])
    w = mu + s * rng.normal(size=(400_000, mu.size))
    log_q = -0.5 * np.sum(((w - mu) / s) ** 2 + np.log(2 * np.pi * s**2), axis=1)
    log_p = -0.5 * np.sum(
        ((w - w0) / prior_sigma) ** 2 + np.log(2 * np.pi * prior_sigma**2), axis=1
    )
    ratio = log_q - log_p
    estimate, stderr = ratio.mean(), ratio.std() / math.sqrt(ratio.size)
    assert abs(estimate - exact) < 5 * stderr
    assert stderr < 0.01 * exact


def test_flax_nnx_state_and_float64_accumulation():
    from flax import nnx

    model = nnx.Linear(64, 64, rngs=nnx.Rngs(0))
    _, state = nnx.split(model, nnx.Param)
    moved = jax.tree.map(lambda x: x + jnp.float32(1e-3), state)
    value = K.gaussian_kl(moved, state, 0.1, 0.1)
    assert value.dtype == jnp.float64
    d = K.num_parameters(state)
    sq = sum(
        float(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
        for a, b in zip(jax.tree.leaves(moved), jax.tree.leaves(state))
    )
    assert d == 64 * 64 + 64
    assert float(value) == pytest.approx(0.5 * sq / 0.01, rel=1e-12)


def test_jit_and_vmap_over_a_population():
    rng = np.random.default_rng(3)
    members = {"w": jnp.asarray(rng.normal(size=(6, 10)), jnp.float32)}
    prior = {"w": jnp.zeros(10, jnp.float32)}
    sigmas = jnp.linspace(0.1, 1.0, 6)
    batched = jax.jit(jax.vmap(lambda m, s: K.gaussian_kl(m, prior, s, 1.0)))(members, sigmas)
    single = [
        float(K.gaussian_kl({"w": members["w"][i]}, prior, float(np.float32(sigmas[i])), 1.0))
        for i in range(6)
    ]
    np.testing.assert_allclose(np.asarray(batched), single, rtol=1e-6)
    assert batched.dtype == jnp.float64


def test_bad_input():
    a = {"w": np.ones(3)}
    with pytest.raises(ValueError, match="prior_mean has tree structure"):
        K.gaussian_kl(a, {"v": np.ones(3)}, 0.1, 0.1)
    with pytest.raises(ValueError, match=r"prior_mean\['w'\] has shape \(4,\)"):
        K.gaussian_kl(a, {"w": np.ones(4)}, 0.1, 0.1)
    with pytest.raises(ValueError, match="sigma=-0.1"):
        K.gaussian_kl(a, a, -0.1, 0.1)
    with pytest.raises(ValueError, match="prior_sigma=0.0"):
        K.gaussian_kl(a, a, 0.1, 0.0)
    with pytest.raises(ValueError, match="sigma has tree structure"):
        K.gaussian_kl(a, a, {"x": np.ones(3)}, 0.1)
    with pytest.raises(ValueError, match="sigma \\(leaf 0\\)"):
        K.gaussian_kl(a, a, {"w": np.array([0.1, 0.0, 0.1])}, 0.1)
    traced = jax.jit(lambda s: K.gaussian_kl(a, a, s, 0.1))(-1.0)
    assert np.isnan(float(traced))


def test_kl_by_tensor_minimum_over_prior_scales():
    """experiments/kl_by_tensor.py's closed form ½ p ln(1 + D/(pσ²)) is the minimum over σ_P of the
    isotropic KL (dense grid around its σ_P² = σ² + D/p), and per-tensor priors never do worse."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "experiments" / "kl_by_tensor.py"
    spec = importlib.util.spec_from_file_location("kl_by_tensor", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for p, d, sigma in ((1000, 0.5, 0.01), (109_184, 54.9, 0.03), (10, 1e-6, 0.1)):
        best = math.sqrt(sigma**2 + d / p)
        grid = best * np.exp(np.linspace(-0.5, 0.5, 20_001))
        dense = float(jnp.min(K.isotropic_gaussian_kl(p, d, sigma, grid)))
        closed = float(script.min_kl(np.float64(p), np.float64(d), sigma))
        np.testing.assert_allclose(closed, dense, rtol=1e-6, atol=1e-12)
        assert (
            float(K.isotropic_gaussian_kl(p, d, sigma, 1.5 * best)) > closed
        )  # a minimum, not any value
    rng = np.random.default_rng(0)
    p_l, d_l = rng.integers(10, 5000, 30).astype(float), rng.exponential(1.0, 30)
    per_tensor = script.min_kl(p_l, d_l, 0.01).sum()
    assert per_tensor <= script.min_kl(p_l.sum(), d_l.sum(), 0.01)  # Jensen
    assert per_tensor < 0.99 * script.min_kl(
        p_l.sum(), d_l.sum(), 0.01
    )  # and strictly, for unequal D_l/p_l
