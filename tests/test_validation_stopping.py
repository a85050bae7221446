"""Validation stopping (train.stopping = "validation"): the stopping rule on a scripted score
sequence, the selected weights on a real member, the config's refusals and its hash."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difftrade.config.model_config import ModelConfig
from difftrade.config.train_config import Population, TrainConfig
from difftrade.model.transformer import graphdef
from difftrade.tasks import configs, data, make_task
from difftrade.train import trainer


def scripted(scores: list[tuple[float, float]], patience: int) -> trainer.Stopped:
    """The loop with trained variable = number of segments so far and a scripted score per value."""
    K = len(scores) - 1  # scores[0]: the starting point
    cfg = TrainConfig(
        steps=10 * K, num_checkpoints=K, warmup_steps=0, stopping="validation", patience=patience
    )
    table = jnp.asarray(scores, jnp.float32)

    def segment(carry, k):
        w, opt, bad = carry
        return (w + 1, opt, bad), (jnp.float32(k), jnp.float32(0.5))

    return trainer.validation_stopped(
        segment, lambda w: (table[w, 0], table[w, 1]), (jnp.int32(0), 0, jnp.int32(0)), cfg
    )


def brute_force(scores: list[tuple[float, float]], patience: int) -> tuple[int, int]:
    """(selected segment count, stopped segment count) by the rule written out in Python."""
    best, best_k, since, k = scores[0], 0, 0, 0
    while k < len(scores) - 1 and since < patience:
        k += 1
        if scores[k] < best:  # tuples: risk first, then cross-entropy
            best, best_k, since = scores[k], k, 0
        else:
            since += 1
    return best_k, k


@pytest.mark.parametrize("patience", [1, 2, 3, 10])
def test_the_loop_stops_and_selects_as_the_rule_says(patience):
    rng = np.random.default_rng(patience)
    for _ in range(5):
        risk = np.round(
            rng.uniform(0, 1, 13), 1
        )  # ties in risk are common, broken by cross-entropy
        scores = [(float(r), float(c)) for r, c in zip(risk, rng.uniform(0, 3, 13))]
        out = scripted(scores, patience)
        chosen, stopped = brute_force(scores, patience)
        assert int(out.best) == chosen
        assert int(out.selected_step) == 10 * chosen and int(out.stopped_step) == 10 * stopped
        curve = np.asarray(out.loss_curve)
        assert np.all(np.isfinite(curve[:stopped])) and np.all(np.isnan(curve[stopped:]))


@pytest.mark.slow  # compiles and trains two members
def test_a_real_member_keeps_its_best_checkpoint():
    """With patience above the number of checkpoints nothing stops: the curves equal fixed
    training's, and the kept weights score no worse on the validation set than the last ones."""
    task = make_task("addition", d_min=1, d_max=2)
    model_cfg = ModelConfig(d_model=32, num_layers=1, num_heads=2, seq_len=task.seq_len - 1)
    fixed = TrainConfig(steps=120, batch_size=16, warmup_steps=10, num_checkpoints=6)
    val = dataclasses.replace(fixed, stopping="validation", patience=7, val_examples=64)
    pop = Population(
        np.array([[0.0, 1.0]], np.float32),
        np.array([256], np.int32),
        np.array([0], np.int32),
        np.array([3e-3], np.float32),
    )
    key = jax.random.key(0)
    a = trainer.train_population(task, pop, model_cfg, fixed, key)
    b = trainer.train_population(task, pop, model_cfg, val, key)
    np.testing.assert_allclose(np.asarray(a.loss_curve), np.asarray(b.loss_curve), rtol=1e-6)
    assert int(b.stopped_step[0]) == 120 and 20 <= int(b.selected_step[0]) <= 120
    root = trainer.member_data_root(key, jnp.int32(0))
    tokens, mask, _ = data.examples(
        task, root, data.SPLITS["val"], jnp.asarray(pop.weights[0]), jnp.arange(64)
    )
    score = lambda params: trainer.validation_scores(
        graphdef(model_cfg), jax.tree.map(lambda x: x[0], params), tokens, mask
    )
    assert tuple(map(float, score(b.params))) <= tuple(map(float, score(a.params)))


def test_settings_that_would_be_ignored_are_refused_in_one_line():
    with pytest.raises(
        ValueError,
        match=r"^train\.patience=5 has no effect unless train\.stopping = 'validation'; allowed",
    ):
        TrainConfig(patience=5)
    with pytest.raises(
        ValueError, match=r"^train\.epochs=2\.0 cannot be combined with validation stopping"
    ):
        TrainConfig(epochs=2.0, stopping="validation")
    with pytest.raises(ValueError, match=r"train\.stopping='early'"):
        TrainConfig(stopping="early")


def test_the_hash_names_stopping_only_when_it_is_on():
    base = configs.load("quick")
    assert "stopping" not in base.to_dict()["train"]
    on = configs.from_dict(
        {**base.to_dict(), "train": {**base.to_dict()["train"], "stopping": "validation"}}
    )
    assert on.to_dict()["train"]["patience"] == 3 and on.hash() != base.hash()
    again = configs.from_dict(on.to_dict())
    assert again == on and again.hash() == on.hash()


@pytest.mark.slow  # a whole run directory, trained and reported
def test_a_run_records_its_stopping_and_the_report_says_it(tmp_path):
    from difftrade.analysis import report
    from difftrade.runner import experiment

    raw = configs.load("quick").to_dict()
    raw["grid"] = {**raw["grid"], "difficulties": [1, 3], "budgets": [64], "seeds": [0, 1]}
    raw["model"] = {**raw["model"], "d_model": 16, "num_layers": 1, "num_heads": 2}
    raw["train"] = {
        **raw["train"],
        "steps": 80,
        "warmup_steps": 5,
        "num_checkpoints": 8,
        "stopping": "validation",
        "patience": 2,
        "val_examples": 32,
    }
    raw["eval"] = {**raw["eval"], "n_test": 32, "n_train_eval": 32}
    ds = experiment.run(configs.from_dict(raw), tmp_path / "run", progress=False)
    stopped, selected = ds["stopped_step"].values, ds["selected_step"].values
    assert stopped.shape == (2, 1, 2) and np.all(selected <= stopped) and np.all(stopped <= 80)
    assert np.all(stopped % 10 == 0) and np.all(
        stopped >= 10 * 2
    )  # whole segments, at least `patience` of them
    line = report.stopping_line(ds)
    assert f"{int((stopped >= 80).sum())} of 4 members hit the cap" in line
    assert line in report.render(ds)
