"""Compression certificates end to end on a tiny subspace run: the stored description decodes to the
network that was evaluated, its length is what the bound paid for, and the bound is the Occam bound."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_raw

from difftrade.certify import compress
from difftrade.certify.compress import CODES, CompressSettings, compress_run, networks
from difftrade.config import settings_json
from difftrade.results.weights_format import read_npz
from difftrade.runner import experiment
from difftrade.tasks import configs
from difftrade.theory.coding import code_length
from difftrade.theory.occam import occam_interval
from difftrade.train.evaluate import evaluate_population
from difftrade.train.run_task import run_task

pytestmark = pytest.mark.slow  # every test here trains and compresses a grid (~2.5 min in all)

SETTINGS = CompressSettings(levels=4, qat_steps=4, member_chunk=4)


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    cfg = configs.from_dict(
        tiny_raw(subspace={"dim": 16, "terms": 2}, grid={"learning_rate": 0.05})
    )
    out = tmp_path_factory.mktemp("subspace_run")
    experiment.run(cfg, out, progress=False)
    return cfg, out, compress_run(out, SETTINGS, progress=False)


def test_code_length_is_the_stored_descriptions(compressed):
    _, out, c = compressed
    codes = read_npz(out / CODES)
    assert codes["symbols"].shape == (8, 16) and codes["codebook"].shape == (8, SETTINGS.levels)
    bits = [
        code_length(s.astype(np.int64), SETTINGS.levels).total + 16 * SETTINGS.levels
        for s in codes["symbols"]
    ]
    np.testing.assert_array_equal(c["code_bits"].values.ravel(), bits)
    assert np.all(
        codes["codebook"] == codes["codebook"].astype(np.float16)
    )  # the 16 bits a value pays for


def test_decoded_networks_make_the_counted_training_errors(compressed):
    cfg, out, c = compressed
    codes, pop, key = read_npz(out / CODES), cfg.population(), jax.random.key(cfg.run.seed)
    zhat = np.take_along_axis(codes["codebook"], codes["symbols"].astype(np.int64), axis=1)
    params = networks(cfg, key, None, pop.seed, jnp.asarray(zhat))
    ev_cfg = dataclasses.replace(cfg.eval, n_train_eval=int(pop.budget.max()))
    ev = evaluate_population(
        run_task(cfg), params, pop.weights, pop.budget, pop.seed, cfg.model, ev_cfg, key
    )
    errors = pop.budget - np.rint(ev["train_exact"] * pop.budget)
    np.testing.assert_array_equal(c["train_errors"].values.ravel(), errors)
    np.testing.assert_allclose(c["q_level_exact"].values.reshape(8, -1), ev["level_exact"])


def test_bounds_are_the_occam_interval_at_delta_over_members(compressed):
    cfg, _, c = compressed
    n = np.asarray(cfg.grid.budgets, np.float64)[None, :, None]
    lower, upper = occam_interval(
        c["train_errors"].values / n,
        np.broadcast_to(n, c["code_bits"].shape),
        c["code_bits"].values,
        SETTINGS.delta / 8,
    )
    np.testing.assert_array_equal(c["in_dist_bound"].values, upper)
    np.testing.assert_array_equal(c["in_dist_lower_bound"].values, lower)
    assert np.all(c["target_lower_bound"].values <= c["target_bound"].values)
    assert np.all((c["target_bound"].values >= 0) & (c["target_bound"].values <= 1))


def test_report_lists_every_cell_and_budget(compressed):
    _, out, _ = compressed
    text = (out / "compression.md").read_text()
    cells = [line for line in text.splitlines() if line.startswith("| ") and line.count("|") == 10]
    assert [tuple(line.split(" | ")[:2]) for line in cells[1:]] == [
        ("| 1", "1"),
        ("| 1", "32"),
        ("| 2", "1"),
        ("| 2", "32"),
    ]
    per_budget = [line for line in text.splitlines() if line.count("|") == 7]
    assert [line.split(" | ")[0] for line in per_budget[2:]] == ["| 1", "| 32"]


def test_interrupted_compression_resumes_from_finished_chunks(compressed, tmp_path, monkeypatch):
    _, out, full = compressed
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "results.nc", "chunks"):
        src = out / name
        (run / name).symlink_to(src, target_is_directory=src.is_dir())
    real, calls = compress.compress_chunk, []

    def failing_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return real(*args, **kwargs)

    monkeypatch.setattr(compress, "compress_chunk", failing_second)
    with pytest.raises(RuntimeError):
        compress_run(run, SETTINGS, progress=False)
    assert not (run / "compression.nc").exists() and list(
        (run / "compression.partial").rglob("*.npz")
    )
    calls.clear()
    again = compress_run(run, SETTINGS, progress=False)
    assert len(calls) == 1  # only the unfinished chunk
    np.testing.assert_array_equal(again["in_dist_bound"].values, full["in_dist_bound"].values)
    assert not (run / "compression.partial").exists()


def test_a_run_without_subspace_is_refused(tiny_cfg, tmp_path):
    experiment.run(
        configs.from_dict(tiny_raw(grid={"budgets": [32], "seeds": [0]})), tmp_path, progress=False
    )
    with pytest.raises(ValueError, match=r"without \[subspace\]"):
        compress_run(tmp_path, SETTINGS, progress=False)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("levels", 0),
        ("qat_steps", 1),
        ("qat_steps", -2),
        ("delta", 1.0),
        ("qat_lr_scale", 0.0),
        ("member_chunk", -1),
        ("levels", 2**17),
    ],
)
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"compress.{field}="):
        CompressSettings(**{field: value})


def test_a_certified_run_is_not_certified_again(compressed, monkeypatch):
    _, out, full = compressed
    monkeypatch.setattr(compress, "compress_chunk", lambda *a, **k: pytest.fail("recomputed"))
    again = compress_run(
        out, dataclasses.replace(SETTINGS, member_chunk=0), progress=False
    )  # chunking: same numbers
    np.testing.assert_array_equal(again["target_bound"].values, full["target_bound"].values)


def test_best_of_keeps_each_members_best_description(compressed, tmp_path):
    _, out, first = compressed
    other = tmp_path / "dim8"
    experiment.run(
        configs.from_dict(tiny_raw(subspace={"dim": 8, "terms": 2}, grid={"learning_rate": 0.05})),
        other,
        progress=False,
    )
    second = compress_run(other, SETTINGS, progress=False)
    best = compress.best_of([out, other], tmp_path / "best")
    both = np.stack([first["target_bound"].values, second["target_bound"].values])
    np.testing.assert_array_equal(best["target_bound"].values, both.min(axis=0))
    took_second = best["subspace_dim"].values == 8
    np.testing.assert_array_equal(
        best["code_bits"].values,
        np.where(took_second, second["code_bits"].values, first["code_bits"].values),
    )
    assert (tmp_path / "best" / "compression.md").read_text().count("D chosen") == 1
    wrong = tmp_path / "other_grid"
    experiment.run(
        configs.from_dict(tiny_raw(subspace={"dim": 8}, grid={"budgets": [32], "seeds": [0]})),
        wrong,
        progress=False,
    )
    compress_run(wrong, SETTINGS, progress=False)
    with pytest.raises(ValueError, match="differs from"):
        compress.best_of([out, wrong], tmp_path / "refused")


def test_fine_tuning_in_a_subspace_of_a_base_is_certified_from_the_base(tmp_path):
    """run.init = a base: members train z around the base's weights, and the description decodes
    to base + P ẑ (the base is part of what the decoder knows, fixed before the data)."""
    from difftrade.model.checkpoint import load_base, save_base
    from difftrade.model.transformer import init_params

    plain = configs.from_dict(tiny_raw())
    save_base(
        tmp_path / "base",
        init_params(plain.model, jax.random.key(7)),
        plain.model,
        {"note": "test"},
    )
    cfg = configs.from_dict(
        tiny_raw(
            subspace={"dim": 16},
            grid={"learning_rate": 0.05, "budgets": [32], "seeds": [0]},
            run={"init": str(tmp_path / "base")},
        )
    )
    experiment.run(cfg, tmp_path / "run", progress=False)
    c = compress_run(tmp_path / "run", SETTINGS, progress=False)
    codes, pop, key = (
        read_npz(tmp_path / "run" / CODES),
        cfg.population(),
        jax.random.key(cfg.run.seed),
    )
    zhat = np.take_along_axis(codes["codebook"], codes["symbols"].astype(np.int64), axis=1)
    base = load_base(tmp_path / "base", cfg.model)
    params = networks(cfg, key, base, pop.seed, jnp.asarray(zhat))
    ev_cfg = dataclasses.replace(cfg.eval, n_train_eval=int(pop.budget.max()))
    ev = evaluate_population(
        run_task(cfg), params, pop.weights, pop.budget, pop.seed, cfg.model, ev_cfg, key
    )
    np.testing.assert_array_equal(
        c["train_errors"].values.ravel(), pop.budget - np.rint(ev["train_exact"] * pop.budget)
    )
    scratch = networks(
        cfg, key, None, pop.seed, jnp.asarray(zhat)
    )  # the same code from the initialisation instead
    flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])
    assert not np.allclose(flat(scratch), flat(params))


def test_compress_refuses_a_run_directory_another_process_writes(compressed):
    import os

    from difftrade.runner import rundir

    _, out, _ = compressed
    with (
        rundir.DirLock(out),
        pytest.raises(
            ValueError, match=rf"is being written by another difftrade process \(pid {os.getpid()}"
        ),
    ):
        compress_run(out, SETTINGS, progress=False)


def test_best_of_combines_only_what_each_description_codes(compressed):
    """D is coded in every description; [subspace] terms and the compress settings (δ, δ held
    out, ...) are not, so runs that differ in them are not combined."""
    cfg, _, c = compressed
    dim8 = dataclasses.replace(cfg, subspace=dataclasses.replace(cfg.subspace, dim=8))
    terms1 = dataclasses.replace(cfg, subspace=dataclasses.replace(cfg.subspace, terms=1))
    assert compress.not_coded(dim8) == compress.not_coded(cfg)
    assert compress.not_coded(terms1) != compress.not_coded(cfg)
    other = c.copy()
    other.attrs["settings"] = settings_json.to_json(
        dataclasses.replace(compress.stored_settings(c), member_chunk=1)
    )
    assert compress.numbers_of(other) == compress.numbers_of(c)
    used = compress.stored_settings(c)
    other.attrs["settings"] = settings_json.to_json(
        dataclasses.replace(used, delta_heldout=used.delta_heldout / 2)
    )
    assert compress.numbers_of(other) != compress.numbers_of(c)
