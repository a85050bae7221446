"""difftrade.theory.member_certificate, population_certificate, certificate_budget: coverage on a
closed-form problem, vmap = per-member, δ accounting."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.integrate import simpson

from difftrade.config import level_weights
from difftrade.theory import member_certificate as C
from difftrade.theory.certificate_budget import confidence_budget, format_budget, print_budget
from difftrade.theory.certificate_types import CertificateConfig
from difftrade.theory.chernoff import per_example_convergence_bound, sample_convergence_bound
from difftrade.theory.float64 import float64_scope
from difftrade.theory.kl_inverse import kl_inv, kl_inv_lower
from difftrade.theory.population_certificate import certify_population
from difftrade.theory.special_functions import log_xi

DIM = 5
W_STAR = np.eye(DIM)[0]
MU = np.array([2.0, 0.6, 0.0, 0.0, 0.0], np.float32)  # angle atan(0.3) to w*: risk 0.0928


def linear_01_loss(w: jax.Array, data: tuple[jax.Array, jax.Array]) -> jax.Array:
    """0-1 loss of sign(x·w) against the label: shape [n]."""
    x, y = data
    return (jnp.sign(x @ w) != y).astype(jnp.float32)


def make_bound_set(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    x = jax.random.normal(key, (n, DIM))
    return x, jnp.sign(x @ jnp.asarray(W_STAR, jnp.float32))


def gibbs_risk(
    mu_par: float, mu_perp: float, sigma: float, dim: int = DIM, num: int = 2001
) -> float:
    """True 0-1 risk of the Gibbs predictor, E_w[angle(w, w*)]/π for w ~ N(μ, σ²I), x ~ N(0, I).

    For a fixed w the risk of sign(w·x) against sign(w*·x) is angle(w, w*)/π; with w* = e₁ the
    angle is atan2(‖w_⊥‖, w₁), w₁ ~ N(mu_par, σ²) and ‖w_⊥‖²/σ² ~ noncentral χ²(dim−1,
    (mu_perp/σ)²). 2-D Simpson quadrature (agrees with nested adaptive quadrature to ~1e-7 and
    with a 2e6-sample Monte-Carlo within its standard error).
    """
    nc = (mu_perp / sigma) ** 2
    dist = stats.ncx2(dim - 1, nc) if nc > 0 else stats.chi2(dim - 1)
    x = np.linspace(0.0, dist.ppf(1 - 1e-14), num)
    a = np.linspace(mu_par - 10 * sigma, mu_par + 10 * sigma, num)
    angle = np.arctan2(sigma * np.sqrt(x)[:, None], a[None, :])
    inner = simpson(angle * stats.norm.pdf(a, mu_par, sigma)[None, :], x=a, axis=1)
    return float(simpson(inner * dist.pdf(x), x=x) / np.pi)


def test_gibbs_risk_reference_matches_monte_carlo():
    rng = np.random.default_rng(0)
    w = MU.astype(np.float64) + 0.3 * rng.normal(size=(400_000, DIM))
    angle = np.arctan2(np.linalg.norm(w[:, 1:], axis=1), w[:, 0]) / np.pi
    assert abs(angle.mean() - gibbs_risk(2.0, 0.6, 0.3)) < 4 * angle.std() / math.sqrt(angle.size)
    assert gibbs_risk(2.0, 0.6, 0.02) == pytest.approx(
        math.atan(0.3) / math.pi, rel=1e-2
    )  # σ → 0: the network


CONFIG = CertificateConfig(
    sigmas=(0.1, 0.3, 1.0), prior_sigmas=(1.0, 3.0), num_draws=48, delta=0.025, delta_prime=0.025
)


@pytest.mark.parametrize("monte_carlo", ["per_example", "whole_set"])
def test_coverage_on_linear_gaussian_problem(monte_carlo):
    """The certificate holds in ≥ 1 − δ − δ′ of 200 independent repetitions (vmapped)."""
    reps, n = 200, 400
    truths = {s: gibbs_risk(2.0, 0.6, s) for s in CONFIG.sigmas}
    key_data, key_mc = jax.random.split(jax.random.key(2024))
    data = jax.vmap(lambda k: make_bound_set(k, n))(jax.random.split(key_data, reps))
    params = jnp.broadcast_to(jnp.asarray(MU), (reps, DIM))
    certs = certify_population(
        linear_01_loss,
        params,
        jnp.zeros(DIM, jnp.float32),
        data,
        jax.random.split(key_mc, reps),
        dataclasses.replace(CONFIG, monte_carlo=monte_carlo),
        prior_axis=None,
    )
    chosen = np.asarray(certs.sigma)
    truth = np.array([truths[float(s)] for s in chosen])
    bound = np.asarray(certs.bound)
    assert np.all(np.asarray(certs.valid))
    coverage = np.mean(bound >= truth)
    assert coverage >= float(certs.confidence[0]) == pytest.approx(0.95)
    assert np.all(bound <= 1.0) and np.all(bound > truth.min())
    # the test has power: the Monte-Carlo *estimate* alone falls below the truth often
    assert np.mean(np.asarray(certs.mc_risk_estimate) < truth) > 0.2
    # two-sided: lower_bound ≤ L(Q) ≤ bound in ≥ 1 − δ − δ′ − δ_low; the lower end is informative
    # (above 0) and the estimate alone is above the truth often
    lower = np.asarray(certs.lower_bound)
    assert (
        np.mean((lower <= truth) & (truth <= bound))
        >= float(certs.interval_confidence[0])
        == pytest.approx(0.925)
    )
    assert np.all(lower > 0) and np.all(lower < np.asarray(certs.mc_risk_estimate))
    assert np.mean(np.asarray(certs.mc_risk_estimate) > truth) > 0.2
    # the deterministic network's Clopper–Pearson interval covers its exact risk ≥ 95% of the time
    det_truth = math.atan(0.3) / math.pi
    inside = (np.asarray(certs.deterministic_lower) <= det_truth) & (
        det_truth <= np.asarray(certs.deterministic_upper)
    )
    assert inside.mean() >= 0.95


@pytest.mark.slow
def test_sample_convergence_covers_the_exact_bound_set_gibbs_risk():
    """Step 3 alone. For w ~ N(μ, σ²I), P(sign(x·w) ≠ y) = Φ(−y x·μ / (σ‖x‖)), so the bound
    set's Gibbs risk L̂(Q) is exact: both Monte-Carlo bounds must cover it in ≥ 1 − δ′ of 400
    repetitions (and their lower sides ≥ 1 − δ_low), and one fresh draw per example is tighter
    than 8 draws on the whole set."""
    reps, n, sigma = 400, 400, 1.0
    data = jax.vmap(lambda k: make_bound_set(k, n))(jax.random.split(jax.random.key(5), reps))
    x, y = (np.asarray(a, np.float64) for a in data)
    exact = stats.norm.cdf(
        -y * (x @ MU.astype(np.float64)) / (sigma * np.linalg.norm(x, axis=-1))
    ).mean(axis=-1)
    out = {}
    for mode, draws in (("per_example", 1), ("whole_set", 8)):
        config = CertificateConfig(
            sigmas=(sigma,),
            prior_sigmas=(1.0,),
            num_draws=draws,
            delta_prime=0.05,
            delta_lower=0.05,
            monte_carlo=mode,
        )
        certs = certify_population(
            linear_01_loss,
            jnp.broadcast_to(jnp.asarray(MU), (reps, DIM)),
            jnp.zeros(DIM, jnp.float32),
            data,
            jax.random.split(jax.random.key(6), reps),
            config,
            prior_axis=None,
        )
        out[mode] = np.asarray(certs.sample_convergence_bound)
        assert np.mean(out[mode] >= exact) >= 0.95, mode
        assert np.mean(np.asarray(certs.sample_convergence_lower) <= exact) >= 0.95, mode
        # power: the estimate alone is below L̂(Q) about half the time
        assert 0.25 < np.mean(np.asarray(certs.mc_risk_estimate) < exact) < 0.75, mode
    assert np.median(out["per_example"] - exact) < 0.5 * np.median(out["whole_set"] - exact)


def test_per_example_draws_are_fresh_and_shared_across_sigmas():
    """The loss reads the perturbation of one parameter: each (example, draw) gets its own
    standard normal ε, the same ε at every σ (common random numbers)."""

    def reveal(w, data):
        return jnp.clip(0.5 + 0.05 * w[0], 0.0, 1.0) * jnp.ones(data.shape[0])

    config = CertificateConfig(sigmas=(1.0, 2.0), num_draws=3)
    _, losses, ok = C._evaluate(
        reveal, jnp.zeros(4), jnp.zeros((500, 2)), jax.random.key(0), None, config
    )
    losses = losses[..., 0]  # the one loss column
    eps = (np.asarray(losses, np.float64) - 0.5) / (0.05 * np.array([1.0, 2.0]))  # [1500, 2]
    np.testing.assert_allclose(eps[:, 0], eps[:, 1], atol=1e-4)
    assert (
        np.all(np.asarray(ok)) and np.unique(eps[:, 0]).size > 1490
    )  # one shared draw per row would give 3
    assert stats.kstest(eps[:, 0], "norm").pvalue > 1e-3


def weighted_linear_01_loss(
    w: jax.Array, data: tuple[jax.Array, jax.Array, jax.Array]
) -> jax.Array:
    """weight · 0-1 loss of sign(x·w): shape [n]."""
    x, y, weight = data
    return weight * linear_01_loss(w, (x, y))


@pytest.mark.slow
def test_importance_weighted_certificate_covers_the_target_risk():
    """Two components: level A labels by e₁, level B by e₂ (μ is 73° from e₂). Training mix
    S = (0.9, 0.1), target T = (0.5, 0.5): B · (certificate of the weighted loss) bounds the
    target Gibbs risk 0.5·R_A + 0.5·R_B in ≥ 1 − δ − δ′ of 200 repetitions."""
    from difftrade.theory.change_of_measure import importance_weights, lp_shift_bound

    reps, n = 200, 2000
    weight, scale, pi = importance_weights(np.array([0.5, 0.5]), np.array([0.9, 0.1]))
    assert scale == pytest.approx(5.0) and pi == 0.0
    truths = {
        s: 0.5 * gibbs_risk(2.0, 0.6, s) + 0.5 * gibbs_risk(0.6, 2.0, s) for s in CONFIG.sigmas
    }

    def bound_set(key):
        kx, kl = jax.random.split(key)
        x = jax.random.normal(kx, (n, DIM))
        level = (jax.random.uniform(kl, (n,)) < 0.1).astype(jnp.int32)  # 1 = B with probability s_B
        y = jnp.sign(jnp.where(level == 0, x[:, 0], x[:, 1]))
        return x, y, jnp.asarray(weight, jnp.float32)[level]

    key_data, key_mc = jax.random.split(jax.random.key(99))
    config = dataclasses.replace(CONFIG, binary_loss=False, selection="bound")
    certs = certify_population(
        weighted_linear_01_loss,
        jnp.broadcast_to(jnp.asarray(MU), (reps, DIM)),
        jnp.zeros(DIM, jnp.float32),
        jax.vmap(bound_set)(jax.random.split(key_data, reps)),
        jax.random.split(key_mc, reps),
        config,
        prior_axis=None,
    )
    truth = np.array([truths[float(s)] for s in np.asarray(certs.sigma)])
    bound = scale * np.asarray(certs.bound) + pi
    assert np.all(np.asarray(certs.valid))
    assert np.mean(bound >= truth) >= 0.95 and bound.max() < 1.0
    # power: B times the Monte-Carlo estimate falls below the truth often; the unweighted
    # risk of the S-sample (what the source certificate sees) is far below the target risk
    assert np.mean(scale * np.asarray(certs.mc_risk_estimate) < truth) > 0.2
    # it sees where the errors fall: below the change of measure even at the *exact* source risk
    source = {
        s: 0.9 * gibbs_risk(2.0, 0.6, s) + 0.1 * gibbs_risk(0.6, 2.0, s) for s in CONFIG.sigmas
    }
    exact_lp = np.asarray(
        lp_shift_bound(
            np.array([source[float(s)] for s in np.asarray(certs.sigma)]),
            np.array([0.5, 0.5]),
            np.array([0.9, 0.1]),
        )
    )
    assert np.median(bound) < np.median(exact_lp)


@pytest.mark.slow
@pytest.mark.parametrize("monte_carlo", ["per_example", "whole_set"])
def test_joint_columns_equal_separate_certificates(monte_carlo):
    """Two losses of the same examples (0-1 and weight · 0-1) certified from one set of forward
    passes: each column equals the certificate computed alone with the same key, every field,
    although the columns choose different σ and use different deterministic intervals."""
    x, y = make_bound_set(jax.random.key(11), 300)
    weight = jnp.asarray(np.random.default_rng(2).uniform(0.0, 1.0, 300), jnp.float32)
    mu, prior, key = jnp.asarray(MU), jnp.zeros(DIM, jnp.float32), jax.random.key(12)
    plain = CertificateConfig(
        sigmas=(0.05, 0.5, 2.0),
        prior_sigmas=(0.5, 2.0),
        num_draws=2,
        monte_carlo=monte_carlo,
        selection="bound",
    )
    weighted = dataclasses.replace(plain, binary_loss=False, delta=0.01, selection="flatness")

    def both(w, d):
        loss = linear_01_loss(w, d[:2])
        return jnp.stack([loss, d[2] * loss], axis=1)

    joint = C.certify(both, mu, prior, (x, y, weight), key, (plain, weighted))
    alone = (
        C.certify(linear_01_loss, mu, prior, (x, y), key, plain),
        C.certify(weighted_linear_01_loss, mu, prior, (x, y, weight), key, weighted),
    )
    assert isinstance(joint, tuple) and len(joint) == 2
    for got, want in zip(joint, alone):
        for field, value in want._asdict().items():
            np.testing.assert_allclose(
                np.asarray(getattr(got, field)), np.asarray(value), rtol=1e-12, err_msg=field
            )
    assert float(joint[0].bound) != float(
        joint[1].bound
    )  # two different statements, not one copied
    # a population call returns the same tuple with a member axis
    pop = certify_population(
        both,
        mu[None],
        prior,
        jax.tree.map(lambda a: a[None], (x, y, weight)),
        key[None],
        (plain, weighted),
        prior_axis=None,
    )
    np.testing.assert_allclose(np.asarray(pop[1].bound)[0], float(joint[1].bound), rtol=1e-12)


@pytest.mark.slow
def test_shared_selection_certifies_the_first_columns_posterior():
    """selection='shared': the second column takes the (σ, σ_P) the first chose, so both bound
    the same Q; its bound is its own grid's entry there, never below its own best."""
    x, y = make_bound_set(jax.random.key(21), 300)
    weight = jnp.asarray(np.random.default_rng(3).uniform(0.0, 1.0, 300), jnp.float32)
    mu, prior, key = jnp.asarray(MU), jnp.zeros(DIM, jnp.float32), jax.random.key(22)
    first = CertificateConfig(
        sigmas=(0.05, 0.5, 2.0), prior_sigmas=(0.5, 2.0), num_draws=2, selection="flatness"
    )
    own = dataclasses.replace(first, binary_loss=False, selection="bound")

    def both(w, d):
        loss = linear_01_loss(w, d[:2])
        return jnp.stack([loss, d[2] * loss], axis=1)

    a, shared = C.certify(
        both, mu, prior, (x, y, weight), key, (first, dataclasses.replace(own, selection="shared"))
    )
    _, best = C.certify(both, mu, prior, (x, y, weight), key, (first, own))
    assert float(shared.sigma) == float(a.sigma) and float(shared.prior_sigma) == float(
        a.prior_sigma
    )
    i, j = first.sigmas.index(float(a.sigma)), first.prior_sigmas.index(float(a.prior_sigma))
    assert float(shared.bound) == float(np.asarray(best.bound_grid)[i, j])
    assert float(shared.bound) >= float(best.bound)
    # the first column (flatness) picks σ = 0.05 here, the weighted one alone 0.5: the choices differ
    assert float(best.sigma) != float(a.sigma)


def test_joint_columns_errors():
    data = make_bound_set(jax.random.key(0), 10)
    a = CertificateConfig(sigmas=(0.1,), num_draws=2)
    mu, key = jnp.asarray(MU), jax.random.key(0)
    with pytest.raises(ValueError, match="sigmas differs between columns"):
        C.certify(linear_01_loss, mu, mu, data, key, (a, dataclasses.replace(a, sigmas=(0.2,))))
    with pytest.raises(ValueError, match="num_draws differs between columns"):
        C.certify(linear_01_loss, mu, mu, data, key, (a, dataclasses.replace(a, num_draws=3)))
    with pytest.raises(ValueError, match=r"allowed: \[n, 2\]"):
        C.certify(linear_01_loss, mu, mu, data, key, (a, a))  # one column for two configs
    with pytest.raises(ValueError, match="non-empty tuple"):
        C.certify(linear_01_loss, mu, mu, data, key, ())
    with pytest.raises(ValueError, match="selection='shared' is not allowed for the first"):
        C.certify(linear_01_loss, mu, mu, data, key, dataclasses.replace(a, selection="shared"))
    with pytest.raises(ValueError, match="prior_sigmas differs between columns"):
        C.certify(
            linear_01_loss,
            mu,
            mu,
            data,
            key,
            (a, dataclasses.replace(a, prior_sigmas=(1.0,), selection="shared")),
        )


def _member_inputs(num: int, n: int = 300):
    rng = np.random.default_rng(7)
    params = jnp.asarray(MU + 0.3 * rng.normal(size=(num, DIM)), jnp.float32)
    prior = jnp.asarray(0.1 * rng.normal(size=(num, DIM)), jnp.float32)
    data = jax.vmap(lambda k: make_bound_set(k, n))(jax.random.split(jax.random.key(1), num))
    keys = jax.random.split(jax.random.key(3), num)
    return params, prior, data, keys


# Few distinct configs: every new (config, loss_fn, shapes) compiles a program (~2-3 s on CPU).
SMALL = CertificateConfig(
    sigmas=(0.05, 0.2, 0.8), prior_sigmas=(0.5, 2.0), num_draws=16, delta=0.01, delta_prime=0.02
)


def _member(i: int, inputs):
    params, prior, data, keys = inputs
    return params[i], prior[i], jax.tree.map(lambda a: a[i], data), keys[i]


@pytest.mark.slow
def test_population_call_equals_per_member_calls():
    inputs = _member_inputs(4)
    params, prior, data, keys = inputs
    batched = certify_population(linear_01_loss, params, prior, data, keys, SMALL)
    for i in range(4):
        single = C.certify(linear_01_loss, *_member(i, inputs), SMALL)
        for field, value in single._asdict().items():
            np.testing.assert_allclose(
                np.asarray(getattr(batched, field))[i], np.asarray(value), rtol=1e-12, err_msg=field
            )


@pytest.mark.slow
def test_one_key_for_every_member_equals_per_member_calls_with_that_key():
    """key_axis=None: every member draws the same ε (generated once); member i's certificate is
    the one certify() gives it alone with that key, so each statement is unchanged in kind."""
    inputs = _member_inputs(3)
    params, prior, data, keys = inputs
    shared = certify_population(linear_01_loss, params, prior, data, keys[0], SMALL, key_axis=None)
    for i in range(3):
        p, p0, d, _ = _member(i, inputs)
        single = C.certify(linear_01_loss, p, p0, d, keys[0], SMALL)
        for field in ("bound", "mc_risk_estimate", "sigma", "kl"):
            np.testing.assert_allclose(
                np.asarray(getattr(shared, field))[i],
                np.asarray(getattr(single, field)),
                rtol=1e-12,
            )
    own = certify_population(linear_01_loss, params, prior, data, keys, SMALL)
    assert not np.array_equal(
        np.asarray(own.mc_risk_estimates)[1:], np.asarray(shared.mc_risk_estimates)[1:]
    )


@pytest.mark.slow
def test_shared_axes_and_batched_map_agree():
    inputs = _member_inputs(4)
    params, prior, data, keys = inputs
    p0, d0 = prior[0], jax.tree.map(lambda a: a[0], data)
    shared = certify_population(
        linear_01_loss, params, p0, d0, keys, SMALL, data_axis=None, prior_axis=None
    )
    single = C.certify(linear_01_loss, params[1], p0, d0, keys[1], SMALL)
    np.testing.assert_allclose(float(shared.bound[1]), float(single.bound), rtol=1e-12)
    chunked = C.certify(
        linear_01_loss, params[1], p0, d0, keys[1], dataclasses.replace(SMALL, map_batch_size=8)
    )
    np.testing.assert_allclose(float(chunked.bound), float(single.bound), rtol=1e-12)
    exact = C.certify(
        linear_01_loss, params[1], p0, d0, keys[1], dataclasses.replace(SMALL, xi="exact")
    )
    assert float(exact.bound) < float(single.bound)  # Maurer's ξ(n) < 2√n
    c = (float(exact.kl) + log_xi(300) - math.log(SMALL.delta) + math.log(6)) / 300
    assert float(exact.bound) == pytest.approx(
        float(kl_inv(float(exact.sample_convergence_bound), c)), rel=1e-14
    )


@pytest.mark.slow  # certifies a population over several deltas
def test_every_delta_is_paid_in_the_numbers():
    inputs = _member_inputs(4)
    params, prior = inputs[0], inputs[1]
    cert = C.certify(linear_01_loss, *_member(0, inputs), SMALL)
    n, k, kp, m = 300, 3, 2, 16
    assert float(cert.num_examples) == n
    # sample convergence at δ′/K for each σ (σ is chosen after the draws): m draws per example
    sc = per_example_convergence_bound(cert.mc_risk_estimates, m * n, SMALL.delta_prime / k)
    i = SMALL.sigmas.index(float(cert.sigma))
    assert float(cert.sample_convergence_bound) == float(sc[i])
    np.testing.assert_allclose(  # ... = kl⁻¹(X̄, ln(K/δ′)/(m·n)), independently of the helper
        float(sc[i]),
        float(kl_inv(float(cert.mc_risk_estimates[i]), math.log(k / SMALL.delta_prime) / (m * n))),
        rtol=1e-14,
    )
    whole = C.certify(
        linear_01_loss, *_member(0, inputs), dataclasses.replace(SMALL, monte_carlo="whole_set")
    )
    j = SMALL.sigmas.index(float(whole.sigma))
    assert float(whole.sample_convergence_bound) == float(
        sample_convergence_bound(whole.mc_risk_estimates, m, SMALL.delta_prime / k)[j]
    )
    # kl bound pays ln(2√n/δ) and ln(K·K_P)
    c = (float(cert.kl) + math.log(2 * math.sqrt(n) / SMALL.delta) + math.log(k * kp)) / n
    assert float(cert.bound) == pytest.approx(
        float(kl_inv(float(cert.sample_convergence_bound), c)), rel=1e-14
    )
    # KL is the isotropic Gaussian KL at the chosen pair
    sq = float(np.sum((np.asarray(params[0], np.float64) - np.asarray(prior[0], np.float64)) ** 2))
    s, sp = float(cert.sigma), float(cert.prior_sigma)
    kl = 0.5 * (DIM * (s**2 / sp**2 - 1 - math.log(s**2 / sp**2)) + sq / sp**2)
    assert float(cert.kl) == pytest.approx(kl, rel=1e-12)
    assert float(cert.confidence) == pytest.approx(1 - 0.01 - 0.02)
    assert float(cert.bound) >= float(cert.sample_convergence_bound) >= float(cert.mc_risk_estimate)
    # the lower side: Ľ = kl⁻¹_lower(X̄, ln(K/δ_low)/(m·n)), then the same c inverted from below
    assert float(cert.sample_convergence_lower) == float(
        kl_inv_lower(float(cert.mc_risk_estimates[i]), math.log(k / SMALL.delta_lower) / (m * n))
    )
    # ... at every σ_P (all grid points hold on one event): the best one for the chosen σ
    lowers = [
        float(
            kl_inv_lower(
                float(cert.sample_convergence_lower),
                (
                    float(cert.kl_grid[i, jj])
                    + math.log(2 * math.sqrt(n) / SMALL.delta)
                    + math.log(k * kp)
                )
                / n,
            )
        )
        for jj in range(kp)
    ]
    assert float(cert.lower_bound) == max(lowers)
    assert float(whole.sample_convergence_lower) == float(
        kl_inv_lower(float(whole.mc_risk_estimates[j]), math.log(2 * k / SMALL.delta_lower) / m)
    )
    assert (
        float(cert.lower_bound)
        <= float(cert.sample_convergence_lower)
        <= float(cert.mc_risk_estimate)
    )
    assert float(cert.interval_confidence) == pytest.approx(1 - 0.01 - 0.02 - SMALL.delta_lower)
    # flatness: the largest σ whose MC risk is within the tolerance (else the smallest σ)
    mc, det = np.asarray(cert.mc_risk_estimates), float(cert.deterministic_risk)
    flat = [sig for sig, r in zip(SMALL.sigmas, mc) if r <= det + SMALL.flatness_tolerance]
    assert float(cert.sigma) == (max(flat) if flat else min(SMALL.sigmas))
    # ... and σ_P minimises the bound given σ
    assert float(cert.bound) == float(np.min(np.asarray(cert.bound_grid)[i]))


@pytest.mark.slow
def test_selection_rules():
    inputs = _member_inputs(4)
    args = (linear_01_loss, *_member(0, inputs))
    sigmas = (10.0, 0.01, 1.0, 0.1)  # unsorted on purpose
    loose = C.certify(
        *args,
        CertificateConfig(sigmas=sigmas, prior_sigmas=(1.0,), num_draws=8, flatness_tolerance=1.0),
    )
    assert float(loose.sigma) == 10.0  # everything is "flat": the largest σ
    best = C.certify(*args, dataclasses.replace(SMALL, selection="bound"))
    assert float(best.bound) == float(np.min(np.asarray(best.bound_grid)))
    assert float(best.bound) <= float(C.certify(*args, SMALL).bound)
    # all candidates vacuous (a prior far too narrow): the tie goes to the smallest KL, not to
    # the first grid point, so the reported KL measures the distance to a non-vacuous certificate
    narrow = dataclasses.replace(SMALL, selection="bound", prior_sigmas=(1e-3, 2e-3))
    vac = C.certify(*args, narrow)
    assert np.all(np.asarray(vac.bound_grid) == 1.0)
    assert (
        float(vac.kl)
        == float(np.min(np.asarray(vac.kl_grid)))
        < float(np.asarray(vac.kl_grid)[0, 0])
    )


@pytest.mark.slow  # about 14 s of certification
def test_tied_prior_and_diagonal_scale():
    inputs = _member_inputs(4)
    params, prior = inputs[0], inputs[1]
    args = (linear_01_loss, *_member(0, inputs))
    tied = C.certify(*args, CertificateConfig(sigmas=(0.1, 0.5), num_draws=8, selection="bound"))
    sq = float(np.sum((np.asarray(params[0], np.float64) - np.asarray(prior[0], np.float64)) ** 2))
    assert float(tied.prior_sigma) == float(tied.sigma)
    assert float(tied.kl) == pytest.approx(sq / (2 * float(tied.sigma) ** 2), rel=1e-12)
    iso = C.certify(*args, SMALL)
    diag = C.certify(*args, SMALL, posterior_scale=jnp.ones(DIM, jnp.float32))
    for field in ("bound", "kl", "mc_risk_estimate", "sigma"):
        np.testing.assert_allclose(
            float(getattr(diag, field)), float(getattr(iso, field)), rtol=1e-12
        )


def test_nnx_model_and_invalid_losses():
    from flax import nnx

    graph, state = nnx.split(nnx.Linear(DIM, 1, rngs=nnx.Rngs(0)))

    def loss_fn(params, data):
        x, y = data
        logits = nnx.merge(graph, params)(x)[:, 0]
        return jax.nn.sigmoid(-y * logits)  # a [0, 1]-valued, non-binary loss

    data = make_bound_set(jax.random.key(5), 200)
    config = CertificateConfig(
        sigmas=(0.01, 0.1), prior_sigmas=(1.0,), num_draws=8, binary_loss=False
    )
    cert = C.certify(loss_fn, state, state, data, jax.random.key(0), config)
    assert bool(cert.valid) and 0 < float(cert.bound) < 1
    r = (
        float(cert.sigma) ** 2
    )  # σ²/σ_P² with σ_P = 1 and the prior at the weights: KL = D(r − 1 − ln r)/2
    assert float(cert.kl) == pytest.approx(0.5 * (DIM + 1) * (r - 1 - math.log(r)), rel=1e-12)
    assert (
        float(cert.deterministic_lower)
        <= float(cert.deterministic_risk)
        <= float(cert.deterministic_upper)
    )
    # losses outside [0, 1] are caught (under jit too): valid=False, certified numbers NaN
    bad = C.certify(lambda p, d: 2.0 * loss_fn(p, d), state, state, data, jax.random.key(0), config)
    assert (
        not bool(bad.valid) and np.isnan(float(bad.bound)) and np.isnan(float(bad.mc_risk_estimate))
    )
    # a non-binary loss where binary_loss=True is claimed: no Clopper–Pearson interval (NaN)
    with float64_scope():
        lower, upper = C._deterministic_interval(
            jnp.float32(0.3), jnp.bool_(False), 200, CertificateConfig(sigmas=(0.1,))
        )
    assert np.isnan(float(lower)) and np.isnan(float(upper))


def test_budget_itemises_every_delta(capsys):
    config = CertificateConfig(
        sigmas=(0.1, 0.2, 0.4),
        prior_sigmas=(1.0, 2.0),
        num_draws=50,
        delta=0.02,
        delta_prime=0.01,
        delta_lower=0.015,
        delta_heldout=0.05,
    )
    items = confidence_budget(config)
    assert [round(i.delta, 12) for i in items] == [0.02, 0.01, 0.015, 0.05]
    text = format_budget(config, num_members=4)
    assert "δ/6" in text and "δ′/3" in text and "r=50 fresh draws per example" in text
    whole = format_budget(dataclasses.replace(config, monte_carlo="whole_set"))
    assert "ln(2K/δ′)/m with m=50 draws on the whole set" in whole
    assert "confidence 0.97" in text and "confidence 0.92" in text and "4 × 0.03 = 0.12" in text
    assert "δ_low/3" in text and "δ + δ′ + δ_low = 0.045 → confidence 0.955" in text
    print_budget(config)
    assert "confidence budget" in capsys.readouterr().out
    assert "vacuous" in format_budget(config, num_members=40)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"sigmas": ()}, "sigmas="),
        ({"sigmas": (0.1, -1.0)}, "sigmas="),
        ({"sigmas": (0.1, 0.1)}, "sigmas="),
        ({"sigmas": (0.1,), "prior_sigmas": (0.0,)}, "prior_sigmas="),
        ({"sigmas": (0.1,), "num_draws": 0}, "num_draws=0"),
        ({"sigmas": (0.1,), "delta": 0.0}, "delta=0.0"),
        ({"sigmas": (0.1,), "delta_prime": 1.5}, "delta_prime=1.5"),
        ({"sigmas": (0.1,), "delta": 0.6, "delta_prime": 0.5}, "delta \\+ delta_prime"),
        ({"sigmas": (0.1,), "delta_lower": 0.0}, "delta_lower=0.0"),
        (
            {"sigmas": (0.1,), "delta": 0.4, "delta_prime": 0.3, "delta_lower": 0.3},
            "delta_lower = 1.0",
        ),
        ({"sigmas": (0.1,), "selection": "best"}, "selection='best'"),
        ({"sigmas": (0.1,), "flatness_tolerance": -1.0}, "flatness_tolerance=-1.0"),
        ({"sigmas": (0.1,), "xi": "approx"}, "xi='approx'"),
        ({"sigmas": (0.1,), "map_batch_size": 0}, "map_batch_size=0"),
    ],
)
def test_config_errors(kwargs, field):
    with pytest.raises(ValueError, match=field):
        CertificateConfig(**kwargs)


def test_call_errors():
    data = make_bound_set(jax.random.key(0), 10)
    config = CertificateConfig(sigmas=(0.1,), num_draws=2)
    with pytest.raises(ValueError, match="loss_fn returned shape"):
        C.certify(
            lambda w, d: jnp.zeros((10, 2)),
            jnp.asarray(MU),
            jnp.asarray(MU),
            data,
            jax.random.key(0),
            config,
        )
    with pytest.raises(ValueError, match="config="):
        C.certify(
            linear_01_loss,
            jnp.asarray(MU),
            jnp.asarray(MU),
            data,
            jax.random.key(0),
            {"sigmas": (0.1,)},
        )
    with pytest.raises(ValueError, match="prior_mean has tree structure"):
        C.certify(
            linear_01_loss, jnp.asarray(MU), {"w": jnp.asarray(MU)}, data, jax.random.key(0), config
        )
    with pytest.raises(ValueError, match="num_members=0"):
        format_budget(config, num_members=0)


@pytest.mark.slow
def test_per_example_draws_through_the_pallas_kernels():
    """Per-example draws give every example its own weights, so a certificate vmaps the model
    over (member, example, σ) weight sets: the fused kernels' batching rule must carry that. In
    interpret mode, the Monte-Carlo estimates equal the XLA model's (clipped CE, a [0, 1] loss)."""
    from difftrade.certify import ClippedCrossEntropy
    from difftrade.config.model_config import ModelConfig
    from difftrade.tasks import data
    from difftrade.tasks.addition import Addition
    from difftrade.train.trainer import member_data_root, member_init_params

    task, key, seeds = Addition(d_max=2), jax.random.key(0), jnp.arange(2)
    base = ModelConfig(seq_len=task.seq_len - 1, d_model=16, num_layers=1, num_heads=2)
    params = jax.vmap(lambda s: member_init_params(base, key, s))(seeds)
    weights = jnp.tile(jnp.asarray(level_weights.uniform(task), jnp.float32), (2, 1))
    bound_set = jax.vmap(
        lambda s, w: data.examples(task, member_data_root(key, s), 2, w, jnp.arange(8))[:2]
    )(seeds, weights)
    config = CertificateConfig(
        sigmas=(0.1, 1.0), prior_sigmas=(1.0,), num_draws=2, selection="bound", binary_loss=False
    )
    estimates = {}
    for impl in ("xla", "pallas"):
        cert = certify_population(
            ClippedCrossEntropy(
                dataclasses.replace(base, attention=impl, mlp=impl, kernels="interpret")
            ),
            params,
            params,
            bound_set,
            jax.random.split(key, 2),
            config,
        )
        estimates[impl] = np.asarray(cert.mc_risk_estimates)
    assert np.all(
        (estimates["xla"][:, 0] > 0.05) & (estimates["xla"][:, 0] < 0.95)
    )  # σ = 0.1: not saturated
    np.testing.assert_allclose(estimates["pallas"], estimates["xla"], rtol=1e-5)
