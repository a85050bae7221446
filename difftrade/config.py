"""Run configuration: a TOML file -> validated, hashable ``RunConfig``.

Sections: ``[task]`` (name + task options), ``[grid]`` (difficulties, budgets, seeds, training
distribution, learning rate), ``[model]``, ``[train]``, ``[eval]`` (sizes, target distribution),
``[run]`` (root seed, chunk size, init). Unknown keys raise with a did-you-mean; every value is
checked before anything is compiled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from difftrade import data
from difftrade.evaluate import EvalConfig
from difftrade.model import ModelConfig
from difftrade.tasks import Task, make_task
from difftrade.tasks.registry import did_you_mean
from difftrade.train import Population, TrainConfig

TRAIN_DISTRIBUTIONS = ("point", "mixture", "up_to")


@dataclasses.dataclass(frozen=True)
class GridConfig:
    """The member grid: difficulty × budget × seed (difficulty = the level a row trains on)."""

    difficulties: tuple[int, ...] = (1, 2, 3, 4)
    budgets: tuple[int, ...] = (64, 256, 1024)
    seeds: tuple[int, ...] = (0, 1)
    train_distribution: str = "point"
    mixture_main: float = 0.8
    learning_rate: float = 1e-3


@dataclasses.dataclass(frozen=True)
class RunSettings:
    seed: int = 0
    chunk_size: int = 0  # 0 = automatic from device memory
    init: str = "scratch"  # "scratch" or a checkpoint path (fine-tuning from a base)
    target: tuple[float, ...] = ()  # target weights over levels; () = uniform


@dataclasses.dataclass(frozen=True)
class RunConfig:
    task_name: str
    task_options: tuple[tuple[str, Any], ...]
    grid: GridConfig
    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig
    run: RunSettings

    # ---- derived ------------------------------------------------------------------------
    @property
    def task(self) -> Task:
        return make_task(self.task_name, **dict(self.task_options))

    def target_weights(self) -> np.ndarray:
        task = self.task
        if not self.run.target:
            return data.uniform(task)
        return data.validate_weights(self.run.target, task.num_levels, "run.target")

    def train_weights(self) -> np.ndarray:
        """float64 ``[D, num_levels]``: the training distribution of each grid row."""
        task = self.task
        return np.stack([data.distribution(task, self.grid.train_distribution, d, self.grid.mixture_main) for d in self.grid.difficulties])

    def population(self) -> Population:
        """Members in grid order (difficulty, budget, seed), flattened."""
        g = self.grid
        w = self.train_weights()
        di, bi, si = np.meshgrid(np.arange(len(g.difficulties)), np.arange(len(g.budgets)), np.arange(len(g.seeds)), indexing="ij")
        di, bi, si = di.ravel(), bi.ravel(), si.ravel()
        return Population(
            weights=w[di].astype(np.float32),
            budget=np.asarray(g.budgets, np.int32)[bi],
            seed=np.asarray(g.seeds, np.int32)[si],
            learning_rate=np.full(di.size, g.learning_rate, np.float32),
        )

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        return len(self.grid.difficulties), len(self.grid.budgets), len(self.grid.seeds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": {"name": self.task_name, **dict(self.task_options)},
            "grid": _plain(dataclasses.asdict(self.grid)),
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
            "eval": dataclasses.asdict(self.eval),
            "run": _plain(dataclasses.asdict(self.run)),
        }

    def hash(self) -> str:
        """Stable hash of everything that changes results (chunk size excluded)."""
        d = self.to_dict()
        d["run"] = {k: v for k, v in d["run"].items() if k != "chunk_size"}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _section(cls: type, raw: dict[str, Any], section: str, tuples: tuple[str, ...] = ()) -> Any:
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ValueError(
                f"[{section}] key {key!r} is unknown{did_you_mean(key, sorted(fields))}; allowed: {', '.join(sorted(fields))}"
            )
    values = {k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in raw.items()}
    return cls(**values)


def from_dict(raw: dict[str, Any]) -> RunConfig:
    """Validate a parsed TOML document; raises ``ValueError`` naming the field and allowed values."""
    sections = ("task", "grid", "model", "train", "eval", "run")
    for key in raw:
        if key not in sections:
            raise ValueError(f"section [{key}] is unknown{did_you_mean(key, sections)}; allowed: {', '.join(sections)}")
    task_raw = dict(raw.get("task", {}))
    if "name" not in task_raw:
        raise ValueError("[task] name is missing; allowed: a registered task name (see `difftrade tasks`)")
    name = task_raw.pop("name")
    task = make_task(name, **task_raw)  # validates the name and options

    grid = _section(GridConfig, raw.get("grid", {}), "grid", ("difficulties", "budgets", "seeds"))
    for d in grid.difficulties:
        task.check_difficulty(d, "grid.difficulties")
    for n in grid.budgets:
        data.check_budget(n, "grid.budgets")
    if len(set(grid.difficulties)) != len(grid.difficulties) or len(set(grid.budgets)) != len(grid.budgets):
        raise ValueError("grid.difficulties and grid.budgets must not repeat values")
    if not grid.seeds or len(set(grid.seeds)) != len(grid.seeds) or any(not isinstance(s, int) or s < 0 for s in grid.seeds):
        raise ValueError(f"grid.seeds={list(grid.seeds)}; allowed: distinct integers >= 0 (at least one)")
    if grid.train_distribution not in TRAIN_DISTRIBUTIONS:
        raise ValueError(
            f"grid.train_distribution={grid.train_distribution!r}{did_you_mean(grid.train_distribution, TRAIN_DISTRIBUTIONS)}; "
            f"allowed: {', '.join(TRAIN_DISTRIBUTIONS)}"
        )
    if not (isinstance(grid.learning_rate, (int, float)) and grid.learning_rate > 0):
        raise ValueError(f"grid.learning_rate={grid.learning_rate!r}; allowed: a number > 0")

    model_raw = dict(raw.get("model", {}))
    model_raw.setdefault("seq_len", task.seq_len - 1)
    model = _section(ModelConfig, model_raw, "model")
    train = _section(TrainConfig, raw.get("train", {}), "train")
    ev = _section(EvalConfig, raw.get("eval", {}), "eval")
    run = _section(RunSettings, raw.get("run", {}), "run", ("target",))
    if not isinstance(run.chunk_size, int) or run.chunk_size < 0:
        raise ValueError(f"run.chunk_size={run.chunk_size!r}; allowed: 0 (automatic) or an integer >= 1")
    cfg = RunConfig(name, tuple(sorted(task_raw.items())), grid, model, train, ev, run)
    cfg.target_weights()  # validates run.target
    return cfg


def load(path: str | Path) -> RunConfig:
    """Parse and validate a TOML run config."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"config file {str(path)!r} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {err}") from err
    return from_dict(raw)
