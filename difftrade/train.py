"""Population trainer: one compiled ``jit(vmap(scan(step)))`` trains a whole chunk of members.

A population is a struct of arrays with a leading member axis ``M``: each member has its own
training-difficulty distribution (weights over levels), budget ``n`` (it samples minibatches
from example indices ``[0, n)``), seed and learning rate — all traced. Only the architecture,
step count, batch size and the task (hence ``d_max``) are static, so a whole grid compiles once.

Keys. ``run_key`` is split into data / init / order roots; member ``m`` uses
``fold_in(root, seed[m])``, so members that share a seed share initial weights and test sets
(common random numbers across the grid) and differ only in what they are trained on.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from difftrade import data, model
from difftrade.fields import Field, check_fields, refuse
from difftrade.model import ModelConfig, Params, graphdef, init_params, token_losses
from difftrade.multihost import to_host
from difftrade.subspace import Subspace, SubspaceConfig, projection_key
from difftrade.tasks.base import Task


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation (static). AdamW, linear warmup then cosine decay to ``final_lr_fraction``."""

    steps: int = 1000
    batch_size: int = 64
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    b1: float = 0.9
    b2: float = 0.98
    final_lr_fraction: float = 0.1
    num_checkpoints: int = 10
    # A data-dependent prior from the member's own run (Dziugaite et al. 2021): the first
    # ``prefix_steps`` steps draw minibatches from examples [0, n') only, n' = prefix_budget(n,
    # prefix_fraction), and the weights after them are kept (``TrainResult.prior_params``) as a
    # prior centre independent of the examples [n', n). 0 = off (every step draws from [0, n)).
    prefix_steps: int = 0
    prefix_fraction: float = 0.5
    # Fixed epochs instead of fixed steps: 0 = every member trains ``steps`` steps; > 0 = a member
    # with budget n trains about ``epochs`` passes over its n examples (:meth:`for_budget`), and
    # ``steps`` is not used.
    epochs: float = 0.0

    def __post_init__(self) -> None:
        # with epochs, steps is not used: num_checkpoints and warmup_steps are not checked against it
        check_fields(self, "train", EPOCHS_FIELDS if self.epochs else TRAIN_FIELDS)
        if self.epochs and self.prefix_steps:
            raise refuse("train", "prefix_steps", self.prefix_steps, "0 when train.epochs > 0",
                         f" cannot be combined with epochs = {self.epochs} (the prefix phase is a number of steps)")
        if self.epochs:
            return
        seg = self.steps // self.num_checkpoints
        if self.prefix_steps % seg:
            raise refuse("train", "prefix_steps", self.prefix_steps,
                         f"0 (off) or a multiple of steps / num_checkpoints = {seg} below steps ({self.steps})",
                         f" is not a multiple of steps / num_checkpoints = {seg}")

    def for_budget(self, budget: int) -> TrainConfig:
        """The fixed-steps configuration of a member with ``budget`` examples.

        Itself when ``epochs`` is 0. Otherwise ``steps`` = epochs * budget / batch_size, rounded up
        to a multiple of ``num_checkpoints`` (at least 2 steps), with ``warmup_steps`` capped at a
        tenth of those steps, and ``epochs`` 0.
        """
        if not self.epochs:
            return self
        c = self.num_checkpoints
        per_checkpoint = math.ceil(self.epochs * budget / (self.batch_size * c) - 1e-9)
        steps = c * max(per_checkpoint, math.ceil(2 / c))
        return dataclasses.replace(self, epochs=0.0, steps=steps, warmup_steps=min(self.warmup_steps, steps // 10))


# [train]: one spec per field (difftrade.fields). The schedule warms up for max(warmup_steps, 1)
# steps and decays over the rest, so steps >= 2 and warmup_steps < steps; grad_clip is the
# largest global gradient norm (0 would zero every update).
TRAIN_FIELDS: dict[str, Field] = {
    "steps": Field(int, 2, note="one warmup step at least, then the decay"),
    "num_checkpoints": Field(int, 1, "steps", divides="steps"),
    "batch_size": Field(int, 1),
    "warmup_steps": Field(int, 0, "steps", high_open=True),
    "weight_decay": Field(float, 0),
    "grad_clip": Field(float, 0, low_open=True, note="the largest global gradient norm"),
    "b1": Field(float, 0, 1, high_open=True),
    "b2": Field(float, 0, 1, high_open=True),
    "final_lr_fraction": Field(float, 0, 1, note="of the peak learning rate"),
    "prefix_steps": Field(int, 0, "steps", high_open=True, note="0 = off; a multiple of steps / num_checkpoints"),
    "prefix_fraction": Field(float, 0, 1, low_open=True, high_open=True),
    "epochs": Field(float, 0, note="0 = fixed steps; > 0 = passes over each member's budget"),
}
EPOCHS_FIELDS: dict[str, Field] = {
    **TRAIN_FIELDS, "num_checkpoints": Field(int, 1), "warmup_steps": Field(int, 0), "prefix_steps": Field(int, 0),
}


def prefix_budget(budget: Any, fraction: float) -> Any:
    """Examples [0, n') a member's prefix phase draws from: ``n' = max(1, floor(fraction * n))``,
    computed in float32 so the host (numpy) and the trainer (jax) agree exactly. ``budget`` int
    ``[...]`` (numpy or jax) -> int32 ``[...]`` of the same kind."""
    xp = jnp if isinstance(budget, jax.Array) else np
    scaled = xp.floor(xp.float32(fraction) * xp.asarray(budget).astype(xp.float32))
    return xp.maximum(1, scaled.astype(xp.int32))


@dataclasses.dataclass(frozen=True)
class Population:
    """Per-member hyperparameters, each with leading member axis ``M``.

    weights float32 ``[M, num_levels]``, budget int32 ``[M]``, seed int32 ``[M]``,
    learning_rate float32 ``[M]``.
    """

    weights: np.ndarray
    budget: np.ndarray
    seed: np.ndarray
    learning_rate: np.ndarray

    def __post_init__(self) -> None:
        m = self.budget.shape[0]
        for field in ("weights", "seed", "learning_rate"):
            if getattr(self, field).shape[0] != m:
                raise ValueError(f"population.{field} has {getattr(self, field).shape[0]} members; expected {m}")
        if np.any(self.budget < 1):
            raise ValueError(f"population.budget has values {self.budget[self.budget < 1].tolist()}; allowed: >= 1")
        if not np.all(np.isfinite(self.learning_rate)) or np.any(self.learning_rate <= 0):
            raise ValueError(f"population.learning_rate={self.learning_rate.tolist()}; allowed: > 0")

    @property
    def size(self) -> int:
        return int(self.budget.shape[0])

    def take(self, idx: np.ndarray) -> Population:
        """Members ``idx`` (a numpy index array)."""
        return Population(self.weights[idx], self.budget[idx], self.seed[idx], self.learning_rate[idx])

    def as_arrays(self) -> dict[str, jax.Array]:
        return {
            "weights": jnp.asarray(self.weights, jnp.float32),
            "budget": jnp.asarray(self.budget, jnp.int32),
            "seed": jnp.asarray(self.seed, jnp.int32),
            "learning_rate": jnp.asarray(self.learning_rate, jnp.float32),
        }


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
    ``[M, D]``), else None.
    """

    params: Params
    init_params: Params
    loss_curve: jax.Array
    accuracy_curve: jax.Array
    nonfinite_steps: jax.Array
    prior_params: Params | None = None
    coords: Any = None


def run_keys(run_key: jax.Array) -> dict[str, jax.Array]:
    """Independent roots for data, initialisation and minibatch order (``fold_in`` 0..2; the
    subspace projection's root is ``fold_in(run_key, 3)``, ``difftrade.subspace``)."""
    names = ("data", "init", "order")
    return {name: jax.random.fold_in(run_key, i) for i, name in enumerate(names)}


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


def masked_loss(gdef: Any, params: Params, tokens: jax.Array, loss_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean answer-token cross-entropy over a batch and the batch exact-match rate.

    tokens int32 ``[B, L]``, loss_mask bool ``[B, L]`` -> (loss scalar, exact-match scalar).
    """
    ce, correct = token_losses(gdef, params, tokens, loss_mask)
    m = loss_mask[:, 1:]
    loss = jnp.sum(ce * m) / jnp.maximum(jnp.sum(m), 1)
    exact = jnp.all(correct | ~m, axis=1)
    return loss, jnp.mean(exact)


# Host-side listeners of training progress, called from inside the compiled program with the
# number of member-segments (one checkpoint segment of one member) that just finished, so a
# progress bar can move within a chunk. Calls arrive unordered, from every device.
SEGMENT_LISTENERS: list[Callable[[int], None]] = []


def _segment_done(nonfinite: np.ndarray) -> None:
    """Host callback at the end of a checkpoint segment; ``nonfinite`` holds one value per member it covers."""
    for listener in tuple(SEGMENT_LISTENERS):  # a copy: a run may remove its listener meanwhile
        listener(int(np.size(nonfinite)))


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
    """Only the coordinates ``z`` ``[D]`` are trained: weights ``θ₀ + P z`` (``difftrade.subspace``)."""

    cfg: SubspaceConfig

    def start(self, params0: Params) -> jax.Array:
        return jnp.zeros((self.cfg.dim,), jnp.float32)

    def bind(self, params0: Params, key: jax.Array) -> Callable[[Any], Params]:
        return Subspace(self.cfg, params0, key).weights


FULL = FullView()


def view_of(subspace: SubspaceConfig) -> FullView | SubspaceView:
    """The trainer's view for a ``[subspace]`` setting (dim 0: every weight)."""
    return SubspaceView(subspace) if subspace.enabled else FULL


def member_trainer(task: Task, model_cfg: ModelConfig, cfg: TrainConfig, view: Any = FULL) -> Callable[..., TrainResult]:
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
        grad_fn = jax.value_and_grad(lambda w, t, m: masked_loss(gdef, to_params(w), t, m), has_aux=True)
        w0 = view.start(params0) if start is None else start

        def high(t):  # minibatch indices are drawn below this; a python branch keeps the default program as it was
            if not cfg.prefix_steps:
                return budget
            return jnp.where(t < cfg.prefix_steps, prefix_budget(budget, cfg.prefix_fraction), budget)

        def step(carry, t):
            params, opt_state, bad = carry
            idx = jax.random.randint(jax.random.fold_in(order_key, t), (cfg.batch_size,), 0, high(t))
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
            jax.debug.callback(_segment_done, carry[2])  # after the segment: it reads its result
            return carry, (jnp.mean(losses), jnp.mean(exacts))

        carry = (w0, tx.init(w0), jnp.int32(0))
        split = cfg.prefix_steps // seg  # segments of the prefix phase (0: off; always < num_checkpoints)
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


def member_mesh() -> Mesh:
    """A 1-D mesh over all devices (all hosts' devices under ``jax.distributed``)."""
    return Mesh(np.asarray(jax.devices()), ("members",))


def member_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (member) axis split over the mesh, other axes whole."""
    return NamedSharding(mesh, PartitionSpec("members"))


def shard_members(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf's leading (member) axis across the mesh.

    Leaves already placed that way are kept. On one process the rest move with
    ``device_put``; when the mesh spans hosts, every process gathers the full value and hands
    each of its devices its slice (a collective: all processes call this). The leading axis
    must divide by ``mesh.size``.
    """
    sharding = member_sharding(mesh)

    def put(x: Any) -> jax.Array:
        if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim):
            return x
        if sharding.is_fully_addressable:
            return jax.device_put(x, sharding)
        host = to_host(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)


def padded_index(m: int, size: int) -> np.ndarray:
    """Member indices ``0..m-1`` then ``m-1`` repeated up to ``size``: padding by copies of the
    last member, whose results the caller drops. int ``[size]``."""
    return np.concatenate([np.arange(m), np.full(size - m, m - 1)])


def pad_tree(tree: Any, m: int, size: int) -> Any:
    """A pytree with leading member axis ``m`` padded to ``size`` by copies of its last member."""
    if size == m:
        return tree
    idx = padded_index(m, size)
    return jax.tree.map(lambda x: x[idx], tree)


def pad_members(pop: Population, multiple: int) -> tuple[Population, int]:
    """Pad with copies of the last member so the size divides ``multiple``; returns (pop, real size)."""
    m = pop.size
    return pop.take(padded_index(m, -(-m // multiple) * multiple)), m


def trace_state() -> tuple[Any, ...]:
    """Process-global settings read while tracing that change the traced program (so they
    belong in every compile-cache key next to the static configuration): the Pallas kernel mode
    (:func:`difftrade.model.kernel_mode`) and the member mesh the outputs are split over. (jax's
    own configuration, e.g. ``jax_enable_x64``, is in ``jax.jit``'s cache key already.)"""
    return (model._KERNEL_MODE[0], member_mesh())


# Times each population program was traced, by name ("train", "evaluate"): every compilation
# follows a trace, so this counts compilations (tests, run summaries).
TRACES: collections.Counter[str] = collections.Counter()

_COMPILED: dict[Any, Callable[..., TrainResult]] = {}


def compiled_trainer(
    task: Task, model_cfg: ModelConfig, cfg: TrainConfig, view: Any = FULL
) -> Callable[..., TrainResult]:
    """``jit(vmap(member_trainer))`` over a chunk: ``(run_key, weights, budget, seed, learning_rate,
    params0=None, start=None) -> TrainResult``, the run key replicated on every device.

    Cached per (task, model, train config, view, :func:`trace_state`): static configuration
    only, so runs that differ in their key (``run.seed``) share one compiled program.
    """
    cache_key = (task, model_cfg, cfg, view, trace_state())
    if cache_key not in _COMPILED:
        member = jax.vmap(member_trainer(task, model_cfg, cfg, view), in_axes=(None, 0, 0, 0, 0, 0, 0))

        def train_chunk(run_key, weights, budget, seed, learning_rate, params0=None, start=None):
            TRACES["train"] += 1
            if params0 is None:
                params0 = jax.vmap(lambda s: member_init_params(model_cfg, run_key, s))(seed)
            return member(run_key, params0, weights, budget, seed, learning_rate, start)

        # Outputs keep the member split, so evaluation reads them where they are.
        _COMPILED[cache_key] = jax.jit(train_chunk, out_shardings=member_sharding(member_mesh()))
    return _COMPILED[cache_key]


def replicate(x: jax.Array, mesh: Mesh) -> jax.Array:
    """``x`` (a key or a small array, the same on every process) ready for a jitted call over the
    mesh. On one process it is placed whole on every device. When the mesh spans hosts it stays
    process-local and uncommitted, and ``jit`` copies it to each process's devices
    (``device_put`` cannot spread a typed key over hosts; a committed process-local value would
    be refused as on the wrong devices, so it is copied off its device first)."""
    sharding = NamedSharding(mesh, PartitionSpec())
    if sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
    if isinstance(x, jax.Array) and x.committed and x.is_fully_addressable:
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(np.asarray(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        return np.asarray(x)
    return x


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
        raise ValueError(f"train.epochs={cfg.epochs}: train_population trains one number of steps; "
                         "allowed: the config of one budget, cfg.for_budget(n)")
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
    arrays = shard_members(padded.as_arrays(), mesh)
    fn = compiled_trainer(task, model_cfg.for_members(padded.size // mesh.size), cfg, view)
    init, start = (None if tree is None else shard_members(pad_tree(tree, m, padded.size), mesh) for tree in (init, start))
    out = fn(replicate(run_key, mesh), arrays["weights"], arrays["budget"], arrays["seed"], arrays["learning_rate"], init, start)
    return out if padded.size == m else jax.tree.map(lambda x: x[:m], out)


def bytes_per_member(model_cfg: ModelConfig, cfg: TrainConfig, seq_len: int) -> int:
    """Rough device-memory need of one member during training (bytes).

    Parameters + gradients + two Adam moments + a copy (float32; one more with a prefix phase,
    whose weights are returned too), plus activations saved for the backward pass: about
    ``14 * d_model + 2 * mlp * d_model + 2 * heads * T`` floats per token per layer, plus
    logits. The fused kernels save neither the MLP hidden layer (``mlp = 'pallas'``) nor the
    attention scores (``attention = 'pallas'``), so those terms drop.
    """
    return _state_bytes(model_cfg, cfg) + cfg.batch_size * _example_bytes(model_cfg, seq_len)


def _state_bytes(model_cfg: ModelConfig, cfg: TrainConfig) -> int:
    """Bytes of one member's weights and optimizer state (see :func:`bytes_per_member`)."""
    return model_cfg.num_params() * 4 * (6 + (cfg.prefix_steps > 0))


def _example_bytes(model_cfg: ModelConfig, seq_len: int) -> int:
    """Activation bytes one training example of a minibatch keeps (see :func:`bytes_per_member`)."""
    hidden = 0 if model_cfg.mlp == "pallas" else 2 * model_cfg.mlp_ratio * model_cfg.d_model
    scores = 0 if model_cfg.attention == "pallas" else 2 * model_cfg.num_heads * seq_len
    per_tok_layer = 14 * model_cfg.d_model + hidden + scores
    bytes_per = 2 if model_cfg.compute_dtype != "float32" else 4
    return seq_len * (model_cfg.num_layers * per_tok_layer + 3 * model_cfg.vocab_size) * bytes_per


def device_memory_bytes() -> int:
    """Free memory of the first device if known (GPU/TPU), else 8 GiB for CPU."""
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
        limit = stats.get("bytes_limit", 0) - stats.get("bytes_in_use", 0)
        if limit > 0:
            return int(limit)
    except Exception:  # noqa: BLE001 - backends without memory stats
        pass
    return 8 * 2**30


def auto_chunk_size(model_cfg: ModelConfig, cfg: TrainConfig, seq_len: int, num_members: int, fraction: float = 0.5) -> int:
    """Largest chunk that fits ``fraction`` of device memory (per device), times device count."""
    per_device = max(1, int(fraction * device_memory_bytes() // bytes_per_member(model_cfg, cfg, seq_len)))
    return max(1, min(num_members, per_device * jax.device_count()))


def check_chunk_fits(model_cfg: ModelConfig, cfg: TrainConfig, seq_len: int, chunk_size: int) -> None:
    """Refuse (before compiling) a chunk whose estimated need exceeds the free device memory.

    ``chunk_size`` 0 (automatic) needs one member per device to fit. A member that does not fit
    alone is refused by its ``train.batch_size`` (or, when even one example is too many, by the
    model's size); a chunk of members that each fit, by ``run.chunk_size``.
    """
    gib = 2**30
    have = device_memory_bytes()
    state, example = _state_bytes(model_cfg, cfg), _example_bytes(model_cfg, seq_len)
    one = state + cfg.batch_size * example
    if one > have:
        if state + example > have:
            raise refuse("model", "d_model", model_cfg.d_model,
                         f"a model whose weights and Adam state fit {have / gib:.1f} GiB (fewer model.num_layers, "
                         "a smaller model.d_model or model.vocab_size)",
                         f" with model.num_layers={model_cfg.num_layers} does not fit one member on a device: about "
                         f"{(state + example) / gib:.1f} GiB at batch size 1, {have / gib:.1f} GiB free")
        raise refuse("train", "batch_size", cfg.batch_size, f"an integer in [1, {(have - state) // example}] on this device",
                     f" does not fit: one member needs about {one / gib:.1f} GiB, {have / gib:.1f} GiB free")
    per_device = max(1, -(-chunk_size // jax.device_count()))
    if per_device * one > have:
        fits = have // one * jax.device_count()
        raise refuse("run", "chunk_size", chunk_size, f"at most {fits} members per chunk (or 0 for automatic)",
                     f" does not fit: about {per_device * one / gib:.1f} GiB per device needed, {have / gib:.1f} GiB free")
