"""Every config field is checked before anything is written or compiled.

A bad value ends `difftrade run` with exit code 2 and one line on stderr naming the field, the
value and what is allowed, and leaves --out untouched; a refusal that comes after the run
directory was created removes what the run created; the corrected config then runs there.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import jax
import pytest
from conftest import tiny_raw, toml_text

from difftrade.cli.main import main
from difftrade.config import run_config as config
from difftrade.config import sections as config_sections
from difftrade.config.model_config import MODEL_FIELDS, ModelConfig
from difftrade.config.sections import EVAL_FIELDS, EvalConfig
from difftrade.config.train_config import TRAIN_FIELDS, TrainConfig
from difftrade.runner import experiment, rundir
from difftrade.tasks import configs
from difftrade.train.run_task import run_task

ON_GPU = jax.default_backend() == "gpu"
MODEL_KIND = {
    "kind": "model",
    "reference": "no/such/base",
}  # model-based levels; the reference is read later

# (overrides of tiny_raw, the field the error must name, its value as the config gives it)
BAD: list[Any] = [
    # [train]
    ({"train": {"b2": -1}}, "train.b2", -1),
    ({"train": {"b2": 1}}, "train.b2", 1),
    ({"train": {"b2": math.nan}}, "train.b2", math.nan),
    ({"train": {"b1": 5}}, "train.b1", 5),
    ({"train": {"b1": -0.1}}, "train.b1", -0.1),
    ({"train": {"b1": True}}, "train.b1", True),
    ({"train": {"final_lr_fraction": -3}}, "train.final_lr_fraction", -3),
    ({"train": {"final_lr_fraction": 1.5}}, "train.final_lr_fraction", 1.5),
    ({"train": {"weight_decay": -0.1}}, "train.weight_decay", -0.1),
    ({"train": {"weight_decay": "0.1"}}, "train.weight_decay", "0.1"),
    ({"train": {"grad_clip": 0}}, "train.grad_clip", 0),
    ({"train": {"grad_clip": -1.0}}, "train.grad_clip", -1.0),
    ({"train": {"steps": 0}}, "train.steps", 0),
    ({"train": {"steps": 1, "warmup_steps": 0, "num_checkpoints": 1}}, "train.steps", 1),
    ({"train": {"steps": 1.5}}, "train.steps", 1.5),
    ({"train": {"steps": 40.0}}, "train.steps", 40.0),
    ({"train": {"steps": "40"}}, "train.steps", "40"),
    ({"train": {"batch_size": 0}}, "train.batch_size", 0),
    ({"train": {"batch_size": [8]}}, "train.batch_size", [8]),
    ({"train": {"batch_size": 10**8}}, "train.batch_size", 10**8),  # does not fit the device
    ({"train": {"warmup_steps": 40}}, "train.warmup_steps", 40),
    ({"train": {"warmup_steps": -1}}, "train.warmup_steps", -1),
    ({"train": {"num_checkpoints": 3}}, "train.num_checkpoints", 3),
    ({"train": {"num_checkpoints": 80}}, "train.num_checkpoints", 80),
    ({"train": {"num_checkpoints": 0}}, "train.num_checkpoints", 0),
    ({"train": {"prefix_steps": 15}}, "train.prefix_steps", 15),
    ({"train": {"prefix_steps": 40}}, "train.prefix_steps", 40),
    ({"train": {"prefix_fraction": 1.0}}, "train.prefix_fraction", 1.0),
    ({"train": {"prefix_fraction": 0}}, "train.prefix_fraction", 0),
    ({"train": {"epochs": -2}}, "train.epochs", -2),
    ({"train": {"epochs": "32"}}, "train.epochs", "32"),
    ({"train": {"epochs": True}}, "train.epochs", True),
    ({"train": {"epochs": 4, "prefix_steps": 10}}, "train.prefix_steps", 10),
    # [grid]
    ({"grid": {"learning_rate": True}}, "grid.learning_rate", True),
    ({"grid": {"learning_rate": 0}}, "grid.learning_rate", 0),
    ({"grid": {"learning_rate": -1e-3}}, "grid.learning_rate", -1e-3),
    ({"grid": {"learning_rate": "fast"}}, "grid.learning_rate", "fast"),
    ({"grid": {"learning_rate": math.inf}}, "grid.learning_rate", math.inf),
    ({"grid": {"learning_rate": [1e-3, 3e-3]}}, "grid.learning_rate", [1e-3, 3e-3]),
    ({"grid": {"budgets": 64}}, "grid.budgets", 64),
    ({"grid": {"budgets": []}}, "grid.budgets", []),
    ({"grid": {"budgets": [0, 32]}}, "grid.budgets", [0, 32]),
    ({"grid": {"budgets": [2**31]}}, "grid.budgets", [2**31]),
    ({"grid": {"budgets": [32, 32]}}, "grid.budgets", [32, 32]),
    ({"grid": {"budgets": [1.5]}}, "grid.budgets", [1.5]),
    ({"grid": {"budgets": ["64"]}}, "grid.budgets", ["64"]),
    ({"grid": {"seeds": [-1]}}, "grid.seeds", [-1]),
    ({"grid": {"seeds": [2**31]}}, "grid.seeds", [2**31]),
    ({"grid": {"seeds": []}}, "grid.seeds", []),
    ({"grid": {"seeds": 0}}, "grid.seeds", 0),
    ({"grid": {"seeds": [0, 0]}}, "grid.seeds", [0, 0]),
    ({"grid": {"difficulties": [0, 1]}}, "grid.difficulties", [0, 1]),
    ({"grid": {"difficulties": [3]}}, "grid.difficulties", [3]),
    ({"grid": {"difficulties": [1, 1]}}, "grid.difficulties", [1, 1]),
    ({"grid": {"difficulties": 1}}, "grid.difficulties", 1),
    ({"grid": {"difficulties": [1.0]}}, "grid.difficulties", [1.0]),
    ({"grid": {"train_distribution": "pointt"}}, "grid.train_distribution", "pointt"),
    ({"grid": {"train_distribution": 1}}, "grid.train_distribution", 1),
    ({"grid": {"mixture_main": 0}}, "grid.mixture_main", 0),
    ({"grid": {"mixture_main": 1.5}}, "grid.mixture_main", 1.5),
    ({"grid": {"mixture_main": 0.5}}, "grid.mixture_main", 0.5),  # ignored under point training
    # [model]
    ({"model": {"d_model": 15}}, "model.d_model", 15),
    ({"model": {"d_model": 0}}, "model.d_model", 0),
    ({"model": {"num_heads": 2.5}}, "model.num_heads", 2.5),
    ({"model": {"num_layers": True}}, "model.num_layers", True),
    ({"model": {"seq_len": 3}}, "model.seq_len", 3),
    ({"model": {"vocab_size": 16}}, "model.vocab_size", 16),
    ({"model": {"pos_encoding": "rope"}}, "model.pos_encoding", "rope"),
    ({"model": {"pos_encoding": "sinusoidal", "d_model": 17, "num_heads": 1}}, "model.d_model", 17),
    ({"model": {"compute_dtype": "int8"}}, "model.compute_dtype", "int8"),
    ({"model": {"attention": "flash"}}, "model.attention", "flash"),
    ({"model": {"mlp": "triton"}}, "model.mlp", "triton"),
    pytest.param(
        {"model": {"attention": "cudnn"}},
        "model.attention",
        "cudnn",
        marks=pytest.mark.skipif(ON_GPU, reason="cudnn runs on a GPU"),
    ),
    pytest.param(
        {"model": {"mlp": "pallas"}},
        "model.mlp",
        "pallas",
        marks=pytest.mark.skipif(ON_GPU, reason="pallas runs on a GPU"),
    ),
    # [eval]
    ({"eval": {"n_test": 0}}, "eval.n_test", 0),
    ({"eval": {"n_test": 2**31}}, "eval.n_test", 2**31),
    ({"eval": {"n_train_eval": -1}}, "eval.n_train_eval", -1),
    ({"eval": {"n_test": 10**8}}, "eval.n_test", 10**8),
    ({"eval": {"n_train_eval": 10**9}}, "eval.n_train_eval", 10**9),
    ({"eval": {"batch_size": 1.5}}, "eval.batch_size", 1.5),
    # [run]
    ({"run": {"seed": 1.5}}, "run.seed", 1.5),
    ({"run": {"seed": -1}}, "run.seed", -1),
    ({"run": {"seed": 2**31}}, "run.seed", 2**31),
    ({"run": {"chunk_size": -1}}, "run.chunk_size", -1),
    ({"run": {"chunk_size": "auto"}}, "run.chunk_size", "auto"),
    ({"run": {"chunk_size": 2**31 - 1}}, "run.chunk_size", 2**31 - 1),  # does not fit the device
    ({"run": {"init": ""}}, "run.init", ""),
    ({"run": {"init": 5}}, "run.init", 5),
    ({"run": {"target": [0.5, 0.4]}}, "run.target", [0.5, 0.4]),
    ({"run": {"target": [1.0]}}, "run.target", [1.0]),
    ({"run": {"target": [1.5, -0.5]}}, "run.target", [1.5, -0.5]),
    ({"run": {"target": [0.5, True]}}, "run.target", [0.5, True]),
    ({"run": {"target": 1.0}}, "run.target", 1.0),
    # [task]
    ({"task": {"name": 3}}, "task.name", 3),
    ({"task": {"d_max": "x"}}, "task.d_max", "x"),
    ({"task": {"d_max": 0}}, "task.d_max", 0),
    ({"task": {"d_min": 0}}, "task.d_min", 0),
    ({"task": {"scratchpad": 1}}, "task.scratchpad", 1),
    ({"task": {"levels_kind": 5}}, "task.levels_kind", 5),
    # [difficulty]
    ({"difficulty": {"kind": "modle"}}, "difficulty.kind", "modle"),
    ({"difficulty": {**MODEL_KIND, "num_levels": -1}}, "difficulty.num_levels", -1),
    ({"difficulty": {**MODEL_KIND, "num_levels": 1}}, "difficulty.num_levels", 1),
    ({"difficulty": {**MODEL_KIND, "per_level": 16}}, "difficulty.per_level", 16),
    ({"difficulty": {**MODEL_KIND, "pool_seed": 1.5}}, "difficulty.pool_seed", 1.5),
    ({"difficulty": {**MODEL_KIND, "pool_seed": 2**31}}, "difficulty.pool_seed", 2**31),
    (
        {"difficulty": {**MODEL_KIND}},
        "difficulty.reference",
        "no/such/base",
    ),  # read before --out is written
]


def _write(path: Path, raw: dict) -> Path:
    """``raw`` as a TOML file (NaN and infinities spelled as TOML spells them)."""
    path.write_text(
        toml_text(raw).replace("-Infinity", "-inf").replace("Infinity", "inf").replace("NaN", "nan")
    )
    return path


def _run(path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """``difftrade run PATH --out OUT``: (exit code, the lines it wrote to stderr)."""
    capsys.readouterr()
    code = main(["run", str(path), "--out", str(out)])
    return code, capsys.readouterr().err.strip().splitlines()


def _case_id(case: Any) -> str:
    return f"{case[1]}={case[2]!r}"


@pytest.mark.parametrize(
    "overrides,field,value",
    BAD,
    ids=[_case_id(c.values if hasattr(c, "values") else c) for c in BAD],
)
def test_bad_config_is_refused_in_one_line_before_anything_is_written(
    overrides, field, value, tmp_path, capsys
):
    path = _write(tmp_path / "bad.toml", tiny_raw(**overrides))
    out = tmp_path / "out"
    code, lines = _run(path, out, capsys)
    assert code == 2, lines
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("difftrade: error: ") and "allowed" in line, line
    assert f"{field}={value!r}" in line, line
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))


@pytest.mark.slow
def test_rejected_config_leaves_no_directory_and_the_corrected_one_runs_there(tmp_path, capsys):
    out = tmp_path / "run"
    code, lines = _run(_write(tmp_path / "bad.toml", tiny_raw(train={"b2": -1})), out, capsys)
    assert code == 2 and "train.b2=-1" in lines[0]
    assert not out.exists()
    code, lines = _run(_write(tmp_path / "good.toml", tiny_raw()), out, capsys)
    assert code == 0, lines
    assert (out / "results.nc").exists() and (out / rundir.META).exists()


class Refused(ValueError):
    pass


@pytest.mark.parametrize("existing", [False, True])
def test_refusal_after_the_directory_was_created_leaves_it_as_it_was(
    existing, tiny_cfg, tmp_path, monkeypatch
):
    """A refusal raised once training starts (the first compile) removes config.json, chunks/ and the
    directories the run created; a directory that was there before stays, empty."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise Refused("model.attention='pallas' needs a GPU; allowed here: 'xla'")

    monkeypatch.setattr(experiment, "train_population", refuse)
    out = tmp_path / "a" / "b"
    if existing:
        out.mkdir(parents=True)
    with pytest.raises(Refused):
        experiment.run(tiny_cfg, out, progress=False)
    if existing:
        assert out.is_dir() and not any(out.iterdir())
    else:
        assert not (tmp_path / "a").exists()


def test_batch_size_too_large_names_train_batch_size(tiny_cfg, monkeypatch):
    from difftrade.train import chunk_sizing

    member = lambda batch: chunk_sizing.bytes_per_member(
        tiny_cfg.model,
        dataclasses.replace(tiny_cfg.train, batch_size=batch),
        run_task(tiny_cfg).seq_len,
    )
    per_example = member(2) - member(1)
    monkeypatch.setattr(
        chunk_sizing, "device_memory_bytes", lambda: member(1) + 99 * per_example
    )  # batches up to 100 fit
    big = dataclasses.replace(tiny_cfg.train, batch_size=4096)
    with pytest.raises(
        ValueError,
        match=r"^train\.batch_size=4096 does not fit: .*; allowed: an integer in \[1, 100\]",
    ):
        chunk_sizing.check_chunk_fits(tiny_cfg.model, big, run_task(tiny_cfg).seq_len, 0)
    chunk_sizing.check_chunk_fits(
        tiny_cfg.model, tiny_cfg.train, run_task(tiny_cfg).seq_len, 0
    )  # batch 8 fits
    with pytest.raises(ValueError, match=r"^run\.chunk_size=64 does not fit"):
        chunk_sizing.check_chunk_fits(
            tiny_cfg.model, tiny_cfg.train, run_task(tiny_cfg).seq_len, 64 * jax.device_count()
        )


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: TrainConfig(b2=-1), "train.b2=-1; allowed: a finite number in [0, 1)"),
        (
            lambda: TrainConfig(steps=40, warmup_steps=40, num_checkpoints=4),
            "train.warmup_steps=40; allowed: an integer in [0, steps=40)",
        ),
        (lambda: config.GridConfig(budgets=64), "grid.budgets=64 is not a list"),
        (lambda: config.GridConfig(budgets=[64, 64]), "grid.budgets=[64, 64] repeats a value"),
        (
            lambda: config.RunSettings(seed=2**31),
            "run.seed=2147483648; allowed: an integer in [0, 2147483647]",
        ),
        (lambda: config.DifficultySettings(pool_seed=True), "difficulty.pool_seed=True"),
        (lambda: EvalConfig(n_test=True), "eval.n_test=True"),
        (lambda: ModelConfig(d_model=1.5), "model.d_model=1.5"),
    ],
)
def test_configs_built_in_code_pass_the_same_checks(build, message):
    with pytest.raises(ValueError) as err:
        build()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_every_field_of_every_section_has_a_spec():
    tables = [
        (config.GridConfig, config_sections.GRID_FIELDS),
        (config.RunSettings, config_sections.RUN_FIELDS),
        (config.DifficultySettings, config_sections.DIFFICULTY_FIELDS),
        (ModelConfig, MODEL_FIELDS),
        (TrainConfig, TRAIN_FIELDS),
        (EvalConfig, EVAL_FIELDS),
    ]
    for cls, table in tables:
        assert list(table) and set(table) == {f.name for f in dataclasses.fields(cls)}, cls.__name__


@pytest.mark.parametrize(
    "overrides",
    [
        {"grid": {"learning_rate": 1}},  # an int where a float belongs
        {"grid": {"mixture_main": 1, "train_distribution": "mixture"}},
        {"grid": {"budgets": [2**31 - 1], "seeds": [2**31 - 1]}},
        {
            "train": {
                "b1": 0,
                "b2": 0.0,
                "final_lr_fraction": 0,
                "warmup_steps": 0,
                "num_checkpoints": 40,
                "grad_clip": 1,
            }
        },
        {
            "train": {
                "final_lr_fraction": 1,
                "weight_decay": 0,
                "prefix_steps": 30,
                "prefix_fraction": 0.25,
            }
        },
        {"run": {"target": [0.25, 0.75], "chunk_size": 0, "seed": 2**31 - 1}},
        {
            "train": {"epochs": 0.25, "num_checkpoints": 7, "warmup_steps": 100}
        },  # steps (40) unused with epochs
        {"task": {"d_min": 2, "d_max": 2}, "grid": {"difficulties": [2]}, "run": {"target": [1]}},
    ],
)
def test_values_at_the_edges_are_accepted(overrides):
    cfg = configs.from_dict(tiny_raw(**overrides))
    assert cfg.population().size > 0
