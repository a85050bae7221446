"""Compiled population programs are cached on static configuration only: the run key is an
argument, so a population trained and evaluated under a second key (a new ``run.seed``) reuses
the programs compiled for the first, and gets the numbers a fresh compile for that key gets."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_raw

from difftrade.config.sections import SubspaceConfig
from difftrade.tasks import configs
from difftrade.train.evaluate import compiled_evaluator, evaluate_population
from difftrade.train.programs import PROGRAMS
from difftrade.train.run_task import run_task
from difftrade.train.subspace import Subspace, projection_key
from difftrade.train.trainer import (
    FullView,
    compiled_trainer,
    member_init_params,
    train_population,
    view_of,
)

# A config of this module's own (no other module compiles it): 4 members, 8 steps.
CFG = configs.from_dict(tiny_raw(train={"steps": 8, "warmup_steps": 2, "num_checkpoints": 2}))
POP = CFG.population().take(np.arange(4))


def run(key: jax.Array) -> dict[str, np.ndarray]:
    """Train and evaluate POP under ``key``: every output leaf as numpy, by name."""
    res = train_population(run_task(CFG), POP, CFG.model, CFG.train, key)
    ev = evaluate_population(
        run_task(CFG), res.params, POP.weights, POP.budget, POP.seed, CFG.model, CFG.eval, key
    )
    leaves = {f"train/{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(res))}
    return leaves | {f"eval/{k}": v for k, v in ev.items()}


def fresh_caches(monkeypatch) -> None:
    """Forget every compiled program, as a new process would start."""
    PROGRAMS.clear()
    jax.clear_caches()


@pytest.mark.slow  # three trainer compiles (~25 s)
def test_second_key_reuses_programs_and_matches_a_fresh_compile(monkeypatch):
    fresh_caches(monkeypatch)
    before = PROGRAMS.traces()
    a = run(jax.random.key(0))
    assert PROGRAMS.traces() - before == {"train": 1, "evaluate": 1}
    b = run(jax.random.key(1))
    assert PROGRAMS.traces() - before == {"train": 1, "evaluate": 1}  # key 1 compiled nothing
    # The key is really an input, not the first call's key kept as a constant: results differ.
    assert not np.array_equal(a["train/0"], b["train/0"])
    assert not np.array_equal(a["eval/level_ce"], b["eval/level_ce"])

    fresh_caches(monkeypatch)
    fresh = run(jax.random.key(1))
    assert PROGRAMS.traces() - before == {"train": 2, "evaluate": 2}  # it did compile afresh
    assert sorted(fresh) == sorted(b)
    for k in b:
        np.testing.assert_array_equal(b[k], fresh[k], err_msg=k)


@pytest.mark.slow  # a second trainer compile
def test_subspace_member_uses_the_calls_key(monkeypatch):
    """A subspace member's projection comes from the key of the call: under a second key the
    same program trains weights ``θ₀ + P z`` with that key's ``θ₀`` and ``P``."""
    fresh_caches(monkeypatch)
    sub = SubspaceConfig(dim=8)
    before = PROGRAMS.traces()
    pop = POP.take(np.array([0, 3]))
    for seed in (0, 1):
        key = jax.random.key(seed)
        res = train_population(run_task(CFG), pop, CFG.model, CFG.train, key, view=view_of(sub))
        for i in range(pop.size):
            s = jnp.int32(pop.seed[i])
            rebuilt = Subspace(
                sub, member_init_params(CFG.model, key, s), projection_key(key, s)
            ).weights(res.coords[i])
            for x, y in zip(
                jax.tree.leaves(rebuilt),
                jax.tree.leaves(jax.tree.map(lambda x, i=i: x[i], res.params)),
            ):
                np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)
    assert PROGRAMS.traces() - before == {"train": 1}


def test_cache_keys_hold_static_configuration_and_kernel_mode():
    """The same static configuration gives the same program whatever the key (no key is
    passed); another Pallas kernel mode (model.kernels) is another program."""
    model = CFG.model.for_members(POP.size // jax.device_count())
    trainer = compiled_trainer(run_task(CFG), model, CFG.train, FullView())
    evaluator = compiled_evaluator(run_task(CFG), model, CFG.eval)
    assert compiled_trainer(run_task(CFG), model, CFG.train) is trainer
    assert compiled_evaluator(run_task(CFG), model, CFG.eval) is evaluator
    interpreted = dataclasses.replace(model, kernels="interpret")
    assert compiled_trainer(run_task(CFG), interpreted, CFG.train) is not trainer
    assert compiled_evaluator(run_task(CFG), interpreted, CFG.eval) is not evaluator
    assert compiled_trainer(run_task(CFG), model, CFG.train) is trainer


@pytest.mark.slow  # two small runs, one trainer and one evaluator compile (~20 s)
def test_a_run_reports_its_compilations_and_a_new_seed_compiles_nothing(monkeypatch, tmp_path):
    """results.nc and the report count the programs a run compiled: a fresh process compiles the
    trainer and the evaluator once for all chunks; a second run differing only in run.seed, none."""
    import dataclasses

    from difftrade.analysis import report
    from difftrade.runner import experiment

    fresh_caches(monkeypatch)
    raw = tiny_raw(
        train={"steps": 8, "warmup_steps": 2, "num_checkpoints": 2}, run={"chunk_size": 2}
    )
    first = experiment.run(configs.from_dict(raw), tmp_path / "a", progress=False)
    cfg = configs.from_dict(raw)
    second = experiment.run(
        dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=1)),
        tmp_path / "b",
        progress=False,
    )
    assert (
        first.attrs["compiled_programs"] == 2
    )  # 4 chunks of 2 members: one program each for train and evaluate
    assert second.attrs["compiled_programs"] == 0
    assert not np.array_equal(
        first["loss_curve"].values, second["loss_curve"].values
    )  # the new key is used
    assert "; 0 compiled programs; " in report.render(second)
