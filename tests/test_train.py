import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_raw

from difftrade.config.train_config import Population, TrainConfig, prefix_budget
from difftrade.model.transformer import apply, graphdef
from difftrade.tasks import configs
from difftrade.train.run_task import run_task
from difftrade.train.trainer import (
    make_member_trainer,
    member_init_params,
    pad_members,
    train_population,
)


@pytest.fixture(scope="module")
def trained(tiny_cfg):
    pop = tiny_cfg.population()
    key = jax.random.key(tiny_cfg.run.seed)
    res = train_population(run_task(tiny_cfg), pop, tiny_cfg.model, tiny_cfg.train, key)
    return pop, key, res


def test_shapes_and_learning(tiny_cfg, trained):
    pop, _, res = trained
    m, k = pop.size, tiny_cfg.train.num_checkpoints
    assert res.loss_curve.shape == (m, k) and res.accuracy_curve.shape == (m, k)
    assert jax.tree.leaves(res.params)[0].shape[0] == m
    assert np.all(np.asarray(res.nonfinite_steps) == 0)
    # every member's training loss fell
    assert np.all(res.loss_curve[:, -1] < res.loss_curve[:, 0])
    # training moved the weights away from the (returned) initialisation
    moved = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), res.params, res.init_params)
    assert max(float(x) for x in jax.tree.leaves(moved)) > 1e-3


@pytest.mark.slow
def test_vmap_equals_single_member_loop(tiny_cfg, trained):
    """The population program computes what the single-member trainer computes, member by member."""
    pop, key, res = trained
    member = jax.jit(make_member_trainer(run_task(tiny_cfg), tiny_cfg.model, tiny_cfg.train, key))
    for i in (0, pop.size - 1):
        p0 = member_init_params(tiny_cfg.model, key, jnp.int32(pop.seed[i]))
        one = member(
            p0,
            jnp.asarray(pop.weights[i]),
            jnp.int32(pop.budget[i]),
            jnp.int32(pop.seed[i]),
            jnp.float32(pop.learning_rate[i]),
        )
        np.testing.assert_allclose(one.loss_curve, res.loss_curve[i], rtol=2e-4, atol=2e-5)
        # Weights agree to rounding except where Adam amplifies float noise in near-zero
        # gradients; the function they compute agrees tightly.
        tokens = jax.random.randint(jax.random.key(9), (4, tiny_cfg.model.seq_len), 0, 64)
        gdef = graphdef(tiny_cfg.model)
        ref = apply(gdef, one.params, tokens)
        got = apply(gdef, jax.tree.map(lambda x, i=i: x[i], res.params), tokens)
        np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(ref))))


def test_deterministic(tiny_cfg, trained):
    pop, key, res = trained
    again = train_population(run_task(tiny_cfg), pop, tiny_cfg.model, tiny_cfg.train, key)
    np.testing.assert_array_equal(again.loss_curve, res.loss_curve)
    for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(res.params)):
        np.testing.assert_array_equal(a, b)


def test_budget_one_memorises_its_single_example(tiny_cfg, trained):
    """A member with n = 1 only ever sees example 0: its batch accuracy reaches 1."""
    pop, _, res = trained
    ones = np.where(pop.budget == 1)[0]
    assert ones.size and np.all(res.accuracy_curve[ones, -1] == 1.0)


@pytest.mark.slow  # trains a population with a diverging member
def test_nan_member_flagged_and_isolated(tiny_cfg, trained):
    pop, key, res = trained
    sub = pop.take(np.array([0, 1]))
    init = jax.vmap(lambda s: member_init_params(tiny_cfg.model, key, s))(jnp.asarray(sub.seed))
    leaves, tree = jax.tree.flatten(init)
    leaves[0] = leaves[0].at[1].set(jnp.nan)  # poison member 1 only
    out = train_population(
        run_task(tiny_cfg),
        sub,
        tiny_cfg.model,
        tiny_cfg.train,
        key,
        init=jax.tree.unflatten(tree, leaves),
    )
    assert int(out.nonfinite_steps[1]) == tiny_cfg.train.steps
    assert int(out.nonfinite_steps[0]) == 0
    np.testing.assert_allclose(out.loss_curve[0], res.loss_curve[0], rtol=1e-5)


def test_padding_repeats_last_member():
    pop = Population(
        np.ones((3, 2), np.float32) / 2,
        np.array([1, 2, 3]),
        np.array([0, 1, 2]),
        np.full(3, 1e-3, np.float32),
    )
    padded, m = pad_members(pop, 4)
    assert m == 3 and padded.size == 4 and padded.budget[-1] == 3


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"steps": 0}, "steps"),
        ({"steps": 10, "num_checkpoints": 3}, "num_checkpoints"),
        ({"batch_size": 0}, "batch_size"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"grad_clip": -1.0}, "grad_clip"),
        (
            {"steps": 40, "warmup_steps": 4, "num_checkpoints": 4, "prefix_steps": 15},
            "prefix_steps",
        ),
        ({"steps": 40, "warmup_steps": 4, "prefix_steps": 40}, "prefix_steps"),
        ({"prefix_fraction": 1.0}, "prefix_fraction"),
        ({"prefix_fraction": 0}, "prefix_fraction"),
    ],
)
def test_bad_train_config(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kwargs)


def test_prefix_budget_host_and_device_agree():
    n = np.arange(1, 5000, dtype=np.int32)
    for fraction in (0.5, 0.3, 0.7, 0.9, 0.123):
        host = prefix_budget(n, fraction)
        np.testing.assert_array_equal(
            host, np.asarray(jax.jit(lambda b, f=fraction: prefix_budget(b, f))(jnp.asarray(n)))
        )
        assert np.all(
            (host >= 1)
            & (host <= np.maximum(1, np.floor(fraction * n) + 1))
            & (host >= np.floor(fraction * n) - 1)
        )
    np.testing.assert_array_equal(
        prefix_budget(np.array([1, 2, 3, 64, 65]), 0.5), [1, 1, 1, 32, 32]
    )


@pytest.mark.slow
def test_prefix_phase_sees_only_the_first_examples(tiny_cfg):
    """With ``prefix_steps``, members whose budgets share n' = prefix_budget(n) (64 and 65 at 0.5)
    run an identical prefix phase: the same saved prior weights and loss curve up to it, bitwise.
    Had the phase drawn from [0, n), their minibatches would differ. After it they part, and a
    member with another n' (66 -> 33) differs from the start."""
    cfg = dataclasses.replace(tiny_cfg.train, prefix_steps=20)  # 40 steps, segments of 10
    pop = Population(
        np.tile([[0.0, 1.0]], (3, 1)).astype(np.float32),
        np.array([64, 65, 66]),
        np.zeros(3, np.int32),
        np.full(3, 3e-3, np.float32),
    )
    res = train_population(run_task(tiny_cfg), pop, tiny_cfg.model, cfg, jax.random.key(0))
    leaves = [np.asarray(x) for x in jax.tree.leaves(res.prior_params)]
    assert all(np.array_equal(x[0], x[1]) for x in leaves)
    assert not all(np.array_equal(x[0], x[2]) for x in leaves)
    curve = np.asarray(res.loss_curve)
    assert curve.shape == (3, 4)
    np.testing.assert_array_equal(curve[0, :2], curve[1, :2])
    assert curve[0, 2] != curve[1, 2] and curve[0, 0] != curve[2, 0]
    final = [np.asarray(x) for x in jax.tree.leaves(res.params)]
    assert not all(np.array_equal(x[0], x[1]) for x in final)
    assert (
        train_population(
            run_task(tiny_cfg),
            pop.take(np.array([0])),
            tiny_cfg.model,
            tiny_cfg.train,
            jax.random.key(0),
        ).prior_params
        is None
    )


def test_bad_population_and_shapes(tiny_cfg):
    with pytest.raises(ValueError, match="budget"):
        Population(np.ones((1, 2)), np.array([0]), np.array([0]), np.array([1e-3]))
    with pytest.raises(ValueError, match="learning_rate"):
        Population(np.ones((1, 2)), np.array([1]), np.array([0]), np.array([0.0]))
    pop = tiny_cfg.population()
    short = dataclasses.replace(tiny_cfg.model, seq_len=3)
    with pytest.raises(ValueError, match="seq_len"):
        train_population(run_task(tiny_cfg), pop, short, tiny_cfg.train, jax.random.key(0))


@pytest.mark.slow
def test_fused_kernels_train_the_same_members():
    """The population trainer with both Pallas kernels (interpreted off-GPU) trains what the XLA
    path trains: same loss curves and weights, through vmap over members and the step scans."""
    cfg = configs.from_dict(tiny_raw(train={"steps": 8, "warmup_steps": 2, "num_checkpoints": 2}))
    pop = cfg.population().take(np.arange(4))
    key = jax.random.key(0)
    plain = train_population(run_task(cfg), pop, cfg.model, cfg.train, key)
    fused_model = dataclasses.replace(
        cfg.model, attention="pallas", mlp="pallas", kernels="interpret"
    )
    fused = train_population(run_task(cfg), pop, fused_model, cfg.train, key)
    np.testing.assert_allclose(fused.loss_curve, plain.loss_curve, rtol=1e-5)
    # The key bias has an exactly zero gradient (it adds the same q·b to every logit of a query),
    # so both paths feed Adam rounding noise there and Adam turns it into steps of size ~lr:
    # those entries agree only to lr x steps. Every other weight agrees to rounding.
    diff = np.concatenate(
        [
            np.abs(np.asarray(a) - np.asarray(b)).ravel()
            for a, b in zip(jax.tree.leaves(fused.params), jax.tree.leaves(plain.params))
        ]
    )
    assert diff.max() <= cfg.grid.learning_rate * cfg.train.steps
    assert np.mean(diff < 1e-5) > 0.95, np.mean(diff < 1e-5)
    assert not np.allclose(
        jax.tree.leaves(plain.params)[2], jax.tree.leaves(plain.init_params)[2]
    )  # it trained


def test_memory_estimate_drops_what_fused_kernels_do_not_save():
    from difftrade.config.model_config import ModelConfig
    from difftrade.train.chunk_sizing import bytes_per_member

    cfg, tc, t = (
        ModelConfig(d_model=128, num_layers=2, num_heads=4, compute_dtype="bfloat16"),
        TrainConfig(batch_size=64),
        29,
    )
    plain = bytes_per_member(cfg, tc, t)
    fused = bytes_per_member(dataclasses.replace(cfg, attention="pallas", mlp="pallas"), tc, t)
    hidden, scores = 2 * 4 * 128, 2 * 4 * t  # per token and layer, in compute-dtype values
    assert plain - fused == 64 * t * 2 * (hidden + scores) * 2
    # a prefix phase returns one more float32 copy of the weights
    with_prefix = bytes_per_member(cfg, dataclasses.replace(tc, steps=1000, prefix_steps=500), t)
    assert with_prefix - plain == cfg.num_params() * 4
