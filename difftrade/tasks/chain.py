"""Modular-arithmetic chain, evaluated left to right.

Difficulty ``d`` = number of operations. A problem is a start value followed by ``d``
operations ``op x`` with ``op`` in ``ops`` (default ``+ - *``) and ``x`` in ``0..modulus-1``;
every value is reduced mod ``modulus`` (at most 10, so every value is one digit)::

    3+4*7-2=797<eos>      (cot=True: 3+4=7, 7*7=49=9 mod 10, 9-2=7)

There is no operator precedence: the chain is evaluated strictly left to right.

* ``cot=True`` (default): the answer lists every intermediate result, one digit per operation,
  so the answer of a hard example contains the answers of all its prefixes (the easy
  sub-problems), and each answer token needs one step of arithmetic on the previous one. This is
  the format a causal decoder can learn.
* ``cot=False``: the answer is only the final value (one digit).

The prompt has ``1 + 2 d`` symbols, so its length varies with ``d`` (padded to ``d_max``).

Why harder is harder: the result depends on all ``d`` operations in sequence, one wrong step
spoils every later value, and with ``cot=True`` all ``d`` answer digits must be right. Without
the chain of thought the model must compose ``d`` maps of Z_m in one forward pass.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from difftrade.tasks.base import DIGIT0, Task, assemble_variable, tok

_OPS = "+-*"


@dataclasses.dataclass(frozen=True)
class Chain(Task):
    name: ClassVar[str] = "chain"
    difficulty_meaning: ClassVar[str] = "number of operations in the left-to-right modular chain"
    d_min: int = 1
    d_max: int = 8
    modulus: int = 10
    ops: str = "+-*"
    cot: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            isinstance(self.modulus, bool)
            or not isinstance(self.modulus, int)
            or not 2 <= self.modulus <= 10
        ):
            raise ValueError(
                f"chain: modulus={self.modulus!r}; allowed an int in 2..10 (one digit per value)"
            )
        if (
            not isinstance(self.ops, str)
            or not self.ops
            or len(set(self.ops)) != len(self.ops)
            or not set(self.ops) <= set(_OPS)
        ):
            raise ValueError(
                f"chain: ops={self.ops!r}; allowed a non-empty string of distinct symbols from {_OPS!r}"
            )
        if not isinstance(self.cot, bool):
            raise ValueError(f"chain: cot={self.cot!r}; allowed True or False")  # noqa: TRY004 - the CLI reports ValueError

    @property
    def answer_len(self) -> int:
        """Longest answer (without <eos>)."""
        return self.d_max if self.cot else 1

    @property
    def level_structure(self) -> str:
        return "exact"  # d operations: prompts of different levels have different lengths

    @property
    def seq_len(self) -> int:
        # <bos> start (op x)*d_max = answer <eos>
        return 1 + (1 + 2 * self.d_max) + 1 + self.answer_len + 1

    def _sample(self, key: jax.Array, d: jax.Array) -> tuple[jax.Array, jax.Array]:
        k_start, k_ops, k_x = jax.random.split(key, 3)
        start = jax.random.randint(k_start, (), 0, self.modulus)
        op_index = jax.random.randint(k_ops, (self.d_max,), 0, len(self.ops))
        operands = jax.random.randint(k_x, (self.d_max,), 0, self.modulus)
        op_codes = jnp.array([_OPS.index(o) for o in self.ops], jnp.int32)[op_index]  # 0:+ 1:- 2:*
        op_tokens = jnp.array([tok(o) for o in self.ops], jnp.int32)[op_index]

        def step(value, op_x):
            op, x = op_x
            out = jnp.select([op == 0, op == 1], [value + x, value - x], value * x) % self.modulus
            return out, out

        _, values = jax.lax.scan(step, start, (op_codes, operands))  # values[i]: after op i+1
        body = jnp.concatenate(
            [start[None] + DIGIT0, jnp.stack([op_tokens, operands + DIGIT0], 1).reshape(-1)]
        )
        if self.cot:
            answer, answer_len = values + DIGIT0, d
        else:
            answer, answer_len = (values[d - 1] + DIGIT0)[None], jnp.int32(1)
        return assemble_variable(body, 1 + 2 * d, answer, answer_len, self.seq_len)

    def solve(self, prompt: str) -> str:
        value = int(prompt[0])
        results = []
        for op, x in zip(prompt[1::2], prompt[2::2]):
            if op == "+":
                value = (value + int(x)) % self.modulus
            elif op == "-":
                value = (value - int(x)) % self.modulus
            elif op == "*":
                value = (value * int(x)) % self.modulus
            else:
                raise ValueError(f"chain: unexpected operator {op!r} in prompt {prompt!r}")
            results.append(str(value))
        return "".join(results) if self.cot else results[-1]

    def sample_space_size(self, d: int) -> int | None:
        # start value, then d (operator, operand) pairs; distinct pairs give distinct prompts.
        return self.modulus * (len(self.ops) * self.modulus) ** d
