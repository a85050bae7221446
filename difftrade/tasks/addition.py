"""Multi-digit addition.

Difficulty ``d`` = number of digits of the operands. Both operands are written zero-padded to
``d_max`` digits, most significant first; the sum is written **least-significant digit first**
(``d_max + 1`` digits), the order in which a causal decoder can compute it with carries.

* ``levels="nested"`` (default): operands uniform in ``[0, 10^d)``; every easier problem lies
  in the support of every harder level (harder training data covers easier problems).
* ``levels="exact"``: operands with exactly ``d`` digits (for ``d = 1``: 0..9).
* ``scratchpad=True``: the answer lists, per position (LSB first), the sum digit and the carry
  out, so the last token is the top digit of the sum: ``s0 c0 s1 c1 ...``.

Why harder is harder: a ``d``-digit sum needs up to ``d`` chained carries and the model must
get all ``d + 1`` digits right.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from difftrade.tasks.base import DIGIT0, Task, assemble, tok


@dataclasses.dataclass(frozen=True)
class Addition(Task):
    name: ClassVar[str] = "addition"
    difficulty_meaning: ClassVar[str] = "number of digits of each operand"
    d_min: int = 1
    d_max: int = 8
    levels_kind: str = "nested"
    scratchpad: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.levels_kind not in ("nested", "exact"):
            raise ValueError(
                f"addition: levels_kind={self.levels_kind!r}; allowed 'nested' or 'exact'"
            )
        if self.d_max > 18:
            raise ValueError(f"addition: d_max={self.d_max} too large; allowed up to 18")

    @property
    def level_structure(self) -> str:
        # nested: operands uniform on [0, 10^d), so level d's problems include level d - 1's
        return "nested" if self.levels_kind == "nested" else "exact"

    @property
    def answer_len(self) -> int:
        return 2 * self.d_max if self.scratchpad else self.d_max + 1

    @property
    def seq_len(self) -> int:
        # <bos> a(D) + b(D) = answer <eos>
        return 2 * self.d_max + 1 + self.answer_len + 3

    def _operand(self, key: jax.Array, d: jax.Array) -> jax.Array:
        """Digits, least significant first, int32 [d_max]."""
        k1, k2 = jax.random.split(key)
        pos = jnp.arange(self.d_max)
        digits = jax.random.randint(k1, (self.d_max,), 0, 10)
        if self.levels_kind == "exact":
            lead = jax.random.randint(k2, (), 1, 10)
            digits = jnp.where((pos == d - 1) & (d > 1), lead, digits)
        return jnp.where(pos < d, digits, 0)

    def _sample(self, key: jax.Array, d: jax.Array) -> tuple[jax.Array, jax.Array]:
        ka, kb = jax.random.split(key)
        a, b = self._operand(ka, d), self._operand(kb, d)

        def carry_step(carry, ab):
            total = ab[0] + ab[1] + carry
            return total // 10, jnp.stack([total % 10, total // 10])

        _, out = jax.lax.scan(carry_step, jnp.int32(0), jnp.stack([a, b], axis=1))
        sums, carries = out[:, 0], out[:, 1]
        if self.scratchpad:
            answer = jnp.stack([sums, carries], axis=1).reshape(-1)
        else:
            answer = jnp.concatenate([sums, carries[-1:]])
        prompt = jnp.concatenate([a[::-1] + DIGIT0, jnp.array([tok("+")]), b[::-1] + DIGIT0])
        return assemble(prompt, answer + DIGIT0, jnp.int32(self.answer_len), self.seq_len)

    def solve(self, prompt: str) -> str:
        left, right = prompt.split("+")
        a, b = int(left), int(right)
        if not self.scratchpad:
            return str(a + b).zfill(self.d_max + 1)[::-1]
        out, carry = [], 0
        da, db = left[::-1], right[::-1]
        for i in range(self.d_max):
            total = int(da[i]) + int(db[i]) + carry
            carry = total // 10
            out.append(f"{total % 10}{carry}")
        return "".join(out)

    def sample_space_size(self, d: int) -> int | None:
        per_operand = 10**d if (self.levels_kind == "nested" or d == 1) else 9 * 10 ** (d - 1)
        return per_operand**2
