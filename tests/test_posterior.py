"""difftrade.theory.posterior: a posterior fitted on the bound set still gives valid certificates,
and a diagonal fit beats the isotropic grid where parameters differ in sensitivity."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_certificate import DIM, MU, linear_01_loss, make_bound_set

from difftrade.theory import member_certificate as C
from difftrade.theory.certificate_types import CertificateConfig
from difftrade.theory.float64 import float64_scope
from difftrade.theory.kl import gaussian_kl
from difftrade.theory.posterior import FitConfig, diagonal_kl, fit_posterior, quad_objective


def smooth_01(w: jax.Array, data: tuple[jax.Array, jax.Array]) -> jax.Array:
    """A differentiable surrogate of the 0-1 loss in [0, 1]: sigmoid of the negative margin."""
    x, y = data
    return jax.nn.sigmoid(-8.0 * y * (x @ w) / jnp.linalg.norm(w))


def test_diagonal_kl_matches_float64_reference():
    rng = np.random.default_rng(0)
    mean = {
        "a": rng.normal(size=(3, 4)).astype(np.float32),
        "b": rng.normal(size=5).astype(np.float32),
    }
    prior = {"a": np.zeros((3, 4), np.float32), "b": 0.1 * np.ones(5, np.float32)}
    log_sigma = jax.tree.map(
        lambda x: np.log(rng.uniform(0.05, 2.0, size=x.shape)).astype(np.float32), mean
    )
    ours = float(diagonal_kl(mean, log_sigma, prior, jnp.log(0.7)))
    reference = float(gaussian_kl(mean, prior, jax.tree.map(np.exp, log_sigma), 0.7))
    assert ours == pytest.approx(reference, rel=1e-5)
    # by hand for one parameter: ½[σ²/σ_P² − 1 − ln(σ²/σ_P²) + (μ − w₀)²/σ_P²]
    one = float(
        diagonal_kl(np.float32(1.0), np.float32(math.log(0.5)), np.float32(0.0), jnp.log(2.0))
    )
    assert one == pytest.approx(0.5 * (0.0625 - 1 - math.log(0.0625) + 0.25), rel=1e-6)


def test_quad_objective_is_the_quad_bound():
    # (√(L + B) + √B)² with B = (KL + ln(2√n/δ))/(2n)
    b = (10.0 + math.log(2 * math.sqrt(400) / 0.05)) / 800
    assert float(quad_objective(jnp.float32(0.1), jnp.float32(10.0), 400, 0.05)) == pytest.approx(
        (math.sqrt(0.1 + b) + math.sqrt(b)) ** 2, rel=1e-6
    )


def diagonal_gibbs_risk(
    mean: np.ndarray, sigma: np.ndarray, draws: int = 400_000, seed: int = 0
) -> float:
    """True 0-1 risk of N(mean, diag σ²) against w* = e₁ for x ~ N(0, I): E_w[angle(w, e₁)]/π
    (exact per draw; Monte-Carlo over w, standard error below 1e-3 here)."""
    w = mean + sigma * np.random.default_rng(seed).normal(size=(draws, mean.size))
    return float(np.mean(np.arctan2(np.linalg.norm(w[:, 1:], axis=1), w[:, 0])) / np.pi)


FIT = FitConfig(
    steps=150,
    learning_rate=0.05,
    mean_learning_rate=0.01,
    batch_size=64,
    init_sigma=0.1,
    init_prior_sigma=1.0,
    delta=0.025,
)
CERT = CertificateConfig(
    sigmas=(1.0,), prior_sigmas=(0.5, 1.0, 2.0), num_draws=4, selection="bound"
)  # 4 draws per example


@pytest.mark.slow
def test_posterior_fitted_on_the_bound_set_keeps_coverage():
    """Fit Q on the very examples the bound uses (valid: the prior never saw them) and certify:
    the bound holds in ≥ 1 − δ − δ′ of 100 repetitions against the exact Gibbs risk."""
    reps, n = 100, 4000
    key_data, key_fit, key_mc = jax.random.split(jax.random.key(11), 3)
    data = jax.vmap(lambda k: make_bound_set(k, n))(jax.random.split(key_data, reps))
    start = jnp.broadcast_to(jnp.asarray(MU), (reps, DIM))
    prior = jnp.zeros(DIM, jnp.float32)
    fit = jax.jit(jax.vmap(lambda p, d, k: fit_posterior(smooth_01, p, prior, d, k, FIT)))
    mean, sigma, history = fit(start, data, jax.random.split(key_fit, reps))
    assert np.all(
        np.asarray(history["objective"][:, -10:]).mean(1)
        < np.asarray(history["objective"][:, :10]).mean(1)
    )
    certs = jax.vmap(
        lambda m, d, k, s: C.certify(linear_01_loss, m, prior, d, k, CERT, posterior_scale=s)
    )(mean, data, jax.random.split(key_mc, reps), sigma)
    truth = np.array(
        [
            diagonal_gibbs_risk(
                np.asarray(mean[r], np.float64), np.asarray(sigma[r], np.float64), seed=r
            )
            for r in range(reps)
        ]
    )
    bound = np.asarray(certs.bound)
    assert np.all(np.asarray(certs.valid)) and np.all(bound < 1.0)
    assert np.mean(bound >= truth) >= float(certs.confidence[0])
    # informative (measured: median bound 0.077 against a median Gibbs risk of 0.016), and the
    # test has power: the Monte-Carlo estimate alone falls below the truth in most repetitions
    assert np.median(bound) < 0.15
    assert np.mean(np.asarray(certs.mc_risk_estimate) < truth) > 0.2
    # the fit moved the posterior (it is not the starting point with a fixed σ)
    assert np.all(np.abs(np.asarray(sigma) - 0.1).max(axis=1) > 0.02)


@pytest.mark.slow
def test_diagonal_fit_beats_the_isotropic_grid_when_sensitivities_differ():
    """Coordinate 2 is scaled by 100, so an isotropic σ must be tiny and pays ln(σ_P²/σ²) on all
    50 coordinates; the diagonal fit shrinks σ on that coordinate only."""
    dim, n = 50, 2000
    scale = np.ones(dim, np.float32)
    scale[2] = 100.0
    x = jax.random.normal(jax.random.key(0), (n, dim)) * scale
    y = jnp.sign(x[:, 0])
    data = (x, y)
    mu = np.zeros(dim, np.float32)
    mu[0], mu[1] = 2.0, 0.6
    prior = jnp.zeros(dim, jnp.float32)
    sigmas = tuple(float(s) for s in np.geomspace(1e-3, 1.0, 10))
    iso = C.certify(
        linear_01_loss,
        jnp.asarray(mu),
        prior,
        data,
        jax.random.key(1),
        CertificateConfig(
            sigmas=sigmas, prior_sigmas=CERT.prior_sigmas, num_draws=4, selection="bound"
        ),
    )
    mean, sigma, _ = fit_posterior(
        smooth_01,
        jnp.asarray(mu),
        prior,
        data,
        jax.random.key(2),
        FitConfig(
            steps=400,
            learning_rate=0.05,
            mean_learning_rate=0.01,
            init_sigma=0.01,
            init_prior_sigma=1.0,
        ),
    )
    fitted = C.certify(
        linear_01_loss, mean, prior, data, jax.random.key(1), CERT, posterior_scale=sigma
    )
    assert float(fitted.sigma) == 1.0 and float(np.asarray(sigma)[2]) < 0.1 * float(
        np.median(np.asarray(sigma))
    )
    assert float(fitted.kl) < 0.5 * float(iso.kl)
    assert float(fitted.bound) < float(iso.bound) - 0.05


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"steps": 0}, "steps"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"mean_learning_rate": -1.0}, "mean_learning_rate"),
        ({"init_sigma": math.inf}, "init_sigma"),
        ({"delta": 1.0}, "delta"),
    ],
)
def test_fit_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        FitConfig(**kwargs)


def test_certificate_kl_grid_for_diagonal_scales_matches_reference():
    """The closed-form KL grid (four parameter sums) against the per-parameter float64 KL, for
    σ_P on both sides of the fitted scales and σ_P equal to many of them (where it cancels)."""
    rng = np.random.default_rng(3)
    mean = {
        "w": rng.normal(size=(40, 30)).astype(np.float32),
        "b": rng.normal(size=30).astype(np.float32),
    }
    prior = jax.tree.map(lambda x: (x + 0.01 * rng.normal(size=x.shape)).astype(np.float32), mean)
    scale = {
        "w": np.full((40, 30), 0.03, np.float32),
        "b": rng.uniform(0.001, 0.1, size=30).astype(np.float32),
    }
    sig = np.array([1.0, 0.5])
    prior_grid = np.array([[0.001, 0.03, 0.0300001, 0.2]])
    with float64_scope():
        grid = np.asarray(
            C._diagonal_kl_grid(mean, prior, scale, jnp.asarray(sig), jnp.asarray(prior_grid))
        )
    for i, s in enumerate(sig):
        for j, sp in enumerate(prior_grid[0]):
            ref = float(
                gaussian_kl(
                    mean,
                    prior,
                    jax.tree.map(lambda x, s=s: s * np.asarray(x, np.float64), scale),
                    sp,
                )
            )
            assert ref <= grid[i, j] <= ref + 1e-9 * max(ref, 1.0), (s, sp, grid[i, j], ref)


def test_zero_mean_step_keeps_the_trained_weights():
    """mean_learning_rate=0 fits σ only: Q stays centred at the trained weights (a certificate of
    the member itself, `difftrade bound --fit-mean-lr 0`), while σ still moves."""
    x, y = make_bound_set(jax.random.key(5), 200)
    cfg = FitConfig(
        steps=30, learning_rate=0.05, mean_learning_rate=0.0, init_sigma=0.1, init_prior_sigma=1.0
    )
    mean, sigma, _ = fit_posterior(
        smooth_01, jnp.asarray(MU), jnp.zeros(DIM, jnp.float32), (x, y), jax.random.key(6), cfg
    )
    np.testing.assert_array_equal(np.asarray(mean), MU)
    assert np.abs(np.asarray(sigma) - 0.1).max() > 0.01
