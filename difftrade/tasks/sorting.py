"""Sorting a list of digits.

Difficulty ``d`` = length of the list. A problem is ``d`` values drawn uniformly from
``0..num_values-1`` (one digit each, repeats allowed); the answer is the same values in
non-decreasing order::

    31415=11345<eos>

The prompt length varies with ``d`` (padded to ``d_max``).

Why harder is harder: every answer position depends on every input value (the ``j``-th output
is the value whose count of smaller-or-equal elements reaches ``j + 1``), so the number of
comparisons grows like ``d log d`` and all ``d`` answer digits must be placed right; lists longer
than the training lengths are also positions the model has never produced.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from difftrade.tasks.base import DIGIT0, Task, assemble_variable


@dataclasses.dataclass(frozen=True)
class Sorting(Task):
    name: ClassVar[str] = "sorting"
    difficulty_meaning: ClassVar[str] = "length of the list of digits to sort"
    d_min: int = 1
    d_max: int = 8
    num_values: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            isinstance(self.num_values, bool)
            or not isinstance(self.num_values, int)
            or not 2 <= self.num_values <= 10
        ):
            raise ValueError(
                f"sorting: num_values={self.num_values!r}; allowed an int in 2..10 (one digit per value)"
            )

    @property
    def level_structure(self) -> str:
        return "exact"  # lists of length d: each problem has one level

    @property
    def seq_len(self) -> int:
        # <bos> values(d_max) = sorted(d_max) <eos>
        return 1 + self.d_max + 1 + self.d_max + 1

    def _sample(self, key: jax.Array, d: jax.Array) -> tuple[jax.Array, jax.Array]:
        values = jax.random.randint(key, (self.d_max,), 0, self.num_values)
        live = jnp.arange(self.d_max) < d
        ordered = jnp.sort(jnp.where(live, values, self.num_values))  # padding sorts last
        return assemble_variable(values + DIGIT0, d, ordered + DIGIT0, d, self.seq_len)

    def solve(self, prompt: str) -> str:
        return "".join(sorted(prompt, key=int))

    def sample_space_size(self, d: int) -> int | None:
        return self.num_values**d
