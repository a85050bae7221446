"""The losses ``difftrade bound`` certifies, as hashable (jit-static) callables over a member's
params and a bound set: exact-match 0-1 loss, the same with an importance-weighted copy from
one forward pass, and the clipped cross-entropy surrogate the posterior fit descends."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from difftrade.config.model_config import ModelConfig
from difftrade.model.transformer import graphdef
from difftrade.train.evaluate import example_metrics


@dataclasses.dataclass(frozen=True)
class ZeroOneLoss:
    """``(params, (tokens [n, L], mask [n, L])) -> [n]`` 0-1 loss of exact match (hashable: jit-static)."""

    model: ModelConfig
    batch_size: int = 2048  # forward passes in sequential batches: bounds device memory

    def __call__(self, params, batch):
        tokens, mask = batch
        n = tokens.shape[0]
        b = min(self.batch_size, n)
        pad = (-n) % b
        tb = jnp.pad(tokens, ((0, pad), (0, 0)), mode="edge").reshape(-1, b, tokens.shape[1])
        mb = jnp.pad(mask, ((0, pad), (0, 0)), mode="edge").reshape(-1, b, mask.shape[1])
        gdef = graphdef(self.model)
        exact = jax.lax.map(lambda tm: example_metrics(gdef, params, *tm)[0], (tb, mb)).reshape(-1)[
            :n
        ]
        return 1.0 - exact.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class ZeroOneAndWeightedLoss:
    """``(params, (tokens [n, L], mask [n, L], weight [n])) -> [n, 2]``: the 0-1 loss of exact
    match and weight · it (weights in [0, 1]), from one forward pass, for two joint certificates."""

    model: ModelConfig
    batch_size: int = 2048

    def __call__(self, params, batch):
        tokens, mask, weight = batch
        loss = ZeroOneLoss(self.model, self.batch_size)(params, (tokens, mask))
        return jnp.stack([loss, weight * loss], axis=1)


@dataclasses.dataclass(frozen=True)
class ClippedCrossEntropy:
    """Differentiable surrogate of the 0-1 loss for the posterior fit, in [0, 1]:
    ``min(mean answer CE, ln(1/p_min)) / ln(1/p_min)`` per example, ``[n]``."""

    model: ModelConfig
    p_min: float = 1e-4

    def __call__(self, params, batch):
        tokens, mask = batch
        _, ce = example_metrics(graphdef(self.model), params, tokens, mask)
        cap = float(np.log(1.0 / self.p_min))
        return jnp.minimum(ce, cap) / cap
