"""Pretrain a base, save it with orbax, fine-tune a grid from it."""

import dataclasses

import jax
import numpy as np
import pytest
from conftest import tiny_raw

from difftrade.cli.main import main
from difftrade.model.checkpoint import load_base, save_base
from difftrade.model.transformer import apply, graphdef, init_params
from difftrade.runner import experiment
from difftrade.tasks import configs
from difftrade.train.evaluate import evaluate_population
from difftrade.train.run_task import run_task


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("pre")
    raw = tiny_raw(
        grid={"difficulties": [2], "budgets": [256], "seeds": [0], "train_distribution": "up_to"},
        train={"steps": 60},
        run={"seed": 1000},
    )
    path = out / "pretrain.toml"
    lines = []
    for section, values in raw.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {v!r}".replace("'", '"') for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    assert main(["pretrain", str(path), "--out", str(out / "run")]) == 0
    assert main(["pretrain", str(path), "--out", str(out / "run")]) == 0  # a rerun reuses the base
    return configs.from_dict(raw), out / "run" / "base"


def test_round_trip_identical_logits(tmp_path):
    cfg = configs.from_dict(tiny_raw())
    params = init_params(cfg.model, jax.random.key(7))
    save_base(tmp_path / "b", params, cfg.model, {"note": "test"})
    restored = load_base(tmp_path / "b", cfg.model)
    tokens = jax.random.randint(jax.random.key(1), (3, cfg.model.seq_len), 0, 64)
    g = graphdef(cfg.model)
    np.testing.assert_array_equal(apply(g, params, tokens), apply(g, restored, tokens))
    with pytest.raises(ValueError, match="already exists"):
        save_base(tmp_path / "b", params, cfg.model, {})


def test_architecture_mismatch_is_refused(base):
    cfg, path = base
    wider = dataclasses.replace(cfg.model, d_model=32)
    with pytest.raises(ValueError, match="model.d_model: checkpoint 16 vs config 32"):
        load_base(path, wider)
    with pytest.raises(ValueError, match="not a base checkpoint"):
        load_base(path.parent, cfg.model)


@pytest.mark.slow
def test_finetune_with_vanishing_rate_reproduces_base(base, tmp_path):
    """lr -> 0 fine-tuning (the closest to zero steps the trainer allows) keeps the base's metrics."""
    _pre_cfg, path = base
    raw = tiny_raw(grid={"learning_rate": 1e-12}, run={"init": str(path)})
    cfg = configs.from_dict(raw)
    ds = experiment.run(cfg, tmp_path / "ft", progress=False)
    params = load_base(path, cfg.model)
    pop = cfg.population()
    stacked = jax.tree.map(lambda x: np.broadcast_to(x, (pop.size, *x.shape)), params)
    ev = evaluate_population(
        run_task(cfg),
        stacked,
        pop.weights,
        pop.budget,
        pop.seed,
        cfg.model,
        cfg.eval,
        jax.random.key(cfg.run.seed),
    )
    np.testing.assert_array_equal(ds["level_exact"].values.reshape(pop.size, -1), ev["level_exact"])
    np.testing.assert_allclose(
        ds["level_ce"].values.reshape(pop.size, -1), ev["level_ce"], rtol=1e-5
    )
    # the base learned something (its loss is far below an untrained model's), so this is not
    # a comparison between two untrained models
    fresh = jax.vmap(lambda s: init_params(cfg.model, jax.random.key(s)))(np.arange(pop.size))
    ev0 = evaluate_population(
        run_task(cfg),
        fresh,
        pop.weights,
        pop.budget,
        pop.seed,
        cfg.model,
        cfg.eval,
        jax.random.key(0),
    )
    assert ev["level_ce"].mean() < 0.7 * ev0["level_ce"].mean()


@pytest.mark.slow
def test_finetuning_starts_from_the_base(base, tmp_path):
    _, path = base
    scratch = experiment.run(configs.from_dict(tiny_raw()), tmp_path / "s", progress=False)
    ft = experiment.run(
        configs.from_dict(tiny_raw(run={"init": str(path)})), tmp_path / "f", progress=False
    )
    # the first segment's training loss is lower from a pretrained base
    assert float(ft["loss_curve"].isel(checkpoint=0).mean()) < float(
        scratch["loss_curve"].isel(checkpoint=0).mean()
    )


@pytest.mark.slow  # trains a tiny grid twice (~50 s)
def test_a_finetuned_run_records_its_base_and_refuses_another(base, tmp_path):
    """config.json and results.nc record the base's identity; a resume, and `bound`/`compress` (load_run_base),
    refuse a run whose base at run.init was replaced by the base of another experiment."""
    import json

    from difftrade.model.checkpoint import BASE_HASH, load_run_base, read_meta

    pre_cfg, path = base
    cfg = configs.from_dict(tiny_raw(run={"init": str(path)}))
    out = tmp_path / "f"
    ds = experiment.run(cfg, out, progress=False)
    recorded = json.loads((out / "config.json").read_text())[BASE_HASH]
    assert recorded == ds.attrs[BASE_HASH] == read_meta(path)["config_hash"] == pre_cfg.hash()
    load_run_base(out, str(path), cfg.model)  # the same base passes
    meta = json.loads((out / "config.json").read_text())
    del meta[BASE_HASH]  # as a run written before bases were recorded
    (out / "config.json").write_text(json.dumps(meta))
    experiment.run(cfg, out, resume=True, progress=False)  # passes, and records the base
    assert json.loads((out / "config.json").read_text())[BASE_HASH] == recorded

    other = tmp_path / "other"
    params = load_base(path, cfg.model)
    save_base(other, params, cfg.model, {"config_hash": "0" * 16})
    moved = configs.from_dict(tiny_raw(run={"init": str(other)}))
    (out / "config.json").write_text(
        (out / "config.json").read_text().replace(str(path), str(other))
    )  # the run now names the other base's directory, as a base rebuilt in place would
    with pytest.raises(ValueError, match=r"fine-tuned from the base of experiment .* now holds"):
        experiment.run(moved, out, resume=True, progress=False)
    with pytest.raises(ValueError, match="config.json was fine-tuned from the base of"):
        load_run_base(out, str(other), moved.model)
