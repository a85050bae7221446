"""Run configuration: a TOML file -> validated, hashable ``RunConfig``.

Sections: ``[task]`` (name + task options), ``[grid]`` (difficulties, budgets, seeds, training
distribution, learning rate), ``[model]``, ``[train]``, ``[eval]`` (sizes, target distribution),
``[run]`` (root seed, chunk size, init), ``[difficulty]`` (optional: nominal levels, or levels
binned from a reference model's loss, see ``difftrade.train.scored_difficulty``), ``[subspace]`` (optional:
train each member's coordinates in a random subspace, see ``difftrade.train.subspace``). Unknown keys raise with a
did-you-mean; every field is checked against its spec (``difftrade.config.fields``: kind, range, list or
single value) before anything is written or compiled. The task's own rules are checked through a
:class:`~difftrade.config.task_catalog.TaskCatalog`: :mod:`difftrade.tasks.configs` reads configs
against the registered task families, and builds a config's task.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from difftrade.config import level_weights
from difftrade.config.fields import Field, check, did_you_mean, refuse, show
from difftrade.config.files import config_path, read_toml
from difftrade.config.model_config import ModelConfig
from difftrade.config.sections import (
    DifficultySettings,
    EvalConfig,
    GridConfig,
    RunSettings,
    SubspaceConfig,
)
from difftrade.config.task_catalog import TaskCatalog, TaskFacts
from difftrade.config.train_config import Population, TrainConfig


@dataclasses.dataclass(frozen=True)
class RunConfig:
    task_name: str
    task_options: tuple[tuple[str, Any], ...]
    grid: GridConfig
    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig
    run: RunSettings
    difficulty: DifficultySettings = DifficultySettings()  # noqa: RUF009 - a frozen dataclass, shared safely
    subspace: SubspaceConfig = SubspaceConfig()  # noqa: RUF009 - a frozen dataclass, shared safely

    # ---- derived ------------------------------------------------------------------------
    @property
    def levels(self) -> level_weights.LevelRange:
        """The levels the grid, the weights and the evaluation index: the task's ``d_min..d_max``,
        or ``1..difficulty.num_levels`` for model-based levels (no task is built)."""
        if self.difficulty.kind == "model":
            return level_weights.LevelRange(
                f"{self.task_name} (model-based levels)", 1, self.difficulty.num_levels
            )
        options = dict(self.task_options)
        return level_weights.LevelRange(self.task_name, options["d_min"], options["d_max"])

    @property
    def num_levels(self) -> int:
        return self.levels.num_levels

    def target_weights(self) -> np.ndarray:
        """float64 ``[num_levels]``: ``run.target``, or uniform over the levels when empty."""
        if not self.run.target:
            return level_weights.uniform(self.levels)
        return level_weights.validate_weights(self.run.target, self.num_levels, "run.target")

    def train_weights(self) -> np.ndarray:
        """float64 ``[D, num_levels]``: the training distribution of each grid row."""
        levels = self.levels
        return np.stack(
            [
                level_weights.distribution(
                    levels, self.grid.train_distribution, d, self.grid.mixture_main
                )
                for d in self.grid.difficulties
            ]
        )

    def population(self) -> Population:
        """Members in grid order (difficulty, budget, seed), flattened."""
        g = self.grid
        w = self.train_weights()
        di, bi, si = np.meshgrid(
            np.arange(len(g.difficulties)),
            np.arange(len(g.budgets)),
            np.arange(len(g.seeds)),
            indexing="ij",
        )
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
        """The canonical form: every field with its value (defaults resolved), plain JSON types.
        A section that is off (nominal difficulty, no subspace) is absent, and so are the prefix
        phase's fields and ``epochs`` when off: the form names only what a run uses."""
        return {
            "task": {"name": self.task_name, **dict(self.task_options)},
            "grid": _plain(dataclasses.asdict(self.grid)),
            "model": dataclasses.asdict(self.model),
            "train": _train_dict(self.train),
            "eval": dataclasses.asdict(self.eval),
            "run": _plain(dataclasses.asdict(self.run)),
            **(
                {"difficulty": dataclasses.asdict(self.difficulty)}
                if self.difficulty.kind != "nominal"
                else {}
            ),
            **({"subspace": dataclasses.asdict(self.subspace)} if self.subspace.enabled else {}),
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON (sorted keys): what ``config.json`` and ``results.nc`` store,
        read back by :func:`from_dict` / :func:`from_json`."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def hash(self) -> str:
        """Stable hash of every field that changes results: :meth:`to_dict` without
        ``run.chunk_size`` (how members are batched) and the model's implementation fields
        (``ModelConfig.architecture``: the same function computed another way)."""
        d = self.to_dict()
        d["run"] = {k: v for k, v in d["run"].items() if k != "chunk_size"}
        d["model"] = self.model.architecture()
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


STOPPING_FIELDS = (
    "stopping",
    "patience",
    "val_examples",
)  # in the canonical form only with validation stopping


def _train_dict(train: TrainConfig) -> dict[str, Any]:
    """[train] as a dict; the prefix phase's fields, ``epochs`` and the validation-stopping fields
    only when on (the canonical form names only what a run uses)."""
    d = dataclasses.asdict(train)
    if not train.prefix_steps:
        d = {k: v for k, v in d.items() if not k.startswith("prefix_")}
    if not train.epochs:
        del d["epochs"]
    if train.stopping == "fixed":
        d = {k: v for k, v in d.items() if k not in STOPPING_FIELDS}
    return d


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _section(cls: type, raw: dict[str, Any], section: str) -> Any:
    """``cls`` built from one TOML table; unknown keys and every field's value are checked."""
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ValueError(
                f"[{section}] key {key!r} is unknown{did_you_mean(key, sorted(fields))}; allowed: {', '.join(sorted(fields))}"
            )
    return cls(**raw)


def from_dict(raw: dict[str, Any], catalog: TaskCatalog) -> RunConfig:
    """Validate a parsed TOML document; raises ``ValueError`` naming the field and allowed values.

    Checks every field of every section (``difftrade.config.fields``) and the rules between them,
    the task's among them (``catalog`` names the families and builds the task), so a config that
    passes is one the run can train; what needs the device (memory, kernels) or the reference
    checkpoint is checked by ``experiment.run`` before it writes anything.
    """
    sections = ("task", "grid", "model", "train", "eval", "run", "difficulty", "subspace")
    for key in raw:
        if key not in sections:
            raise ValueError(
                f"section [{key}] is unknown{did_you_mean(key, sections)}; allowed: {', '.join(sections)}"
            )
    task_raw = dict(_table(raw, "task"))
    if "name" not in task_raw:
        raise ValueError(
            "[task] name is missing; allowed: a registered task name (see `difftrade tasks`)"
        )
    name = task_raw.pop("name")
    task = _task(name, task_raw, catalog)

    grid = _section(GridConfig, _table(raw, "grid"), "grid")
    ev = _section(EvalConfig, _table(raw, "eval"), "eval")
    difficulty = _difficulty(_table(raw, "difficulty"), task, grid, ev)
    _check_difficulties(grid.difficulties, task, difficulty)
    model_raw = dict(_table(raw, "model"))
    model_raw.setdefault("seq_len", task.seq_len - 1)
    model = _section(ModelConfig, model_raw, "model")
    _check_model_fits_task(model, task)
    train = _section(TrainConfig, _table(raw, "train"), "train")
    run = _section(RunSettings, _table(raw, "run"), "run")
    subspace = _section(SubspaceConfig, _table(raw, "subspace"), "subspace")
    if subspace.enabled:
        subspace.check_fits(model.num_params())
    options = task.options  # every option, defaults resolved: the hash covers them
    cfg = RunConfig(
        name, tuple(sorted(options.items())), grid, model, train, ev, run, difficulty, subspace
    )
    _check_target(run.target, cfg.num_levels)  # without building a model-based task
    return cfg


def _table(raw: dict[str, Any], section: str) -> dict[str, Any]:
    """The ``[section]`` table of a TOML document ({} when absent)."""
    value = raw.get(section, {})
    if not isinstance(value, dict):
        raise ValueError(  # noqa: TRY004 - the CLI reports ValueError
            f"{section}={show(value)} is not a table; allowed: a [{section}] section of keys"
        )
    return value


def _task(name: Any, options: dict[str, Any], catalog: TaskCatalog) -> TaskFacts:
    """The ``[task]`` task: its name, each option's kind (that of its default) and range, then the task's own checks."""
    if not isinstance(name, str):
        raise refuse("task", "name", name, f"a registered task name: {', '.join(catalog.names())}")
    defaults = catalog.defaults(name)  # validates the name
    values = {**defaults, **options}
    for key, default in defaults.items():  # declaration order: d_min before d_max
        if key in options and type(default) in (int, float, str, bool):
            check("task", key, options[key], TASK_RANGES.get(key, Field(type(default))), values)
    return catalog.describe(name, options)  # unknown options, then the task's own checks


# Ranges of the options every task has; the others take the kind of their default.
TASK_RANGES: dict[str, Field] = {"d_min": Field(int, 1), "d_max": Field(int, "d_min")}


def _check_difficulties(
    difficulties: tuple[int, ...], task: TaskFacts, difficulty: DifficultySettings
) -> None:
    """Every grid difficulty is a level: the task's, or a model-based one (1..num_levels)."""
    lo, hi, what = task.d_min, task.d_max, f"levels of task {task.name!r}"
    if difficulty.kind == "model":  # model-based levels 1..num_levels (no bank built here)
        lo, hi, what = 1, difficulty.num_levels, "model-based levels"
    if any(not lo <= d <= hi for d in difficulties):
        raise refuse(
            "grid",
            "difficulties",
            difficulties,
            f"a non-empty list of distinct integers in {lo}..{hi}",
            f" is out of range for {what}",
        )


def _check_model_fits_task(model: ModelConfig, task: TaskFacts) -> None:
    """The model reads the task's inputs (``seq_len``) and tokens (``vocab_size``)."""
    if model.seq_len < task.seq_len - 1:
        raise refuse(
            "model",
            "seq_len",
            model.seq_len,
            f"an integer >= {task.seq_len - 1} (the default)",
            f" is shorter than the task's inputs ({task.seq_len - 1} tokens)",
        )
    if model.vocab_size < task.vocab_size:
        raise refuse(
            "model",
            "vocab_size",
            model.vocab_size,
            f"an integer >= {task.vocab_size}",
            f" is smaller than the task vocabulary ({task.vocab_size} tokens)",
        )


def _check_target(target: tuple[float, ...], num_levels: int) -> None:
    """``run.target``: empty (uniform) or one weight per level summing to 1."""
    if target and (len(target) != num_levels or abs(sum(target) - 1.0) > 1e-6):
        why = (
            f" has {len(target)} weights for {num_levels} levels"
            if len(target) != num_levels
            else f" sums to {sum(target):.8g}"
        )
        raise refuse(
            "run",
            "target",
            target,
            f"{num_levels} weights >= 0 summing to 1 (one per level), or [] for uniform",
            why,
        )


def _difficulty(
    raw: dict[str, Any], task: TaskFacts, grid: GridConfig, ev: EvalConfig
) -> DifficultySettings:
    """Validate ``[difficulty]``; resolve ``num_levels``/``per_level`` defaults (kind = "model")."""
    settings = _section(DifficultySettings, raw, "difficulty")
    if settings.kind == "nominal":
        extra = sorted(k for k in raw if k != "kind")
        if extra:
            raise ValueError(
                f'[difficulty] {", ".join(extra)} only apply to kind = "model"; allowed with kind = "nominal": kind'
            )
        return settings
    if not settings.reference:
        raise ValueError(
            "difficulty.reference is missing; allowed: a base checkpoint directory written by `difftrade pretrain` "
            "(its [model] must equal this config's)"
        )
    num_levels = settings.num_levels or task.num_levels
    per_level = settings.per_level or max(max(grid.budgets), ev.n_test)
    if num_levels < 2:
        raise refuse(
            "difficulty",
            "num_levels",
            num_levels,
            "0 (the task's levels) or an integer >= 2",
            " (one level has no difficulty)",
        )
    if max(grid.budgets) > per_level:
        raise refuse(
            "difficulty",
            "per_level",
            per_level,
            f"0 or an integer >= max(grid.budgets) = {max(grid.budgets)}",
            f" is below grid.budgets max {max(grid.budgets)}: a bank level holds per_level examples, "
            "so larger budgets would repeat them",
        )
    if ev.n_test > per_level:
        raise refuse(
            "eval",
            "n_test",
            ev.n_test,
            f"n_test <= difficulty.per_level={per_level}",
            f" is above difficulty.per_level={per_level}",
        )
    return dataclasses.replace(settings, num_levels=num_levels, per_level=per_level)


def load(path: str | Path, catalog: TaskCatalog) -> RunConfig:
    """Parse and validate a TOML run config: a path, or the name of a config shipped with the
    package (``"quick"``), as the command line takes it."""
    return from_dict(read_toml(config_path(path)), catalog)


def stored(ds: Any, catalog: TaskCatalog, source: str | None = None) -> RunConfig:
    """The config a results file stores (its ``config`` attribute; ``ds``: an xarray Dataset),
    validated; ``ValueError`` naming ``source`` (default: the file ``ds`` was read from)."""
    source = source or ds.encoding.get("source", "this results dataset")
    if "config" not in ds.attrs:
        raise ValueError(
            f"{source} has no 'config' attribute; allowed: a file written by difftrade run"
        )
    return from_json(ds.attrs["config"], source, catalog)


def from_json(text: str, source: str, catalog: TaskCatalog) -> RunConfig:
    """The config :meth:`RunConfig.to_json` wrote (e.g. a ``results.nc``'s ``config``
    attribute), validated; ``ValueError`` naming ``source`` when it is not such a config."""
    try:
        raw = json.loads(text)
    except (TypeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{source}: its config is not JSON ({type(err).__name__}: {err}); allowed: a file written by "
            "difftrade run"
        ) from None
    return from_stored(raw, source, catalog)


def from_stored(raw: Any, source: str, catalog: TaskCatalog) -> RunConfig:
    """A stored config's canonical form (parsed JSON) validated by :func:`from_dict`;
    ``ValueError`` naming ``source`` when it is not such a config."""
    if not isinstance(raw, dict):
        raise ValueError(  # noqa: TRY004 - the CLI reports ValueError
            f"{source}: its config is {type(raw).__name__}, not a table; allowed: a file written by difftrade run"
        )
    try:
        return from_dict(raw, catalog)
    except (
        ValueError,
        TypeError,
        AttributeError,
    ) as err:  # TypeError/AttributeError: a section that is not a table
        raise ValueError(
            f"{source}: {' '.join(str(err).split())}; allowed: a file written by difftrade run"
        ) from None
