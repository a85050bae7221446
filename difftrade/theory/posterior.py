"""Fit a diagonal Gaussian posterior by minimising a PAC-Bayes bound (Dziugaite & Roy 2017).

An isotropic posterior ``N(w, σ²I)`` must pay ``ln(σ_P²/σ²)`` on *every* parameter, so for a
network with ~10⁵ parameters the KL is of order 10⁵ or more and the certificate is vacuous
(``docs/theory.md``). Letting each parameter have its own scale, and letting the mean move
back towards the prior centre where the data do not need it, shrinks the KL by orders of
magnitude. This module fits ``Q = N(μ, diag σ²)`` by stochastic gradient descent on the
"quad" bound (Pérez-Ortiz et al. 2021)

    B = (KL(Q‖P) + ln(2√n/δ)) / (2n),   objective = (√(L̂_s(Q) + B) + √B)²

with one reparameterised weight draw per step (``w = μ + σ ⊙ ε``) and a minibatch of the
``n`` bound-set examples, where ``L̂_s`` is a differentiable *surrogate* loss in [0, 1] (e.g.
the cross-entropy clipped at ``ln(1/p_min)`` and divided by it). The prior
``P = N(w₀, σ_P² I)`` keeps its centre ``w₀`` fixed; ``σ_P`` is fitted too, as a guide only:
the certificate (:func:`difftrade.theory.member_certificate.certify` with ``posterior_scale=σ``) then
chooses σ_P from its own fixed grid and pays ``ln K_P`` for it.

**Why this is valid.** A PAC-Bayes bound with a prior that does not depend on the bound set
holds for *all* posteriors at once, so Q may be fitted on the bound set itself (here: the
member's own training examples, or a fresh set). What must not touch the bound set is the
prior: ``w₀`` (the data-free initialisation or a pretrained base) and the σ_P grid. The
Monte-Carlo estimate of the certified risk uses fresh draws, independent of the fit
(``certify`` folds its own key). ``tests/test_posterior.py`` checks coverage on a problem with
a closed-form risk, with the posterior fitted on the very data the bound uses.

Shapes: ``params``/``prior_params`` are pytrees of one member's weights; ``data`` is any
pytree whose leaves have a leading example axis ``n``; :func:`fit_posterior` returns
``(mean, sigma)`` pytrees with the structure and shapes of ``params`` and a history dict of
``[steps]`` arrays. It is jit- and vmap-compatible over (params, prior_params, data, key).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

PyTree = Any
SurrogateFn = Callable[[PyTree, PyTree], jax.Array]


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Settings of the posterior fit (static, hashable; fixed before the bound set is seen).

    Attributes:
      steps: Adam steps.
      learning_rate: Adam step size for log σ and log σ_P.
      mean_learning_rate: Adam step size for μ (small: μ starts at a trained solution, and a
        large step lets the KL term pull it back to the prior and lose the fit).
      batch_size: bound-set examples per step (sampled with replacement).
      init_sigma: initial posterior σ for every parameter (absolute).
      init_prior_sigma: initial σ_P of the guide.
      delta: the δ of the objective (match the certificate's).
    """

    steps: int = 1000
    learning_rate: float = 1e-2
    mean_learning_rate: float = 1e-4
    batch_size: int = 128
    init_sigma: float = 1e-3
    init_prior_sigma: float = 3e-2
    delta: float = 0.025

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"posterior fit {name}={v!r}; allowed: an integer >= 1")
        for name in ("learning_rate", "mean_learning_rate", "init_sigma", "init_prior_sigma"):
            v = getattr(self, name)
            low = 0.0 if name == "mean_learning_rate" else math.ulp(0.0)
            if not isinstance(v, (int, float)) or not (low <= v < math.inf):
                raise ValueError(
                    f"posterior fit {name}={v!r}; allowed: a float > 0 (mean_learning_rate: >= 0)"
                )
        if not isinstance(self.delta, (int, float)) or not 0 < self.delta < 1:
            raise ValueError(f"posterior fit delta={self.delta!r}; allowed: a float in (0, 1)")


def _is_param(x: jax.Array) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def diagonal_kl(
    mean: PyTree, log_sigma: PyTree, prior_mean: PyTree, log_prior_sigma: jax.Array
) -> jax.Array:
    """``KL(N(μ, diag e^{2ρ}) ‖ N(w₀, e^{2ρ_P} I))`` in float32, differentiable (for the fit only;
    the certificate recomputes it in float64). Non-floating leaves are skipped."""
    total = jnp.zeros((), jnp.float32)
    for m, r, m0 in zip(
        jax.tree.leaves(mean), jax.tree.leaves(log_sigma), jax.tree.leaves(prior_mean)
    ):
        if not _is_param(m):
            continue
        m, r, m0 = (jnp.asarray(a, jnp.float32) for a in (m, r, m0))
        t = 2.0 * (r - log_prior_sigma)  # ln(σ²/σ_P²)
        total = (
            total
            + jnp.sum(jnp.expm1(t) - t)
            + jnp.sum(jnp.square(m - m0)) * jnp.exp(-2.0 * log_prior_sigma)
        )
    return 0.5 * total


def quad_objective(empirical: jax.Array, kl: jax.Array, n: int, delta: float) -> jax.Array:
    """``(√(L̂ + B) + √B)²`` with ``B = (KL + ln(2√n/δ))/(2n)`` (Pérez-Ortiz et al. 2021)."""
    b = (kl + math.log(2.0 * math.sqrt(n) / delta)) / (2.0 * n)
    return jnp.square(jnp.sqrt(empirical + b) + jnp.sqrt(b))


def fit_posterior(
    surrogate_fn: SurrogateFn,
    params: PyTree,
    prior_params: PyTree,
    data: PyTree,
    key: jax.Array,
    config: FitConfig,
) -> tuple[PyTree, PyTree, dict[str, jax.Array]]:
    """Fit ``Q = N(μ, diag σ²)`` to the bound set ``data`` (see the module docstring).

    Args:
      surrogate_fn: pure ``(params, batch) -> [b]`` differentiable losses in [0, 1].
      params: trained weights (the starting μ). prior_params: the prior centre w₀.
      data: the bound set, leaves ``[n, ...]``. key: PRNG key (minibatches and weight draws).
      config: :class:`FitConfig` (static).

    Returns:
      ``(mean, sigma, history)``: μ and σ with the structure, shapes and dtypes of ``params``
      (σ > 0; non-floating leaves of σ are ones), and ``history`` with ``objective``, ``kl``,
      ``surrogate`` and ``prior_sigma``, each ``[steps]`` float32.
    """
    n = int(jax.tree.leaves(data)[0].shape[0])
    cast = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32) if _is_param(x) else x, t)
    mu0, w0 = cast(params), cast(prior_params)
    rho0 = jax.tree.map(
        lambda x: jnp.full(jnp.shape(x), math.log(config.init_sigma), jnp.float32), mu0
    )
    state = (mu0, rho0, jnp.asarray(math.log(config.init_prior_sigma), jnp.float32))
    # μ moves with its own (small, possibly zero) step; log σ and log σ_P with learning_rate
    tx = optax.multi_transform(
        {"mean": optax.adam(config.mean_learning_rate), "scale": optax.adam(config.learning_rate)},
        lambda st: (
            jax.tree.map(lambda _: "mean", st[0]),
            jax.tree.map(lambda _: "scale", st[1]),
            "scale",
        ),
    )

    def objective(state, step_key):
        mu, rho, rho_p = state
        k_batch, k_noise = jax.random.split(step_key)
        idx = jax.random.randint(k_batch, (min(config.batch_size, n),), 0, n)
        batch = jax.tree.map(lambda x: x[idx], data)
        leaves, treedef = jax.tree.flatten(mu)
        keys = jax.random.split(k_noise, len(leaves))
        eps = jax.tree.unflatten(
            treedef, [jax.random.normal(k, jnp.shape(x), jnp.float32) for k, x in zip(keys, leaves)]
        )
        w = jax.tree.map(lambda m, r, e: m + jnp.exp(r) * e if _is_param(m) else m, mu, rho, eps)
        w = jax.tree.map(lambda x, like: jnp.asarray(x, jnp.result_type(like)), w, params)
        surrogate = jnp.mean(surrogate_fn(w, batch))
        kl = diagonal_kl(mu, rho, w0, rho_p)
        return quad_objective(surrogate, kl, n, config.delta), (kl, surrogate, jnp.exp(rho_p))

    def step(carry, step_key):
        state, opt_state = carry
        (value, (kl, surrogate, sp)), grads = jax.value_and_grad(objective, has_aux=True)(
            state, step_key
        )
        updates, opt_state = tx.update(grads, opt_state, state)
        return (optax.apply_updates(state, updates), opt_state), (value, kl, surrogate, sp)

    (state, _), (values, kls, surrogates, sps) = jax.lax.scan(
        step, (state, tx.init(state)), jax.random.split(key, config.steps)
    )
    mu, rho, _ = state
    mean = jax.tree.map(lambda m, like: jnp.asarray(m, jnp.result_type(like)), mu, params)
    sigma = jax.tree.map(
        lambda r, like: jnp.exp(r) if _is_param(like) else jnp.ones(jnp.shape(like), jnp.float32),
        rho,
        params,
    )
    return (
        mean,
        sigma,
        {"objective": values, "kl": kls, "surrogate": surrogates, "prior_sigma": sps},
    )
