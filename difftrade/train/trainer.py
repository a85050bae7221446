"""Population trainer: one compiled ``jit(vmap(scan(step)))`` trains a whole chunk of members.

A population is a struct of arrays with a leading member axis ``M``: each member has its own
training-difficulty distribution (weights over levels), budget ``n`` (it samples minibatches
from example indices ``[0, n)``), seed and learning rate — all traced. Only the architecture,
step count, batch size and the task (hence ``d_max``) are static, so a whole grid compiles once.

Keys. ``run_key`` is split into data / init / order roots; member ``m`` uses
``fold_in(root, seed[m])``, so members that share a seed share initial weights and test sets
(common random numbers across the grid) and differ only in what they are trained on.

The configuration it trains with (:class:`~difftrade.config.train_config.TrainConfig`) and the members'
hyperparameters (:class:`~difftrade.config.train_config.Population`) are :mod:`difftrade.config.train_config`;
the device-memory sizing of a chunk is :mod:`difftrade.train.chunk_sizing`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from difftrade.config.model_config import ModelConfig
from difftrade.config.sections import SubspaceConfig
from difftrade.config.train_config import Population, TrainConfig, prefix_budget
from difftrade.model.transformer import Params, graphdef, init_params, token_losses
from difftrade.tasks import data
from difftrade.tasks.base import Task
from difftrade.tasks.keys import salted
from difftrade.train.mesh import (
    member_mesh,
    member_sharding,
    pad_tree,
    padded_index,
    replicate,
    shard_members,
)
from difftrade.train.programs import PROGRAMS, SEGMENTS
from difftrade.train.subspace import Subspace, projection_key


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainResult:
    """Outputs of one chunk (leading member axis ``M``).

    params / init_params: parameter pytrees; loss_curve float32 ``[M, K]`` (mean training
    cross-entropy over each of the K checkpoint segments); accuracy_curve ``[M, K]`` (mean
    train-batch exact match per segment); nonfinite_steps int32 ``[M]`` (steps whose loss or
    gradient was NaN/inf; their updates were skipped); prior_params: the weights after the
    prefix phase (``TrainConfig.prefix_steps``), None when it is off; coords: the trained
    variables when they are not the weights themselves (a subspace member's ``z`` float32
    ``[M, D]``), else None. With validation stopping (``TrainConfig.stopping``): params are the
    selected checkpoint's; selected_step and stopped_step int32 ``[M]`` (the steps trained at the
    selected checkpoint and when the member stopped, = ``steps`` if it never did); the curves are
    NaN after a member stopped. Both None with fixed steps.
    """

    params: Params
    init_params: Params
    loss_curve: jax.Array
    accuracy_curve: jax.Array
    nonfinite_steps: jax.Array
    prior_params: Params | None = None
    coords: Any = None
    selected_step: jax.Array | None = None
    stopped_step: jax.Array | None = None


def run_keys(run_key: jax.Array) -> dict[str, jax.Array]:
    """Independent roots for data, initialisation and minibatch order (the salts of
    :mod:`difftrade.tasks.keys`)."""
    return {name: salted(run_key, name) for name in ("data", "init", "order")}


def member_data_root(run_key: jax.Array, seed: jax.Array) -> jax.Array:
    """Root of a member's example streams (shared by members with the same seed)."""
    return jax.random.fold_in(run_keys(run_key)["data"], seed)


def member_init_params(cfg: ModelConfig, run_key: jax.Array, seed: jax.Array) -> Params:
    """Data-free initial weights of a member (vmappable over ``seed``)."""
    return init_params(cfg, jax.random.fold_in(run_keys(run_key)["init"], seed))


def optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """AdamW direction with unit peak learning rate; the per-member rate scales it afterwards."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, 1.0, max(cfg.warmup_steps, 1), cfg.steps, end_value=cfg.final_lr_fraction
    )
    decay_mask = lambda p: jax.tree.map(lambda x: x.ndim >= 2, p)  # no decay on biases or norms
    return optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip),
        optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2),
        optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask),
        optax.scale_by_schedule(schedule),
    )


def masked_loss(
    gdef: Any, params: Params, tokens: jax.Array, loss_mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Mean answer-token cross-entropy over a batch and the batch exact-match rate.

    tokens int32 ``[B, L]``, loss_mask bool ``[B, L]`` -> (loss scalar, exact-match scalar).
    """
    ce, correct = token_losses(gdef, params, tokens, loss_mask)
    m = loss_mask[:, 1:]
    loss = jnp.sum(ce * m) / jnp.maximum(jnp.sum(m), 1)
    exact = jnp.all(correct | ~m, axis=1)
    return loss, jnp.mean(exact)


def validation_scores(
    gdef: Any, params: Params, tokens: jax.Array, loss_mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(exact-match risk, mean answer-token cross-entropy) of ``params`` on a validation set:
    tokens int32 ``[V, L]``, loss_mask bool ``[V, L]`` -> two scalars."""
    loss, exact = masked_loss(gdef, params, tokens, loss_mask)
    return 1.0 - exact, loss


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Stopped:
    """What :func:`validation_stopped` returns for one member: the selected trained variables
    ``best``, the curves ``[K]`` (NaN after the stop), non-finite steps, and the selected and
    stopping steps (int32 scalars)."""

    best: Any
    loss_curve: jax.Array
    accuracy_curve: jax.Array
    bad: jax.Array
    selected_step: jax.Array
    stopped_step: jax.Array


def validation_stopped(
    segment: Callable, score: Callable, carry: tuple, cfg: TrainConfig
) -> Stopped:
    """Train checkpoint segment after segment until ``cfg.patience`` segments in a row fail to
    improve the validation score, or ``cfg.num_checkpoints`` segments (the ``cfg.steps`` cap).

    ``segment(carry, k) -> (carry, (loss, exact))`` trains segment k from ``carry`` =
    (trained variables, optimiser state, non-finite count); ``score(w) -> (risk, ce)`` is the
    validation score (lower is better, risk first, then cross-entropy). A ``while_loop``: under
    ``vmap`` a chunk runs until its last member stops, and a stopped member's state is frozen.
    """
    K, seg = cfg.num_checkpoints, cfg.steps // cfg.num_checkpoints
    nan = jnp.full((K,), jnp.nan, jnp.float32)
    risk0, ce0 = score(carry[0])
    zero = jnp.int32(0)
    # (carry, segments done k, best variables, their risk and cross-entropy, their k,
    #  segments since the best, loss curve [K], accuracy curve [K])
    state = (carry, zero, carry[0], risk0, ce0, zero, zero, nan, nan)

    def running(s):
        return (s[1] < K) & (s[6] < cfg.patience)

    def body(s):
        carry, k, best, best_risk, best_ce, best_k, since, losses, exacts = s
        carry, (loss, exact) = segment(carry, k)
        risk, ce = score(carry[0])
        better = (risk < best_risk) | ((risk == best_risk) & (ce < best_ce))
        pick = lambda new, old: jnp.where(better, new, old)
        best = jax.tree.map(pick, carry[0], best)
        return (
            carry,
            k + 1,
            best,
            pick(risk, best_risk),
            pick(ce, best_ce),
            pick(k + 1, best_k),
            jnp.where(better, 0, since + 1),
            losses.at[k].set(loss),
            exacts.at[k].set(exact),
        )

    carry, k, best, _, _, best_k, _, losses, exacts = jax.lax.while_loop(running, body, state)
    return Stopped(best, losses, exacts, carry[2], jnp.int32(best_k * seg), jnp.int32(k * seg))


@dataclasses.dataclass(frozen=True)
class FullView:
    """Every weight is trained: the trained variables are the params pytree itself."""

    def start(self, params0: Params) -> Params:
        return params0

    def bind(self, params0: Params, key: jax.Array) -> Callable[[Any], Params]:
        """The map from trained variables to weights for one member (identity)."""
        return lambda w: w


@dataclasses.dataclass(frozen=True)
class SubspaceView:
    """Only the coordinates ``z`` ``[D]`` are trained: weights ``θ₀ + P z`` (``difftrade.train.subspace``)."""

    cfg: SubspaceConfig

    def start(self, params0: Params) -> jax.Array:
        return jnp.zeros((self.cfg.dim,), jnp.float32)

    def bind(self, params0: Params, key: jax.Array) -> Callable[[Any], Params]:
        return Subspace(self.cfg, params0, key).weights


FULL = FullView()


def view_of(subspace: SubspaceConfig) -> FullView | SubspaceView:
    """The trainer's view for a ``[subspace]`` setting (dim 0: every weight)."""
    return SubspaceView(subspace) if subspace.enabled else FULL


def member_trainer(
    task: Task, model_cfg: ModelConfig, cfg: TrainConfig, view: Any = FULL
) -> Callable[..., TrainResult]:
    """The single-member training function ``(run_key, params0, weights, budget, seed, lr[, start]) -> TrainResult``.

    Built from static configuration only; the run key is an argument (traced under ``jit``),
    so one compiled program serves every ``run.seed``. ``view`` says what is trained
    (:class:`FullView`: the weights, starting at ``params0``; :class:`SubspaceView`: coordinates
    ``z`` with weights ``params0 + P z``; any hashable object with ``start(params0)`` and
    ``bind(params0, key) -> (w -> params)``); ``start`` overrides ``view.start(params0)``. Pure
    and jittable; ``train_population`` vmaps it over members.
    """
    gdef = graphdef(model_cfg)
    tx = optimizer(cfg)
    seg = cfg.steps // cfg.num_checkpoints

    def train_member(run_key, params0, weights, budget, seed, lr, start=None):
        roots = run_keys(run_key)
        data_root = jax.random.fold_in(roots["data"], seed)
        order_key = jax.random.fold_in(roots["order"], seed)
        to_params = view.bind(params0, projection_key(run_key, seed))
        grad_fn = jax.value_and_grad(
            lambda w, t, m: masked_loss(gdef, to_params(w), t, m), has_aux=True
        )
        w0 = view.start(params0) if start is None else start

        def high(
            t,
        ):  # minibatch indices are drawn below this; a python branch keeps the default program as it was
            if not cfg.prefix_steps:
                return budget
            return jnp.where(
                t < cfg.prefix_steps, prefix_budget(budget, cfg.prefix_fraction), budget
            )

        def step(carry, t):
            params, opt_state, bad = carry
            idx = jax.random.randint(
                jax.random.fold_in(order_key, t), (cfg.batch_size,), 0, high(t)
            )
            tokens, mask, _ = data.examples(task, data_root, data.SPLITS["train"], weights, idx)
            (loss, exact), grads = grad_fn(params, tokens, mask)
            updates, new_opt = tx.update(grads, opt_state, params)
            new_params = jax.tree.map(lambda p, u: p - (lr * u).astype(p.dtype), params, updates)
            finite = jnp.isfinite(loss) & jnp.all(
                jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
            )
            # A non-finite step is skipped (weights kept) and counted, never averaged away.
            params = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new_params, params)
            opt_state = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new_opt, opt_state)
            return (params, opt_state, bad + (~finite).astype(jnp.int32)), (loss, exact)

        def segment(carry, k):
            carry, (losses, exacts) = jax.lax.scan(step, carry, k * seg + jnp.arange(seg))
            jax.debug.callback(SEGMENTS.report, carry[2])  # after the segment: it reads its result
            return carry, (jnp.mean(losses), jnp.mean(exacts))

        carry = (w0, tx.init(w0), jnp.int32(0))
        if cfg.stopping == "validation":
            val_tokens, val_mask, _ = data.examples(
                task, data_root, data.SPLITS["val"], weights, jnp.arange(cfg.val_examples)
            )
            score = lambda w: validation_scores(gdef, to_params(w), val_tokens, val_mask)
            out = validation_stopped(segment, score, carry, cfg)
            return TrainResult(
                to_params(out.best),
                params0,
                out.loss_curve,
                out.accuracy_curve,
                out.bad,
                None,
                None if isinstance(view, FullView) else out.best,
                out.selected_step,
                out.stopped_step,
            )
        split = (
            cfg.prefix_steps // seg
        )  # segments of the prefix phase (0: off; always < num_checkpoints)
        prior = None
        if split:
            carry, head = jax.lax.scan(segment, carry, jnp.arange(split))
            prior = to_params(carry[0])
        (w, _, bad), curves = jax.lax.scan(segment, carry, jnp.arange(split, cfg.num_checkpoints))
        if split:
            curves = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), head, curves)
        loss_curve, acc_curve = curves
        coords = None if isinstance(view, FullView) else w
        return TrainResult(to_params(w), params0, loss_curve, acc_curve, bad, prior, coords)

    return train_member


def make_member_trainer(
    task: Task, model_cfg: ModelConfig, cfg: TrainConfig, run_key: jax.Array, view: Any = FULL
) -> Callable[..., TrainResult]:
    """:func:`member_trainer` with the run key bound: ``(params0, weights, budget, seed, lr[, start]) -> TrainResult``.

    A function jitted from this holds the key as a constant (one program per key); the population
    trainer (:func:`compiled_trainer`) passes the key as an argument instead.
    """
    return functools.partial(member_trainer(task, model_cfg, cfg, view), run_key)


def pad_members(pop: Population, multiple: int) -> tuple[Population, int]:
    """Pad with copies of the last member so the size divides ``multiple``; returns (pop, real size)."""
    m = pop.size
    return pop.take(padded_index(m, -(-m // multiple) * multiple)), m


def population_arrays(pop: Population) -> dict[str, jax.Array]:
    """The population's fields as device arrays: weights float32 ``[M, L]``, budget int32 ``[M]``,
    seed int32 ``[M]``, learning_rate float32 ``[M]``."""
    return {
        "weights": jnp.asarray(pop.weights, jnp.float32),
        "budget": jnp.asarray(pop.budget, jnp.int32),
        "seed": jnp.asarray(pop.seed, jnp.int32),
        "learning_rate": jnp.asarray(pop.learning_rate, jnp.float32),
    }


def trace_state() -> tuple[Any, ...]:
    """Process-global settings read while tracing that change the traced program (so they
    belong in every compile-cache key next to the static configuration): the member mesh the
    outputs are split over. (How kernels are traced is ``model.kernels``, in the model config;
    jax's own configuration, e.g. ``jax_enable_x64``, is in ``jax.jit``'s cache key already.)"""
    return (member_mesh(),)


def compiled_trainer(
    task: Task, model_cfg: ModelConfig, cfg: TrainConfig, view: Any = FULL
) -> Callable[..., TrainResult]:
    """``jit(vmap(member_trainer))`` over a chunk: ``(run_key, weights, budget, seed, learning_rate,
    params0=None, start=None) -> TrainResult``, the run key replicated on every device.

    Cached per (task, model, train config, view, :func:`trace_state`): static configuration
    only, so runs that differ in their key (``run.seed``) share one compiled program.
    """

    def build(traced: Callable[[], None]) -> Callable[..., TrainResult]:
        member = jax.vmap(
            member_trainer(task, model_cfg, cfg, view), in_axes=(None, 0, 0, 0, 0, 0, 0)
        )

        def train_chunk(run_key, weights, budget, seed, learning_rate, params0=None, start=None):
            traced()
            if params0 is None:
                params0 = jax.vmap(lambda s: member_init_params(model_cfg, run_key, s))(seed)
            return member(run_key, params0, weights, budget, seed, learning_rate, start)

        # Outputs keep the member split, so evaluation reads them where they are.
        return jax.jit(train_chunk, out_shardings=member_sharding(member_mesh()))

    return PROGRAMS.get("train", (task, model_cfg, cfg, view, trace_state()), build)


def train_population(
    task: Task,
    population: Population,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    run_key: jax.Array,
    init: Params | None = None,
    view: Any = FULL,
    start: Any = None,
) -> TrainResult:
    """Train every member of ``population`` (one chunk) in one compiled program.

    ``init``: optional starting parameters with leading member axis (fine-tuning from a base);
    by default each member starts from its data-free initialisation. ``view``: what is trained
    (see :func:`make_member_trainer`); ``start``: the trained variables' starting values with
    leading member axis (default ``view.start``). The member axis is sharded over all devices
    (padded to a multiple of the device count). Returns a ``TrainResult`` for the real
    (unpadded) members.
    """
    if cfg.epochs:
        raise ValueError(
            f"train.epochs={cfg.epochs}: train_population trains one number of steps; "
            "allowed: the config of one budget, cfg.for_budget(n)"
        )
    if model_cfg.seq_len < task.seq_len - 1:
        raise ValueError(
            f"model.seq_len={model_cfg.seq_len} is shorter than the task's inputs ({task.seq_len - 1}); "
            f"allowed: >= {task.seq_len - 1}"
        )
    if population.weights.shape[1] != task.num_levels:
        raise ValueError(
            f"population.weights has {population.weights.shape[1]} levels; task {task.name!r} has {task.num_levels}"
        )
    mesh = member_mesh()
    padded, m = pad_members(population, mesh.size)
    arrays = shard_members(population_arrays(padded), mesh)
    fn = compiled_trainer(task, model_cfg.for_members(padded.size // mesh.size), cfg, view)
    init, start = (
        None if tree is None else shard_members(pad_tree(tree, m, padded.size), mesh)
        for tree in (init, start)
    )
    out = fn(
        replicate(run_key, mesh),
        arrays["weights"],
        arrays["budget"],
        arrays["seed"],
        arrays["learning_rate"],
        init,
        start,
    )
    return out if padded.size == m else jax.tree.map(lambda x: x[:m], out)
