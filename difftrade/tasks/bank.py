"""A task whose levels are finite, pre-scored banks of examples: :class:`Bank` (one split's rows,
level-major) and :class:`BankTask` (level ``k`` looks up row ``index mod per_level`` of its bank).

:func:`difftrade.train.scored_difficulty.model_based_task` builds one by scoring pools of a generator task with
a reference model and binning the scores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from difftrade.tasks import data
from difftrade.tasks.base import Task

_SPLIT_NAME: dict[int, str] = {v: k for k, v in data.SPLITS.items()}


@dataclasses.dataclass(frozen=True, eq=False)
class Bank:
    """One split's examples, level-major (``K`` levels × ``P`` rows per level).

    tokens int32 ``[K, P, L]``, mask bool ``[K, P, L]``, score float32 ``[K, P]`` (reference
    loss), nominal int32 ``[K, P]`` (the source task's level of each example), index int64
    ``[K, P]`` (the example's index in its split's pool stream).
    """

    tokens: np.ndarray
    mask: np.ndarray
    score: np.ndarray
    nominal: np.ndarray
    index: np.ndarray

    def __post_init__(self) -> None:
        k, p, length = self.tokens.shape
        if self.mask.shape != (k, p, length):
            raise ValueError(f"bank mask has shape {self.mask.shape}; expected {(k, p, length)}")
        for field in ("score", "nominal", "index"):
            if getattr(self, field).shape != (k, p):
                raise ValueError(
                    f"bank {field} has shape {getattr(self, field).shape}; expected {(k, p)}"
                )
        # Compact copies for the traced lookup (the bank becomes a constant of the compiled
        # program; the vocabulary fits in int8, a quarter of the bytes).
        object.__setattr__(self, "_tokens8", np.ascontiguousarray(self.tokens, dtype=np.int8))
        object.__setattr__(self, "_mask", np.ascontiguousarray(self.mask, dtype=bool))

    @property
    def num_levels(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def per_level(self) -> int:
        return int(self.tokens.shape[1])

    def rows(self, level_index: jax.Array, row: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Tokens int32 ``[L]`` and mask bool ``[L]`` of one row (traced indices allowed)."""
        tokens = jnp.asarray(self._tokens8)[level_index, row].astype(jnp.int32)  # type: ignore[attr-defined]
        return tokens, jnp.asarray(self._mask)[level_index, row]  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True, eq=False)
class BankTask(Task):
    """A task whose level ``k`` (1..K) is a finite, pre-scored bank of ``source`` examples.

    Holds arrays, so equality and hashing are by identity (compile caches key on the task).
    ``banks`` maps split names (``data.SPLITS`` keys; at least ``train``) to ``Bank``s with the
    same ``[K, P, source.seq_len]`` shape; ``edges`` float64 ``[K-1]`` are the inner bin edges on
    the reference loss. Build one with ``model_based_task``.
    """

    name: ClassVar[str] = "bank"
    difficulty_meaning: ClassVar[str] = (
        "quantile bin of a reference model's answer loss (1 = lowest loss)"
    )
    source: Task = dataclasses.field(kw_only=True)
    banks: Mapping[str, Bank] = dataclasses.field(kw_only=True)
    edges: np.ndarray = dataclasses.field(kw_only=True)

    __eq__ = object.__eq__  # the inherited dataclass __eq__/__hash__ compare d_min/d_max only
    __hash__ = object.__hash__

    def __post_init__(self) -> None:
        super().__post_init__()
        if "train" not in self.banks:
            raise ValueError(
                f"bank task needs a 'train' bank; has: {', '.join(self.banks) or 'none'}"
            )
        for split, bank in self.banks.items():
            data.split_id(split)  # a known split name
            want = (self.num_levels, self.per_level, self.source.seq_len)
            if bank.tokens.shape != want:
                raise ValueError(
                    f"bank {split!r} has shape {bank.tokens.shape}; expected {want} (levels, per_level, seq_len)"
                )
        if np.shape(self.edges) != (self.num_levels - 1,):
            raise ValueError(
                f"edges has shape {np.shape(self.edges)}; expected ({self.num_levels - 1},)"
            )

    @property
    def level_structure(self) -> str:
        return "exact"  # equal-count bins of one scored pool: each row lies in one bin

    @property
    def per_level(self) -> int:
        return self.banks["train"].per_level

    @property
    def seq_len(self) -> int:
        return self.source.seq_len

    def bank(self, split: str | int) -> Bank:
        """The bank of a split (name or ``data.SPLITS`` id); ValueError if there is none."""
        name = split if isinstance(split, str) else _SPLIT_NAME.get(int(split), str(split))
        if name not in self.banks:
            raise ValueError(
                f"split={name!r} has no bank in this model-based task; allowed: {', '.join(self.banks)}"
            )
        return self.banks[name]

    def sample_at(
        self, root: jax.Array, split: int, level: int | jax.Array, index: int | jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Row ``index mod per_level`` of ``split``'s bank at ``level``; ``root`` is unused.

        Returns tokens int32 ``[seq_len]`` and mask bool ``[seq_len]``; ``level`` and ``index``
        may be traced (an out-of-range traced level is clamped, as for every task).
        """
        bank = self.bank(split)
        k = self.check_difficulty(level) - self.d_min
        return bank.rows(k, jnp.asarray(index, jnp.int32) % bank.per_level)

    def _sample(self, key: jax.Array, d: jax.Array) -> tuple[jax.Array, jax.Array]:
        """A uniformly random row of the train bank at level ``d``."""
        row = jax.random.randint(key, (), 0, self.per_level)
        return self.banks["train"].rows(d - self.d_min, row)

    def solve(self, prompt: str) -> str:
        return self.source.solve(prompt)

    def sample_space_size(self, d: int) -> int:
        """Finite: each level holds ``per_level`` distinct problems."""
        return self.per_level

    def describe(self) -> str:
        return (
            f"{self.name} of {self.source.name} [d={self.d_min}..{self.d_max}, {self.per_level} per level, "
            f"seq_len={self.seq_len}]: {self.difficulty_meaning}"
        )
