"""PAC-Bayes certificates of a whole population in one compiled call.

:func:`certify_population` is ``jit(vmap(certify))`` over the member axis of
:func:`~difftrade.theory.member_certificate.certify`: member-stacked weights, with prior centres,
bound sets and PRNG keys either per member or shared by every member (one key: common random
numbers, the standard normal draws generated once). Each member's statement holds at its own
``1 − δ − δ′``; :func:`~difftrade.theory.certificate_budget.format_budget` with ``num_members``
gives the union over the population.
"""

from __future__ import annotations

import jax

from difftrade.theory.certificate_types import Certificate, CertificateConfig, LossFn, PyTree
from difftrade.theory.member_certificate import certify


def _certify_population(
    loss_fn, params, prior_params, data, keys, scale, config, data_axis, prior_axis, key_axis
):
    def one(p, p0, d, k, s):
        return certify(loss_fn, p, p0, d, k, config, posterior_scale=s)

    scale_axis = None if scale is None else 0
    return jax.vmap(one, in_axes=(0, prior_axis, data_axis, key_axis, scale_axis))(
        params, prior_params, data, keys, scale
    )


_certify_population_jit = jax.jit(
    _certify_population,
    static_argnames=("loss_fn", "config", "data_axis", "prior_axis", "key_axis"),
)


def certify_population(
    loss_fn: LossFn,
    params: PyTree,
    prior_params: PyTree,
    data: PyTree,
    keys: jax.Array,
    config: CertificateConfig | tuple[CertificateConfig, ...],
    *,
    data_axis: int | None = 0,
    prior_axis: int | None = 0,
    key_axis: int | None = 0,
    posterior_scale: PyTree | None = None,
) -> Certificate | tuple[Certificate, ...]:
    """Certify a population in one compiled call: ``jit(vmap(certify))`` over the member axis.

    Args:
      params: member-stacked weights (leading axis M on every leaf).
      prior_params: member-stacked prior centres (``prior_axis=0``) or one shared pytree
        (``prior_axis=None``).
      data: member-stacked bound sets (``data_axis=0``) or one shared bound set (``None``).
      keys: ``[M]`` PRNG keys (e.g. ``jax.random.split(key, M)``, ``key_axis=0``), or one key
        for every member (``key_axis=None``): the members then share their standard normal draws
        ε (common random numbers), which are generated once instead of M times. Each member's
        statement stays valid (its draws are still independent of its own bound set); the
        members' Monte-Carlo errors become correlated, which makes differences between members
        less noisy. On the CPU drawing ε is most of a per-example certificate's time.
      loss_fn, config: static (``loss_fn`` should be a module-level function or a stable
        object, so the compiled program is cached between calls). A tuple of C configs with a
        ``loss_fn`` returning [n, C] certifies C losses from one set of forward passes
        (:func:`certify`).
      posterior_scale: optional member-stacked per-parameter scales (see :func:`certify`),
        e.g. the σ of :func:`difftrade.theory.posterior.fit_posterior`.

    Returns:
      :class:`Certificate` (a tuple of C with a tuple config) with a leading member axis M.
      Each member's statement holds at ``1 − δ − δ′``; for all M at once use
      ``format_budget(config, num_members=M)``.
    """
    return _certify_population_jit(
        loss_fn,
        params,
        prior_params,
        data,
        keys,
        posterior_scale,
        config,
        data_axis,
        prior_axis,
        key_axis,
    )
