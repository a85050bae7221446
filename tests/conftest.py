"""Shared fixtures: a tiny grid config that trains in seconds on a CPU."""

from __future__ import annotations

import copy
import gc
import json

import jax
import pytest

from difftrade.config import run_config as config
from difftrade.tasks import configs

TINY = {
    "task": {"name": "addition", "d_min": 1, "d_max": 2},
    "grid": {"difficulties": [1, 2], "budgets": [1, 32], "seeds": [0, 1], "learning_rate": 3e-3},
    "model": {"d_model": 16, "num_layers": 1, "num_heads": 2},
    "train": {"steps": 40, "batch_size": 8, "warmup_steps": 4, "num_checkpoints": 4},
    "eval": {"n_test": 32, "n_train_eval": 16, "batch_size": 16},
    "run": {"seed": 0},
}


def tiny_raw(**overrides: dict) -> dict:
    raw = copy.deepcopy(TINY)
    for section, values in overrides.items():
        raw.setdefault(section, {}).update(values)
    return raw


def toml_text(raw: dict) -> str:
    """A config dict (sections of scalars and lists) as TOML text, for CLI tests."""
    lines = []
    for section, values in raw.items():
        lines += [f"[{section}]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def tiny_cfg() -> config.RunConfig:
    return configs.from_dict(tiny_raw())


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop jax's compiled programs after each test module. Every CPU executable keeps memory
    mappings (LLVM code), and one pytest process compiles hundreds of programs: without this the
    process passed 20,000 mappings after two modules and, late in the suite, the kernel's
    vm.max_map_count (65,530 here) made a compile abort the whole run."""
    yield
    jax.clear_caches()
    gc.collect()
