"""The small sections of a run config: ``[grid]`` (:class:`GridConfig`), ``[run]``
(:class:`RunSettings`), ``[difficulty]`` (:class:`DifficultySettings`), ``[eval]``
(:class:`EvalConfig`) and ``[subspace]`` (:class:`SubspaceConfig`), each a frozen dataclass whose
fields are checked against their specs (``difftrade.config.fields``) when built. ``[model]`` and
``[train]`` have modules of their own (``model_config``, ``train_config``); the rules between
sections are in :func:`difftrade.config.run_config.from_dict`."""

from __future__ import annotations

import dataclasses

from difftrade.config.fields import Field, check_fields, refuse

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

    def __post_init__(self) -> None:
        check_fields(self, "grid", GRID_FIELDS)
        if self.train_distribution != "mixture" and self.mixture_main != GridConfig.mixture_main:
            raise refuse(
                "grid",
                "mixture_main",
                self.mixture_main,
                "its default when grid.train_distribution is not 'mixture'",
                f" has no effect with train_distribution = {self.train_distribution!r}",
            )


@dataclasses.dataclass(frozen=True)
class RunSettings:
    seed: int = 0
    chunk_size: int = 0  # 0 = automatic from device memory
    init: str = "scratch"  # "scratch" or a checkpoint path (fine-tuning from a base)
    target: tuple[float, ...] = ()  # target weights over levels; () = uniform

    def __post_init__(self) -> None:
        check_fields(self, "run", RUN_FIELDS)


@dataclasses.dataclass(frozen=True)
class DifficultySettings:
    """What a level is. ``nominal``: the task generator's level. ``model``: equal-count bins of
    a reference model's loss over scored pools (``difftrade.train.scored_difficulty.model_based_task``), so
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

    def __post_init__(self) -> None:
        check_fields(self, "difficulty", DIFFICULTY_FIELDS)


# One spec per field of each section (difftrade.config.fields); [model], [train] and [eval] keep theirs
# beside their dataclasses. Rules that involve the task or other sections are in from_dict.
GRID_FIELDS: dict[str, Field] = {
    "difficulties": Field(int, 1, many=True, note="levels of the task"),
    "budgets": Field(int, 1, many=True),
    "seeds": Field(int, 0, many=True),
    "train_distribution": Field(str, choices=TRAIN_DISTRIBUTIONS),
    "mixture_main": Field(float, 0, 1, low_open=True),
    "learning_rate": Field(float, 0, low_open=True),
}
RUN_FIELDS: dict[str, Field] = {
    "seed": Field(int, 0),
    "chunk_size": Field(int, 0, note="0 = automatic"),
    "init": Field(
        str, note="'scratch' or a base checkpoint directory written by `difftrade pretrain`"
    ),
    "target": Field(
        float,
        0,
        many=True,
        empty=True,
        repeats=True,
        note="one weight per level, summing to 1; [] = uniform",
    ),
}
DIFFICULTY_FIELDS: dict[str, Field] = {
    "kind": Field(str, choices=DIFFICULTY_KINDS),
    "reference": Field(str, empty=True, note="a base checkpoint directory; kind = 'model' only"),
    "num_levels": Field(int, 0, note="0 = the task's levels"),
    "per_level": Field(int, 0, note="0 = max(grid.budgets, eval.n_test)"),
    "pool_seed": Field(int, 0),
}


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How many examples evaluate each quantity (static)."""

    n_test: int = 512  # held-out examples per level
    n_train_eval: int = 1024  # cap on own-training examples evaluated
    batch_size: int = 512

    def __post_init__(self) -> None:
        check_fields(self, "eval", EVAL_FIELDS)


# [eval]: one spec per field (difftrade.config.fields)
MAX_EVAL_EXAMPLES = 2**20  # per level (n_test) or per member (n_train_eval, batch_size)
EVAL_FIELDS: dict[str, Field] = {
    name: Field(int, 1, MAX_EVAL_EXAMPLES) for name in ("n_test", "n_train_eval", "batch_size")
}


@dataclasses.dataclass(frozen=True)
class SubspaceConfig:
    """``[subspace]``: ``dim`` = D coordinates per member (0 = off: every weight is trained),
    ``terms`` = r Kronecker products summed in the projection."""

    dim: int = 0
    terms: int = 1

    def __post_init__(self) -> None:
        check_fields(self, "subspace", SUBSPACE_FIELDS)

    @property
    def enabled(self) -> bool:
        return self.dim > 0

    def check_fits(self, num_params: int) -> None:
        """Refuse a subspace at least as large as the weights it parameterises (it would not compress)."""
        if self.dim >= num_params:
            raise refuse(
                "subspace",
                "dim",
                self.dim,
                f"0 (off) or an integer below the model's {num_params} weights",
                f" is not below the model's {num_params} weights",
            )


SUBSPACE_FIELDS: dict[str, Field] = {
    "dim": Field(int, 0, note="0 = off (every weight is trained)"),
    "terms": Field(int, 1, 16, note="Kronecker products summed in the projection"),
}
