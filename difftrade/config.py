"""Run configuration: a TOML file -> validated, hashable ``RunConfig``.

Sections: ``[task]`` (name + task options), ``[grid]`` (difficulties, budgets, seeds, training
distribution, learning rate), ``[model]``, ``[train]``, ``[eval]`` (sizes, target distribution),
``[run]`` (root seed, chunk size, init), ``[difficulty]`` (optional: nominal levels, or levels
binned from a reference model's loss, see ``difftrade.difficulty``). Unknown keys raise with a
did-you-mean; every value is checked before anything is compiled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

import jax
import numpy as np

from difftrade import data
from difftrade.evaluate import EvalConfig
from difftrade.model import ModelConfig
from difftrade.tasks import Task, make_task
from difftrade.tasks.registry import did_you_mean
from difftrade.train import Population, TrainConfig

TRAIN_DISTRIBUTIONS = ("point", "mixture", "up_to")
DIFFICULTY_KINDS = ("nominal", "model")


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
class DifficultySettings:
    """What a level is. ``nominal``: the task generator's level. ``model``: equal-count bins of
    a reference model's loss over scored pools (``difftrade.difficulty.model_based_task``), so
    grid difficulties index model-based levels ``1..num_levels``.

    ``reference`` is a base checkpoint directory (``difftrade pretrain``; relative paths are
    read from the working directory, as ``run.init``) whose architecture must equal ``[model]``.
    ``num_levels = 0`` means as many as the task's nominal levels; ``per_level = 0`` means
    ``max(grid.budgets, eval.n_test)`` (each bank then repeats nothing).
    """

    kind: str = "nominal"
    reference: str = ""
    num_levels: int = 0
    per_level: int = 0
    pool_seed: int = 0


_MODEL_TASKS: dict[tuple[Any, ...], Task] = {}  # scored banks, built once per process


@dataclasses.dataclass(frozen=True)
class RunConfig:
    task_name: str
    task_options: tuple[tuple[str, Any], ...]
    grid: GridConfig
    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig
    run: RunSettings
    difficulty: DifficultySettings = DifficultySettings()

    # ---- derived ------------------------------------------------------------------------
    @property
    def source_task(self) -> Task:
        """The generator task of ``[task]`` (its levels are the nominal ones)."""
        return make_task(self.task_name, **dict(self.task_options))

    @property
    def task(self) -> Task:
        """The task the grid runs on: the source task, or for ``difficulty.kind = "model"`` its
        ``BankTask`` (scored once per process and cached: scoring is a forward pass over the pools)."""
        source = self.source_task
        if self.difficulty.kind == "nominal":
            return source
        reference = Path(self.difficulty.reference).resolve()
        meta = reference / "base.json"
        stamp = meta.stat().st_mtime_ns if meta.exists() else None  # a rewritten base is rescored
        key = (source, self.difficulty, self.model, str(reference), stamp)
        if key not in _MODEL_TASKS:
            # lazy: only model-based configs need the scoring code
            from difftrade.difficulty import model_based_task

            d = self.difficulty
            _MODEL_TASKS[key] = model_based_task(
                source, self.reference_params(), self.model, num_levels=d.num_levels, per_level=d.per_level,
                key=jax.random.key(d.pool_seed),
            )
        return _MODEL_TASKS[key]

    def reference_params(self) -> Any:
        """The reference model's params (``difficulty.reference``); ValueError naming the field."""
        from difftrade.checkpoint import load_base

        reference = self.difficulty.reference
        if self.difficulty.kind != "model":
            raise ValueError(f"difficulty.kind={self.difficulty.kind!r} has no reference model; allowed: 'model'")
        if not (Path(reference) / "base.json").exists():
            raise ValueError(
                f"difficulty.reference={reference!r} is not a base checkpoint (no base.json); allowed: a directory "
                "written by `difftrade pretrain CONFIG.toml` (CONFIG/base under --out, e.g. runs/pretrain/base)"
            )
        try:
            return load_base(reference, self.model)
        except ValueError as err:  # architecture mismatch
            raise ValueError(f"difficulty.reference={reference!r}: {err}") from None

    @property
    def num_levels(self) -> int:
        """Levels the grid, the weights and the evaluation index (no bank is built)."""
        return self.difficulty.num_levels if self.difficulty.kind == "model" else self.source_task.num_levels

    def target_weights(self) -> np.ndarray:
        if not self.run.target:
            return np.full(self.num_levels, 1.0 / self.num_levels)  # = data.uniform(task)
        return data.validate_weights(self.run.target, self.num_levels, "run.target")

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
            "train": _train_dict(self.train),
            "eval": dataclasses.asdict(self.eval),
            "run": _plain(dataclasses.asdict(self.run)),
            # nominal (the default) adds nothing, so configs without [difficulty] keep their hash
            **({"difficulty": dataclasses.asdict(self.difficulty)} if self.difficulty.kind != "nominal" else {}),
        }

    def hash(self) -> str:
        """Stable hash of everything that changes results (chunk size excluded)."""
        d = self.to_dict()
        d["run"] = {k: v for k, v in d["run"].items() if k != "chunk_size"}
        d["model"] = self.model.architecture()  # attention implementation: same function
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _train_dict(train: TrainConfig) -> dict[str, Any]:
    """[train] as a dict; the prefix phase's fields only when it is on, so older configs keep their hash."""
    d = dataclasses.asdict(train)
    if not train.prefix_steps:
        d = {k: v for k, v in d.items() if not k.startswith("prefix_")}
    return d


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
    sections = ("task", "grid", "model", "train", "eval", "run", "difficulty")
    for key in raw:
        if key not in sections:
            raise ValueError(f"section [{key}] is unknown{did_you_mean(key, sections)}; allowed: {', '.join(sections)}")
    task_raw = dict(raw.get("task", {}))
    if "name" not in task_raw:
        raise ValueError("[task] name is missing; allowed: a registered task name (see `difftrade tasks`)")
    name = task_raw.pop("name")
    task = make_task(name, **task_raw)  # validates the name and options

    grid = _section(GridConfig, raw.get("grid", {}), "grid", ("difficulties", "budgets", "seeds"))
    ev = _section(EvalConfig, raw.get("eval", {}), "eval")
    difficulty = _difficulty(raw.get("difficulty", {}), task, grid, ev)
    for d in grid.difficulties:
        if difficulty.kind == "model":  # model-based levels 1..num_levels (no bank built here)
            if not isinstance(d, int) or not 1 <= d <= difficulty.num_levels:
                raise ValueError(
                    f"grid.difficulties={d!r} is out of range for model-based levels: allowed 1..{difficulty.num_levels}"
                )
        else:
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
    run = _section(RunSettings, raw.get("run", {}), "run", ("target",))
    if not isinstance(run.chunk_size, int) or run.chunk_size < 0:
        raise ValueError(f"run.chunk_size={run.chunk_size!r}; allowed: 0 (automatic) or an integer >= 1")
    cfg = RunConfig(name, tuple(sorted(task_raw.items())), grid, model, train, ev, run, difficulty)
    if run.target:  # validates run.target without building a model-based task
        data.validate_weights(run.target, cfg.num_levels, "run.target")
    return cfg


def _difficulty(raw: dict[str, Any], task: Task, grid: GridConfig, ev: EvalConfig) -> DifficultySettings:
    """Validate ``[difficulty]``; resolve ``num_levels``/``per_level`` defaults (kind = "model")."""
    settings = _section(DifficultySettings, raw, "difficulty")
    kind = settings.kind
    if kind not in DIFFICULTY_KINDS:
        raise ValueError(f"difficulty.kind={kind!r}{did_you_mean(str(kind), DIFFICULTY_KINDS)}; allowed: {', '.join(DIFFICULTY_KINDS)}")
    if kind == "nominal":
        extra = sorted(k for k in raw if k != "kind")
        if extra:
            raise ValueError(f"[difficulty] {', '.join(extra)} only apply to kind = \"model\"; allowed with kind = \"nominal\": kind")
        return settings
    if not isinstance(settings.reference, str) or not settings.reference:
        raise ValueError(
            "difficulty.reference is missing; allowed: a base checkpoint directory written by `difftrade pretrain` "
            "(its [model] must equal this config's)"
        )
    for field in ("num_levels", "per_level", "pool_seed"):
        value = getattr(settings, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"difficulty.{field}={value!r}; allowed: an integer >= 0 (0 = default)")
    num_levels = settings.num_levels or task.num_levels
    per_level = settings.per_level or max(max(grid.budgets, default=1), ev.n_test)
    if num_levels < 2:
        raise ValueError(f"difficulty.num_levels={num_levels}; allowed: >= 2 (one level has no difficulty)")
    if max(grid.budgets, default=0) > per_level:
        raise ValueError(
            f"grid.budgets max {max(grid.budgets)} > difficulty.per_level={per_level}: a bank level holds "
            f"per_level examples, so larger budgets would repeat them; allowed: per_level >= every budget"
        )
    if ev.n_test > per_level:
        raise ValueError(f"eval.n_test={ev.n_test} > difficulty.per_level={per_level}; allowed: n_test <= per_level")
    return dataclasses.replace(settings, num_levels=num_levels, per_level=per_level)


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
