"""Member × level evaluation, risks and the two gaps.

Risk is the 0-1 loss of exact match: an example counts as correct only if *every* answer token's
teacher-forced argmax is right, which equals greedy decoding's exact match at one forward pass.

For a member trained on distribution ``w`` (weights over levels) and a target ``t``:

* train risk      R̂_train  = risk on its own training examples (indices ``[0, min(n, E))``)
* test risk       R_S      = Σ_l w_l R_l   (R_l = risk on level l's held-out test set)
* target risk     R_T      = Σ_l t_l R_l
* generalization gap  = R_S − R̂_train;  extrapolation gap = R_T − R_S
* so R_T = R̂_train + generalization gap + extrapolation gap, exactly.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from difftrade.config.model_config import ModelConfig
from difftrade.config.sections import EvalConfig
from difftrade.model.transformer import Params, graphdef, token_losses
from difftrade.tasks import data
from difftrade.tasks.base import Task
from difftrade.train.mesh import member_mesh, member_sharding, on_member_mesh, replicate, round_up
from difftrade.train.programs import PROGRAMS
from difftrade.train.trainer import member_data_root, trace_state


def example_metrics(
    gdef: Any, params: Params, tokens: jax.Array, loss_mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Per-example exact match (bool ``[B]``) and mean answer-token cross-entropy (``[B]``)."""
    ce, correct = token_losses(gdef, params, tokens, loss_mask)
    m = loss_mask[:, 1:]
    exact = jnp.all(correct | ~m, axis=1)
    mean_ce = jnp.sum(ce * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1)
    return exact, mean_ce


def _batched(fn, indices: jax.Array, batch: int):
    """Apply ``fn(idx [b]) -> pytree of [b]`` over ``indices [N]`` in sequential batches (memory)."""
    n = indices.shape[0]
    nb = -(-n // batch)
    padded = jnp.pad(indices, (0, nb * batch - n), mode="edge").reshape(nb, batch)
    out = jax.lax.map(fn, padded)
    return jax.tree.map(lambda x: x.reshape(-1)[:n], out)


# What the evaluator returns for each member, with the dimensions after ``member``: every entry
# becomes a per-member variable of a chunk and of results.nc, and a chunk file without one of
# them is recomputed on resume (it is named as missing). A new metric is one entry here and its
# value in ``member_evaluator``'s dict.
MEMBER_METRICS: dict[str, tuple[str, ...]] = {
    "train_exact": (),  # exact match on the member's own training examples
    "train_ce": (),  # their mean answer-token cross-entropy
    "level_exact": ("level",),  # exact match on each level's test set
    "level_ce": ("level",),  # and its mean answer-token cross-entropy
}


def member_evaluator(task: Task, model_cfg: ModelConfig, cfg: EvalConfig):
    """``(run_key, params, weights, budget, seed) -> dict`` of per-member metrics (vmappable).

    Built from static configuration only; the run key is an argument. Returns ``train_exact`` /
    ``train_ce`` scalars (own training examples) and ``level_exact`` / ``level_ce``
    ``[num_levels]`` (each level's test set).
    """
    gdef = graphdef(model_cfg)
    levels = jnp.asarray(task.levels, jnp.int32)

    def evaluate_member(run_key, params, weights, budget, seed):
        root = member_data_root(run_key, seed)

        def on_train(idx):
            tokens, mask, _ = data.examples(task, root, data.SPLITS["train"], weights, idx)
            return example_metrics(gdef, params, tokens, mask)

        idx = jnp.arange(cfg.n_train_eval)
        exact, ce = _batched(on_train, idx, min(cfg.batch_size, cfg.n_train_eval))
        valid = idx < budget  # only the member's own examples [0, n)
        count = jnp.minimum(budget, cfg.n_train_eval)
        train_exact = jnp.sum(jnp.where(valid, exact, 0.0)) / count
        train_ce = jnp.sum(jnp.where(valid, ce, 0.0)) / count

        def on_level(level):
            fn = lambda i: example_metrics(
                gdef, params, *data.examples_at_level(task, root, data.SPLITS["test"], level, i)
            )
            ex, c = _batched(fn, jnp.arange(cfg.n_test), min(cfg.batch_size, cfg.n_test))
            return jnp.mean(ex), jnp.mean(c)

        level_exact, level_ce = jax.lax.map(on_level, levels)
        return {
            "train_exact": train_exact,
            "train_ce": train_ce,
            "level_exact": level_exact,
            "level_ce": level_ce,
        }

    return evaluate_member


def make_member_evaluator(task: Task, model_cfg: ModelConfig, cfg: EvalConfig, run_key: jax.Array):
    """:func:`member_evaluator` with the run key bound: ``(params, weights, budget, seed) -> dict``."""
    return functools.partial(member_evaluator(task, model_cfg, cfg), run_key)


def compiled_evaluator(task: Task, model_cfg: ModelConfig, cfg: EvalConfig):
    """``jit(vmap(member_evaluator))`` over a chunk: ``(run_key, params, weights, budget, seed) -> dict``.

    Cached per (task, model, eval config, :func:`difftrade.train.trainer.trace_state`): static
    configuration only, so a new run key reuses the compiled program.
    """

    def build(traced):
        member = jax.vmap(member_evaluator(task, model_cfg, cfg), in_axes=(None, 0, 0, 0, 0))

        def evaluate_chunk(run_key, params, weights, budget, seed):
            traced()
            return member(run_key, params, weights, budget, seed)

        return jax.jit(evaluate_chunk, out_shardings=member_sharding(member_mesh()))

    return PROGRAMS.get("evaluate", (task, model_cfg, cfg, trace_state()), build)


def evaluate_population(
    task: Task,
    params: Params,
    weights: jax.Array,
    budget: jax.Array,
    seed: jax.Array,
    model_cfg: ModelConfig,
    cfg: EvalConfig,
    run_key: jax.Array,
) -> dict[str, np.ndarray]:
    """Evaluate every member (leading axis ``M``) on its training examples and every level.

    Returns numpy arrays: ``train_exact``, ``train_ce`` ``[M]``; ``level_exact``, ``level_ce``
    ``[M, num_levels]``. The member axis is split over all devices (all hosts' under
    ``jax.distributed``, where every process must call this), like the trainer's.
    """
    mesh = member_mesh()
    width = round_up(int(np.shape(budget)[0]), mesh.size)
    fn = compiled_evaluator(task, model_cfg.for_members(width // mesh.size), cfg)
    hyper = (
        np.asarray(weights, np.float32),
        np.asarray(budget, np.int32),
        np.asarray(seed, np.int32),
    )
    return on_member_mesh(lambda *t: fn(replicate(run_key, mesh), *t), params, *hyper, width=width)


def risks(
    train_exact: np.ndarray, level_exact: np.ndarray, weights: np.ndarray, target: np.ndarray
) -> dict[str, np.ndarray]:
    """Risks and gaps from accuracies.

    train_exact ``[...]``, level_exact ``[..., L]``, weights ``[..., L]`` (training
    distribution), target ``[L]``. Returns train/test/target risk and both gaps, each ``[...]``,
    with ``target_risk == train_risk + generalization_gap + extrapolation_gap``.
    """
    level_risk = 1.0 - np.asarray(level_exact, np.float64)
    train_risk = 1.0 - np.asarray(train_exact, np.float64)
    test_risk = np.sum(np.asarray(weights, np.float64) * level_risk, axis=-1)
    target_risk = level_risk @ np.asarray(target, np.float64)
    return {
        "train_risk": train_risk,
        "test_risk": test_risk,
        "target_risk": target_risk,
        "generalization_gap": test_risk - train_risk,
        "extrapolation_gap": target_risk - test_risk,
    }
