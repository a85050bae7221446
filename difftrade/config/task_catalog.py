"""What a run config needs to know of its task, and where it learns it.

A config names its task (``[task] name`` and options); the families live in
:mod:`difftrade.tasks`, above this stage. Validation asks a :class:`TaskCatalog` for the facts it
checks against (the option defaults, the level range, the sequence length, the vocabulary), so
``difftrade.config`` never imports the task families (nor jax). The catalog of the registered
families is :data:`difftrade.tasks.configs.REGISTERED`, and ``difftrade.tasks.configs`` reads
configs with it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from difftrade.config.level_weights import LevelRange


@dataclasses.dataclass(frozen=True)
class TaskFacts(LevelRange):
    """One task as built from its options: its levels ``d_min..d_max`` and the facts the rules
    between sections check.

    ``options``: every option, defaults resolved (the config's hash covers them);
    ``seq_len``: tokens per example (the model reads ``seq_len - 1``); ``vocab_size``: the
    tokens the task writes."""

    options: dict[str, Any]
    seq_len: int
    vocab_size: int


class TaskCatalog(Protocol):
    """The task families a config may name."""

    def names(self) -> tuple[str, ...]:
        """Every family's name, sorted."""
        ...

    def defaults(self, name: str) -> dict[str, Any]:
        """The family's options with their defaults; ``ValueError`` naming ``name`` if unknown."""
        ...

    def describe(self, name: str, options: dict[str, Any]) -> TaskFacts:
        """The task built from ``options``; ``ValueError`` for an option it refuses."""
        ...
