"""Model-based difficulty: the sample_at hook, bank tasks, scoring, agreement, config, a grid run."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_raw
from scipy import stats

from difftrade.config import level_weights
from difftrade.config.train_config import Population, TrainConfig
from difftrade.model.checkpoint import save_base
from difftrade.model.transformer import init_params
from difftrade.recommender.difficulty_agreement import agreement, rank_agreement
from difftrade.runner import experiment
from difftrade.tasks import configs, data, make_task
from difftrade.tasks.bank import BankTask
from difftrade.tasks.configs import source_task
from difftrade.train.run_task import run_task
from difftrade.train.scored_difficulty import model_based_task, score
from difftrade.train.trainer import train_population

NUM_LEVELS, PER_LEVEL = 3, 40


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A tiny model trained a little on nominal addition 1..2 (uniform), saved as a base."""
    cfg = configs.from_dict(tiny_raw())
    task = run_task(cfg)
    pop = Population(
        weights=np.asarray([level_weights.uniform(task)], np.float32),
        budget=np.asarray([512], np.int32),
        seed=np.asarray([0], np.int32),
        learning_rate=np.asarray([3e-3], np.float32),
    )
    train_cfg = TrainConfig(steps=60, batch_size=32, warmup_steps=10, num_checkpoints=1)
    params = jax.tree.map(
        lambda x: x[0],
        train_population(task, pop, cfg.model, train_cfg, jax.random.key(1000)).params,
    )
    path = save_base(
        tmp_path_factory.mktemp("ref") / "base", params, cfg.model, {"note": "test reference"}
    )
    return cfg, params, path


@pytest.fixture(scope="module")
def bank(reference) -> BankTask:
    cfg, params, _ = reference
    return model_based_task(
        run_task(cfg),
        params,
        cfg.model,
        num_levels=NUM_LEVELS,
        per_level=PER_LEVEL,
        key=jax.random.key(7),
    )


def _rows(tokens) -> list[bytes]:
    return [r.tobytes() for r in np.asarray(tokens, np.int8).reshape(-1, np.shape(tokens)[-1])]


# ---- the sample_at hook --------------------------------------------------------------------------
def test_sample_at_default_is_the_documented_key_path():
    task = make_task("addition")
    root = jax.random.key(3)
    idx = jnp.arange(64)

    @jax.jit
    def new_and_old(root):
        single = [
            (
                task.sample_at(root, s, d, i),
                task.sample(
                    jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, s), d), i), d
                ),
            )
            for s, d, i in [(0, 1, 0), (1, 4, 17), (2, 8, 123456)]
        ]
        # the data layer's batched streams and the key-building path they replaced
        weights = jnp.asarray(level_weights.mixture(task, 5, 0.6), jnp.float32)
        tokens, mask, levels = data.examples(task, root, 1, weights, idx)
        keys = jax.vmap(lambda d, i: data.example_key(root, 1, d, i))(levels, idx)
        mixed = ((tokens, mask), jax.vmap(task.sample)(keys, levels))
        keys = jax.vmap(lambda i: data.example_key(root, 0, 3, i))(idx)
        at_level = (
            data.examples_at_level(task, root, 0, 3, idx),
            jax.vmap(task.sample, in_axes=(0, None))(keys, 3),
        )
        return single + [mixed, at_level]

    for new, old in new_and_old(root):
        for a, b in zip(new, old):
            np.testing.assert_array_equal(a, b)


# ---- bank tasks ---------------------------------------------------------------------------------
def test_bank_shapes_identity_and_describe(bank, reference):
    cfg = reference[0]
    assert (bank.d_min, bank.d_max, bank.levels, bank.per_level) == (
        1,
        NUM_LEVELS,
        (1, 2, 3),
        PER_LEVEL,
    )
    assert bank.seq_len == run_task(cfg).seq_len and bank.sample_space_size(2) == PER_LEVEL
    assert set(bank.banks) == {"train", "test", "bound"}
    for b in bank.banks.values():
        assert (
            b.tokens.shape == (NUM_LEVELS, PER_LEVEL, bank.seq_len) and b.tokens.dtype == np.int32
        )
        assert b.nominal.shape == b.score.shape == (NUM_LEVELS, PER_LEVEL)
        assert set(np.unique(b.nominal)) <= set(run_task(cfg).levels)
    other = dataclasses.replace(bank)  # same fields, another object: equal only to itself
    assert bank == bank and other != bank and hash(other) != hash(bank)  # noqa: PLR0124
    assert "addition" in bank.describe()
    with pytest.raises(ValueError, match="no bank"):
        bank.sample_at(jax.random.key(0), data.SPLITS["pool"], 1, 0)
    with pytest.raises(ValueError, match="out of range"):
        bank.sample_at(jax.random.key(0), 0, NUM_LEVELS + 1, 0)
    # the answers are the source task's: the reference solver agrees with every train row
    tokens, mask = bank.banks["train"].tokens[1, :5], bank.banks["train"].mask[1, :5]
    for t, m in zip(tokens, mask):
        from difftrade.tasks import split_prompt_answer

        prompt, answer = split_prompt_answer(t, m)
        assert bank.solve(prompt) == answer


def test_bank_budgets_are_nested_without_repeats_and_splits_disjoint(bank):
    root = jax.random.key(0)
    for level in bank.levels:
        big, _ = data.examples_at_level(
            bank, root, data.SPLITS["train"], level, jnp.arange(PER_LEVEL + 3)
        )
        small, _ = data.examples_at_level(bank, root, data.SPLITS["train"], level, jnp.arange(10))
        np.testing.assert_array_equal(big[:10], small)  # budget n = the first n rows
        assert len(set(_rows(big[:PER_LEVEL]))) == PER_LEVEL  # nothing repeats up to per_level
        np.testing.assert_array_equal(big[PER_LEVEL:], big[:3])  # then it wraps around
        other, _ = data.examples_at_level(
            bank, jax.random.key(99), data.SPLITS["train"], level, jnp.arange(10)
        )
        np.testing.assert_array_equal(other, small)  # a bank is a fixed pool: the root is unused
    sets = {split: set(_rows(b.tokens)) for split, b in bank.banks.items()}
    assert all(len(s) == NUM_LEVELS * PER_LEVEL for s in sets.values())  # distinct within a split
    assert (
        not sets["train"] & sets["test"]
        and not sets["train"] & sets["bound"]
        and not sets["test"] & sets["bound"]
    )
    # a mixture stream reads the bank rows of each example's level
    weights = jnp.asarray(level_weights.uniform(bank), jnp.float32)
    tokens, _, levels = data.examples(bank, root, data.SPLITS["test"], weights, jnp.arange(30))
    for t, d, i in zip(np.asarray(tokens), np.asarray(levels), range(30)):
        np.testing.assert_array_equal(t, bank.banks["test"].tokens[d - 1, i])
    # overlap accounting sees a finite space with no test/train overlap
    report = data.overlap_report(bank, root, 2, PER_LEVEL, PER_LEVEL)
    assert (report.duplicate_train, report.test_in_train, report.sample_space) == (0, 0, PER_LEVEL)


def test_levels_are_monotone_in_the_reference_loss(bank, reference):
    cfg, params, _ = reference
    train = bank.banks["train"]
    for k in range(NUM_LEVELS - 1):
        assert train.score[k].max() <= train.score[k + 1].min()
    np.testing.assert_allclose(bank.edges, [train.score[k].min() for k in range(1, NUM_LEVELS)])
    for split in ("test", "bound"):  # other splits are binned by the train edges
        s = bank.banks[split].score
        edges = np.concatenate([[-np.inf], bank.edges, [np.inf]])
        assert np.all((s >= edges[:-1, None]) & (s < edges[1:, None]))
    # recorded scores are the reference model's per-example loss
    flat_t = train.tokens.reshape(-1, bank.seq_len)
    again = score(
        run_task(cfg), params, cfg.model, flat_t, train.mask.reshape(flat_t.shape), batch_size=32
    )
    np.testing.assert_allclose(again, train.score.ravel(), rtol=1e-5)


def test_too_few_distinct_problems_is_a_clear_error(reference):
    cfg, params, _ = reference
    tiny = make_task("addition", d_min=1, d_max=1)  # 100 distinct problems
    with pytest.raises(ValueError, match=r"only \d+ distinct problems"):
        model_based_task(
            tiny,
            params,
            dataclasses.replace(cfg.model, seq_len=tiny.seq_len - 1),
            num_levels=2,
            per_level=64,
            key=jax.random.key(0),
            max_pool_factor=4,
        )


# ---- agreement ------------------------------------------------------------------------------------
def test_rank_agreement_matches_a_hand_computed_spearman():
    rng = np.random.default_rng(0)
    nominal = rng.integers(1, 5, 300)
    scores = nominal + rng.normal(0, 1.5, 300)
    out = rank_agreement(scores, nominal, 4, (1, 2, 3, 4))
    ranks_s, ranks_n = stats.rankdata(scores), stats.rankdata(nominal)  # average ranks for ties
    assert out["spearman_rho"] == pytest.approx(np.corrcoef(ranks_s, ranks_n)[0, 1], abs=1e-12)
    assert out["counts"].sum() == 300 and np.all(out["counts"].sum(axis=1) == 75)
    assert np.all(np.diff(out["mean_nominal"]) > 0)  # noisy but monotone at this noise level
    for j, d in enumerate((1, 2, 3, 4)):
        assert out["mean_score"][j] == pytest.approx(scores[nominal == d].mean())


def test_agreement_is_positive_for_a_trained_reference(reference):
    cfg, params, _ = reference
    out = agreement(run_task(cfg), params, cfg.model, 400, jax.random.key(5))
    assert np.isfinite(out["spearman_rho"]) and out["spearman_rho"] > 0.2, out
    assert out["mean_score"][0] < out["mean_score"][1]  # nominal level 2 costs the reference more
    assert out["mean_nominal"][0] < out["mean_nominal"][-1]
    assert out["nominal_levels"] == (1, 2) and out["n"] == 400


# ---- config and a grid run ----------------------------------------------------------------------
def _model_raw(path, **difficulty):
    return tiny_raw(
        difficulty={
            "kind": "model",
            "reference": str(path),
            "num_levels": NUM_LEVELS,
            "per_level": PER_LEVEL,
            "pool_seed": 7,
            **difficulty,
        },
        grid={"difficulties": [1, 3], "budgets": [8, 32], "seeds": [0]},
    )


@pytest.mark.slow
def test_grid_runs_on_model_based_levels(reference, tmp_path):
    _, _, path = reference
    cfg = configs.from_dict(_model_raw(path))
    assert run_task(cfg) is run_task(configs.from_dict(_model_raw(path)))  # scored once, cached
    assert isinstance(run_task(cfg), BankTask) and run_task(cfg).levels == (1, 2, 3)
    assert cfg.hash() != configs.from_dict(_model_raw(path, pool_seed=8)).hash()
    ds = experiment.run(cfg, tmp_path / "run", progress=False)
    assert ds["level"].values.tolist() == [1, 2, 3] and ds["difficulty"].values.tolist() == [1, 3]
    assert np.all(np.isfinite(ds["target_risk"].values)) and np.all(
        np.isfinite(ds["level_ce"].values)
    )
    assert np.all(ds["test_in_train_fraction"].values == 0) and np.all(
        ds["duplicate_fraction"].values == 0
    )
    assert '"difficulty"' in ds.attrs["config"]


def test_configs_without_difficulty_keep_their_hash():
    plain = configs.from_dict(tiny_raw())
    nominal = configs.from_dict(tiny_raw(difficulty={"kind": "nominal"}))
    assert "difficulty" not in plain.to_dict() and plain.hash() == nominal.hash()
    assert run_task(nominal) == run_task(plain)


def test_bad_difficulty_configs_raise(reference, tmp_path):
    cfg, _, path = reference
    with pytest.raises(ValueError, match="difficulty.kind='modle' \\(did you mean 'model'\\?\\)"):
        configs.from_dict(tiny_raw(difficulty={"kind": "modle"}))
    with pytest.raises(ValueError, match="difficulty.reference is missing"):
        configs.from_dict(tiny_raw(difficulty={"kind": "model"}))
    with pytest.raises(ValueError, match="only apply to kind"):
        configs.from_dict(tiny_raw(difficulty={"reference": str(path)}))
    with pytest.raises(
        ValueError, match="key 'per_levels' is unknown \\(did you mean 'per_level'\\?\\)"
    ):
        configs.from_dict(_model_raw(path, per_levels=3))
    with pytest.raises(
        ValueError,
        match=r"grid.difficulties=\[4\] is out of range for model-based levels; allowed: .* 1..3",
    ):
        configs.from_dict(
            tiny_raw(
                difficulty={"kind": "model", "reference": str(path), "num_levels": 3},
                grid={"difficulties": [4]},
            )
        )
    with pytest.raises(ValueError, match="per_level=16"):
        configs.from_dict(_model_raw(path, per_level=16))
    with pytest.raises(ValueError, match="run.target"):
        configs.from_dict(
            tiny_raw(
                difficulty={"kind": "model", "reference": str(path), "num_levels": 3},
                run={"target": [0.5, 0.5]},
            )
        )
    with pytest.raises(ValueError, match="difficulty.reference=.*no base.json"):
        _ = run_task(configs.from_dict(_model_raw(tmp_path / "nowhere")))
    wide = save_base(
        tmp_path / "wide",
        init_params(dataclasses.replace(cfg.model, d_model=32), jax.random.key(0)),
        dataclasses.replace(cfg.model, d_model=32),
        {},
    )
    with pytest.raises(
        ValueError, match="difficulty.reference=.*model.d_model: checkpoint 32 vs config 16"
    ):
        _ = run_task(configs.from_dict(_model_raw(wide)))
    # defaults: as many levels as the task, per_level = max(budgets, n_test)
    d = configs.from_dict(tiny_raw(difficulty={"kind": "model", "reference": str(path)})).difficulty
    assert (d.num_levels, d.per_level) == (2, 32)


def test_experiment_configs_parse_and_share_the_architecture():
    root = __import__("pathlib").Path(__file__).resolve().parents[1] / "experiments"
    model_cfg, pretrain = (
        configs.load(root / "model_difficulty.toml"),
        configs.load(root / "pretrain.toml"),
    )
    assert model_cfg.difficulty.kind == "model" and model_cfg.num_levels == 8
    assert model_cfg.model == pretrain.model == configs.load(root / "tradeoff.toml").model
    assert pretrain.population().size == 1  # `difftrade pretrain` needs exactly one member
    assert source_task(model_cfg) == run_task(pretrain)
    # the CPU certificate pair (docs/notes.md): a one-member strong base, quick.toml fine-tuned from it
    strong, finetune, quick = (
        configs.load(root / f)
        for f in ("quick_strong_pretrain.toml", "quick_finetune.toml", "quick.toml")
    )
    assert strong.population().size == 1 and strong.model == finetune.model == quick.model
    assert finetune.run.init == "runs/quick_strong_pretrain/base" and finetune.grid == quick.grid
    # its prefix-prior variant differs only in the prefix phase (a multiple of the segment, below steps)
    prefix = configs.load(root / "quick_finetune_prefix.toml")
    assert dataclasses.replace(prefix.train, prefix_steps=0, prefix_fraction=0.5) == finetune.train
    assert prefix.train.prefix_steps > 0 and (prefix.grid, prefix.model, prefix.run) == (
        finetune.grid,
        finetune.model,
        finetune.run,
    )
    mixture = configs.load(root / "quick_mixture_prefix.toml")
    assert (
        dataclasses.replace(mixture.grid, train_distribution="point") == quick.grid
        and mixture.model == quick.model
    )
    assert (
        dataclasses.replace(mixture.train, prefix_steps=0, num_checkpoints=6) == quick.train
        and mixture.train.prefix_steps > 0
    )
    # its larger variant: one level harder, 4x the largest budget, the same model and mixture
    large = configs.load(root / "quick_mixture_prefix_large.toml")
    assert run_task(large).d_max == run_task(mixture).d_max + 1 and max(
        large.grid.budgets
    ) == 4 * max(mixture.grid.budgets)
    assert (
        dataclasses.replace(large.model, seq_len=mixture.model.seq_len) == mixture.model
    )  # longer sequences only
    assert large.grid.train_distribution == "mixture" and large.train.prefix_steps > 0
    gpu_mixture, gpu_prefix = (
        configs.load(root / "tradeoff_mixture.toml"),
        configs.load(root / "tradeoff_mixture_prefix.toml"),
    )
    assert (
        dataclasses.replace(gpu_prefix.train, prefix_steps=0, num_checkpoints=10)
        == gpu_mixture.train
    )
    assert gpu_prefix.train.prefix_steps > 0
    assert (gpu_prefix.grid, gpu_prefix.model, gpu_prefix.eval) == (
        gpu_mixture.grid,
        gpu_mixture.model,
        gpu_mixture.eval,
    )
