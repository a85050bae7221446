"""One member's PAC-Bayes certificate: the generic, vmappable recipe of :func:`certify`.

Given a pure loss ``loss_fn(params, data) -> [n]`` with values in [0, 1], trained weights μ, a
prior centre w₀, and a *bound set* of n examples, :func:`certify` returns, for the Gibbs
predictor ``Q = N(μ, σ² I)`` (or ``N(μ, σ² diag s²)`` with a fixed per-parameter scale ``s``):

1. Prior ``P = N(w₀, σ_P² I)``; σ_P fixed, chosen from a grid of K_P values, or *tied*
   (σ_P = σ, Jiang et al. 2020). The grid is fixed in ``CertificateConfig`` before any data.
2. Posterior σ from a grid of K values, chosen by the flatness search (the largest σ whose
   Monte-Carlo risk is within ``flatness_tolerance`` of the deterministic risk on the bound set)
   or by minimising the final bound. Both are valid: the bound is paid at ``ln(K·K_P)``.
3. Monte-Carlo estimate of the bound set's Gibbs risk L̂(Q), turned into a bound Û:

   - ``monte_carlo="per_example"`` (default): r fresh weight draws *per example*
     (w_ijk = μ + σ_k ε_ij), ``Û_k = kl⁻¹(X̄(σ_k), ln(K/δ′)/(r·n))``: the r·n terms are
     independent given the bound set (:func:`~difftrade.theory.chernoff.per_example_convergence_bound`);
   - ``"whole_set"``: m draws, each evaluated on the whole bound set (Langford–Caruana),
     ``Û_k = kl⁻¹(L̂_m(σ_k), ln(2K/δ′)/m)``.

   Either way the standard normal draws ε are shared across the σ grid (common random numbers)
   and, because σ is chosen *after* looking at the draws, the bound is taken at δ′/K per σ
   (union bound). At n = 2,048, r = 1, K = 8 the per-example slack ln(K/δ′)/(r·n) is 0.0028
   against 0.10 for m = 64 whole-set draws, for 1/64 of the forward passes.
4. Certificate: ``L(Q) ≤ kl⁻¹(Û, (KL + ln(ξ/δ) + ln(K·K_P))/n)`` with ``ξ = 2√n`` (default) or
   Maurer's exact ξ(n), holding with probability ≥ 1 − δ − δ′ (per member).
   The kl bound is two-sided (it bounds kl(L̂(Q)‖L(Q)), not one tail), so on the same event
   ``L(Q) ≥ kl⁻¹_lower(Ľ, same c)``, where Ľ ≤ L̂(Q) is the lower side of step 3 at its own
   δ_low (``delta_lower``): ``lower_bound ≤ L(Q) ≤ bound`` with probability ≥ 1 − δ − δ′ − δ_low.
   Every grid point holds on that event, so ``lower_bound`` is the best over σ_P for the chosen
   σ. A lower bound is what a *certified comparison* needs: Q_a is certified better than Q_b
   when Q_a's ``bound`` is below Q_b's ``lower_bound`` (two upper bounds in order certify
   nothing). Where every bound of b is vacuous the selected σ is arbitrary (ties go to the
   smallest KL, often a large σ): Q_b is then a very noisy network and such a comparison says
   little about b's training (``d_star_from_bounds.certified_d_star_set`` callers skip those).
5. Separately: the deterministic network's risk on the bound set with a two-sided
   Clopper–Pearson interval at ``delta_heldout`` (0-1 loss) — or the kl/Chernoff interval for a
   non-binary [0, 1] loss. :func:`~difftrade.theory.certificate_budget.confidence_budget` /
   :func:`~difftrade.theory.certificate_budget.format_budget` itemise every δ.

**Caller's responsibility** (cannot be checked here): the bound set is disjoint from the training
data and from anything that chose w₀ or the σ grids; loss values are in [0, 1]. Loss values
outside [0, 1] (or NaN) are detected under jit: the certificate's ``valid`` flag is False and the
certified quantities are NaN. With ``binary_loss=True`` a non-0/1 loss makes the deterministic
interval NaN. The posterior actually sampled is ``μ + σε`` rounded to the parameter dtype; this
rounding is ignored, as everywhere in the literature.

Several losses of the same examples (e.g. the 0-1 loss and an importance-weighted one) can be
certified from one set of forward passes: a ``loss_fn`` returning [n, C] and a tuple of C configs
(:func:`certify`). Each column is then exactly the certificate it would be alone with the same
key; the columns are separate statements whose draws happen to coincide.

The config and result types (their shapes documented there) are in
:mod:`difftrade.theory.certificate_types`; the population wrapper is
:mod:`difftrade.theory.population_certificate`.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from difftrade.theory import chernoff, clopper_pearson, kl_inverse, special_functions
from difftrade.theory.certificate_types import Certificate, CertificateConfig, LossFn, PyTree
from difftrade.theory.float64 import argmin, float64_scope
from difftrade.theory.kl import isotropic_gaussian_kl, num_parameters, squared_distance


def _perturbation_noise(params: PyTree, key: jax.Array) -> PyTree:
    """Standard normal noise with the structure/dtypes of the floating leaves (others: zeros)."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    noise = [
        jax.random.normal(k, jnp.shape(x), jnp.result_type(x))
        if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
        else jnp.zeros_like(x)
        for k, x in zip(keys, leaves)
    ]
    return jax.tree.unflatten(treedef, noise)


def _perturb(params: PyTree, noise: PyTree, sigma: jax.Array, scale: PyTree | None) -> PyTree:
    def leaf(x, e, s=None):
        if not jnp.issubdtype(jnp.result_type(x), jnp.inexact):
            return x
        step = sigma.astype(jnp.result_type(x)) * e
        if s is not None:
            step = step * jnp.asarray(s, jnp.result_type(x))
        return x + step

    if scale is None:
        return jax.tree.map(leaf, params, noise)
    return jax.tree.map(leaf, params, noise, scale)


def _mean_and_validity(losses: jax.Array) -> tuple[jax.Array, jax.Array]:
    with float64_scope():
        values = jnp.asarray(losses, jnp.float64)
        ok = jnp.all(jnp.isfinite(values) & (values >= 0) & (values <= 1))
        return jnp.mean(values), ok


def _check_loss_shape(losses: jax.Array, columns: int | None) -> int:
    """n, after checking that ``loss_fn`` returned [n] (one config) or [n, C] (C configs)."""
    shape = jnp.shape(losses)
    if columns is None and len(shape) != 1:
        raise ValueError(
            f"loss_fn returned shape {shape}; allowed: per-example losses of shape [n]"
        )
    if columns is not None and (len(shape) != 2 or shape[1] != columns):
        raise ValueError(
            f"loss_fn returned shape {shape}; allowed: [n, {columns}] (one column per config of the {columns} given)"
        )
    return int(shape[0])


# the fields that decide which weights are drawn and evaluated: shared by jointly certified columns
_DRAW_FIELDS = ("sigmas", "num_draws", "monte_carlo", "map_batch_size")


def _configs(
    config: CertificateConfig | tuple[CertificateConfig, ...],
) -> tuple[CertificateConfig, ...]:
    """The configs as a tuple, after checking that they agree on how the weights are drawn."""
    configs = config if isinstance(config, tuple) else (config,)
    if not configs or not all(isinstance(c, CertificateConfig) for c in configs):
        raise ValueError(
            f"config={config!r} is not allowed; allowed: a CertificateConfig or a non-empty tuple of them"
        )
    if configs[0].selection == "shared":
        raise ValueError(
            "selection='shared' is not allowed for the first (or only) config; allowed: 'flatness' "
            "or 'bound' there, 'shared' for a later column, which then uses the first column's (σ, σ_P)"
        )
    for c in configs[1:]:
        for name in _DRAW_FIELDS + (("prior_sigmas",) if c.selection == "shared" else ()):
            if getattr(c, name) != getattr(configs[0], name):
                raise ValueError(
                    f"config {name} differs between columns ({getattr(configs[0], name)!r} vs {getattr(c, name)!r}); "
                    "allowed: one value, since every column is evaluated on the same weight draws"
                )
    return configs


def certify(
    loss_fn: LossFn,
    params: PyTree,
    prior_params: PyTree,
    data: PyTree,
    key: jax.Array,
    config: CertificateConfig | tuple[CertificateConfig, ...],
    posterior_scale: PyTree | None = None,
) -> Certificate | tuple[Certificate, ...]:
    """PAC-Bayes certificate of ``Q = N(params, σ²I)`` on a bound set (see module docstring).

    Args:
      loss_fn: pure JAX ``(params, data) -> [n]`` per-example losses in [0, 1]; with a tuple of
        C configs, ``-> [n, C]``: C losses of the same examples, certified jointly (below).
      params: trained weights μ (pytree; floating leaves are perturbed, others kept).
      prior_params: prior centre w₀ (same structure), data-free or never saw the bound set.
      data: the bound set (any pytree ``loss_fn`` accepts), n examples disjoint from training.
      key: PRNG key for the m weight draws.
      config: :class:`CertificateConfig` (static), or a tuple of C of them, one per loss column.
        The columns share every forward pass: the same weight draws (so the configs must agree on
        ``sigmas``, ``num_draws``, ``monte_carlo`` and ``map_batch_size``). Each column then
        chooses its own (σ, σ_P) and is its own statement at its own δ + δ′, exactly as if it
        had been certified alone with this key.
      posterior_scale: optional pytree of fixed per-parameter scales s (structure of params):
        the posterior becomes ``N(μ, σ² diag s²)``; s must not depend on the bound set.

    Returns:
      :class:`Certificate` (a tuple of C with a tuple config). jit- and vmap-compatible over
      (params, prior_params, data, key, posterior_scale); ``loss_fn`` and ``config`` are static.
    """
    configs = _configs(config)
    columns = len(configs) if isinstance(config, tuple) else None
    det_losses, risks, oks = _evaluate(
        loss_fn, params, data, key, posterior_scale, configs[0], columns
    )
    certs, first_choice = [], None
    with float64_scope():  # eager calls compile the arithmetic here, with float64 available
        for c, cfg in enumerate(configs):
            cert, choice = _assemble(
                det_losses[:, c],
                risks[..., c],
                oks[..., c],
                params,
                prior_params,
                posterior_scale,
                cfg,
                first_choice,
            )
            certs.append(cert)
            first_choice = choice if first_choice is None else first_choice
    return tuple(certs) if isinstance(config, tuple) else certs[0]


@partial(jax.jit, static_argnames=("loss_fn", "config", "columns"))
def _evaluate(loss_fn, params, data, key, posterior_scale, config, columns=None):
    """Deterministic losses [n, C], the Monte-Carlo risks [draws, K, C] and validity flags [..., C].

    ``"whole_set"``: row j = draw j's mean loss on the bound set. ``"per_example"``: row
    i·r + j = the loss of example i under its own draw j (model's own dtypes). C = 1 when
    ``columns`` is None (``loss_fn`` returns [n]), else ``columns`` (it returns [n, C]).
    """

    def as_columns(losses):  # [n] or [n, C] -> [n, C]
        _check_loss_shape(losses, columns)
        return losses[:, None] if columns is None else losses

    det_losses = as_columns(loss_fn(params, data))
    n = int(det_losses.shape[0])
    k_sig, m = config.num_sigmas, config.num_draws
    sigma_grid = jnp.asarray(config.sigmas)  # float32 unless x64 is on; cast to each leaf's dtype

    if config.monte_carlo == "whole_set":

        def one_eval(index):
            draw, which = index // k_sig, index % k_sig
            noise = _perturbation_noise(params, jax.random.fold_in(key, draw))
            losses = as_columns(
                loss_fn(_perturb(params, noise, sigma_grid[which], posterior_scale), data)
            )
            return jax.vmap(_mean_and_validity, in_axes=1)(losses)  # [C], [C]

        risks, oks = jax.lax.map(one_eval, jnp.arange(m * k_sig), batch_size=config.map_batch_size)
        return det_losses, risks.reshape(m, k_sig, -1), oks

    def one_example(index):  # example i under its own draw j, at every σ: [K, C] losses
        i, draw = index // m, index % m
        example = jax.tree.map(lambda x: jax.lax.dynamic_slice_in_dim(x, i, 1), data)
        noise = _perturbation_noise(params, jax.random.fold_in(jax.random.fold_in(key, draw), i))
        losses = jax.vmap(
            lambda s: as_columns(loss_fn(_perturb(params, noise, s, posterior_scale), example))
        )(sigma_grid)
        return losses[:, 0]

    batch = config.map_batch_size or max(1, 2**26 // (k_sig * max(num_parameters(params), 1)))
    losses = jax.lax.map(
        one_example, jnp.arange(n * m), batch_size=min(batch, n * m)
    )  # [n·r, K, C]
    ok = jnp.all(jnp.isfinite(losses) & (losses >= 0) & (losses <= 1), axis=(0, 1))  # [C]
    return det_losses, losses, ok


@partial(jax.jit, static_argnames=("config",))
def _assemble(det_losses, risks, oks, params, prior_params, posterior_scale, config, given=None):
    """Every bound of the recipe from one column's evaluated losses ([n], [draws, K], flags);
    float64 throughout. Returns the certificate and its chosen grid indices (i, j); ``given``:
    the indices to use when ``config.selection == "shared"``."""
    n = int(det_losses.shape[0])
    k_sig, m = config.num_sigmas, config.num_draws
    det_risk, det_ok = _mean_and_validity(det_losses)
    det_binary = jnp.all((det_losses == 0) | (det_losses == 1))
    with float64_scope():
        risks = jnp.asarray(
            risks, jnp.float64
        )  # [m, K] whole-set draws or [r·n, K] per-example terms
        valid = det_ok & jnp.all(oks)
        mc = jnp.mean(risks, axis=0)  # [K]
        mc = jnp.where(valid, mc, 0.5)
        if config.monte_carlo == "whole_set":
            sc = chernoff.sample_convergence_bound(mc, m, config.delta_prime / k_sig)  # [K]
            sc_low = chernoff.sample_convergence_lower(mc, m, config.delta_lower / k_sig)  # [K]
        else:
            sc = chernoff.per_example_convergence_bound(
                mc, m * n, config.delta_prime / k_sig
            )  # [K]
            sc_low = chernoff.per_example_convergence_lower(
                mc, m * n, config.delta_lower / k_sig
            )  # [K]

        sig = jnp.asarray(config.sigmas, jnp.float64)  # [K]
        if config.prior_sigmas is None:
            prior_grid = sig[:, None]  # [K, 1] tied
        else:
            prior_grid = jnp.asarray(config.prior_sigmas, jnp.float64)[None, :]  # [1, K_P]
        if posterior_scale is None:
            num = num_parameters(params)
            sq = squared_distance(params, prior_params)
            kl_grid = isotropic_gaussian_kl(num, sq, sig[:, None], prior_grid)  # [K, K_P]
        else:
            kl_grid = _diagonal_kl_grid(params, prior_params, posterior_scale, sig, prior_grid)
        kl_grid = jnp.broadcast_to(kl_grid, (k_sig, config.num_prior_sigmas))

        log_xi = (
            math.log(2.0 * math.sqrt(n)) if config.xi == "relaxed" else special_functions.log_xi(n)
        )
        c = (kl_grid + log_xi - math.log(config.delta) + math.log(config.num_grid_points)) / n
        bound_grid = kl_inverse.kl_inv(jnp.broadcast_to(sc[:, None], c.shape), c)  # [K, K_P]
        # the kl event is two-sided: the same c bounds L(Q) from below, given Ľ ≤ L̂(Q); every grid
        # point holds at once, so Q_σ's lower end is the best over σ_P
        lower_grid = kl_inverse.kl_inv_lower(
            jnp.broadcast_to(sc_low[:, None], c.shape), c
        )  # [K, K_P]
        lower_by_sigma = jnp.max(lower_grid, axis=1)  # [K]

        det_risk = jnp.asarray(det_risk, jnp.float64)
        if config.selection == "flatness":
            flat = mc <= det_risk + config.flatness_tolerance
            # largest flat σ (grid order is arbitrary, so rank by value); fallback: smallest σ
            ranked = jnp.where(flat, -sig, jnp.inf)
            i = jnp.where(jnp.any(flat), argmin(ranked), argmin(sig))
            j = _smallest_kl_among_best(bound_grid[i], kl_grid[i])
        elif config.selection == "bound":
            flat_index = _smallest_kl_among_best(bound_grid.reshape(-1), kl_grid.reshape(-1))
            i, j = flat_index // config.num_prior_sigmas, flat_index % config.num_prior_sigmas
        else:  # "shared": the first column's choice (checked in _configs)
            i, j = given

        prior_sigma = prior_grid[i, 0] if config.prior_sigmas is None else prior_grid[0, j]
        nan = jnp.asarray(jnp.nan, jnp.float64)
        guard = lambda x: jnp.where(valid, x, nan)
        lower, upper = _deterministic_interval(det_risk, det_binary, n, config)
        return Certificate(
            num_examples=jnp.asarray(n, jnp.float64),
            deterministic_risk=guard(det_risk),
            deterministic_lower=guard(lower),
            deterministic_upper=guard(upper),
            mc_risk_estimates=guard(mc),
            mc_risk_estimate=guard(mc[i]),
            sample_convergence_bound=guard(sc[i]),
            kl=guard(kl_grid[i, j]),
            sigma=sig[i],
            prior_sigma=prior_sigma,
            bound=guard(bound_grid[i, j]),
            confidence=jnp.asarray(1.0 - config.delta - config.delta_prime, jnp.float64),
            kl_grid=kl_grid,
            bound_grid=guard(bound_grid),
            valid=valid,
            sample_convergence_lower=guard(sc_low[i]),
            lower_bound=guard(lower_by_sigma[i]),
            interval_confidence=jnp.asarray(
                1.0 - config.delta - config.delta_prime - config.delta_lower, jnp.float64
            ),
        ), (i, j)


def _smallest_kl_among_best(bound: jax.Array, kl: jax.Array) -> jax.Array:
    """Index of the smallest bound, ties (e.g. every candidate vacuous at 1) broken by the
    smallest KL, so the reported KL says how far the best candidate is from non-vacuous."""
    tied = bound <= jnp.min(jnp.where(jnp.isnan(bound), jnp.inf, bound))
    return argmin(jnp.where(tied, kl, jnp.inf))


def _diagonal_kl_grid(params, prior_params, scale, sig, prior_grid):
    """KL grid for ``Q = N(μ, σ² diag s²)``, ``P = N(w₀, σ_P² I)`` per (σ, σ_P), float64.

    From four sums over the parameters (p, S = Σ sᵢ², D = Σ (μᵢ − w₀ᵢ)², L = Σ ln sᵢ²):
    ``KL = ½[(σ²S + D)/σ_P² − p − p ln(σ²/σ_P²) − L]``, so a grid of thousands of σ_P costs no
    more than one. The closed form cancels where σᵢ ≈ σ_P; its float64 rounding (below
    ~4p·eps relative to the terms) is added to the KL, so the result never understates it.
    """
    from difftrade.theory.kl import paired_float_leaves

    pairs = paired_float_leaves(params, prior_params)
    scales = [
        s
        for s, m in zip(jax.tree.leaves(scale), jax.tree.leaves(params))
        if jnp.issubdtype(jnp.result_type(m), jnp.inexact)
    ]
    p = float(sum(math.prod(jnp.shape(m)) for m, _ in pairs))
    s2 = sum(
        jnp.sum(jnp.broadcast_to(jnp.square(jnp.asarray(s, jnp.float64)), jnp.shape(m)))
        for (m, _), s in zip(pairs, scales)
    )
    log_s2 = sum(
        jnp.sum(jnp.broadcast_to(jnp.log(jnp.square(jnp.asarray(s, jnp.float64))), jnp.shape(m)))
        for (m, _), s in zip(pairs, scales)
    )
    dist = squared_distance(params, prior_params)
    sig2, prior2 = jnp.square(sig)[:, None], jnp.square(prior_grid)
    a = (sig2 * s2 + dist) / prior2
    c = p * jnp.log(sig2 / prior2) + log_s2
    rounding = 4.0 * (p + 8.0) * np.finfo(np.float64).eps * (jnp.abs(a) + p + jnp.abs(c))
    ok = jnp.isfinite(s2) & jnp.isfinite(log_s2) & (s2 > 0)
    return jnp.where(ok, jnp.maximum(0.5 * (a - p - c), 0.0) + rounding, jnp.nan)


def _deterministic_interval(
    det_risk: jax.Array, det_binary: jax.Array, n: int, config: CertificateConfig
):
    """Two-sided interval for the deterministic network's risk at confidence 1 − delta_heldout.

    Clopper–Pearson on the error count when ``config.binary_loss`` (NaN if some loss is not 0/1),
    else the kl/Chernoff interval valid for any [0, 1] loss.
    """
    if config.binary_loss:
        count = jnp.where(det_binary, jnp.round(det_risk * n), 0.0)
        lower, upper = clopper_pearson.clopper_pearson_interval(count, n, config.delta_heldout)
        return jnp.where(det_binary, lower, jnp.nan), jnp.where(det_binary, upper, jnp.nan)
    half = config.delta_heldout / 2.0
    return chernoff.kl_test_set_lower(det_risk, n, half), chernoff.kl_test_set_bound(
        det_risk, n, half
    )
