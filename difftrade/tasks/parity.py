"""Sparse parity with the relevant positions stated in the prompt.

Difficulty ``d`` = number of relevant bits. A problem is a uniform random bit string of fixed
width ``n_bits`` and a mask of the same width with exactly ``d`` ones (uniform over all such
masks), separated by ``|``; the answer is the parity (XOR) of the bits where the mask is 1::

    0110100110010110|0010010000001000=1<eos>      (mask picks bits 2, 5, 12: 1, 0, 0)

Stating the mask makes the problem well-posed per example and learnable from examples (classic
sparse parity hides one fixed set of positions, and gradient-based learners then need on the
order of n^d samples or steps to find it). Shapes are fixed by ``n_bits`` and ``d_max``
(``d_max <= n_bits``).

* ``cot=False`` (default): the answer is one bit.
* ``cot=True``: the answer is the running parity after each relevant bit, left to right
  (``d`` bits, the last one is the parity), so a hard answer starts with the answers to the
  problems whose masks keep only the first relevant positions.

Why harder is harder: the answer depends on all ``d`` relevant bits and flips when any one of
them flips (sensitivity ``d``), so no subset of fewer bits predicts it better than chance; the
model must find and combine ``d`` scattered bits.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from difftrade.tasks.base import DIGIT0, Task, assemble, tok


def random_ranks(key: jax.Array, n: int) -> jax.Array:
    """A uniform random permutation of ``0..n-1`` as ranks, int32 ``[n]``.

    Rank of 32 random bits by pairwise comparison (ties, probability < n^2 / 2^33, go to the lower
    index). For the small ``n`` here this is ~20x faster under ``vmap`` on CPU than
    ``jax.random.permutation``, which sorts.
    """
    score = jax.random.bits(key, (n,), jnp.uint32)
    index = jnp.arange(n)
    before = (score[None, :] < score[:, None]) | (
        (score[None, :] == score[:, None]) & (index[None, :] < index[:, None])
    )
    return jnp.sum(before, axis=1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class Parity(Task):
    name: ClassVar[str] = "parity"
    difficulty_meaning: ClassVar[str] = "number of relevant bits whose parity is asked"
    d_min: int = 1
    d_max: int = 8
    n_bits: int = 16
    cot: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            isinstance(self.n_bits, bool)
            or not isinstance(self.n_bits, int)
            or not 1 <= self.n_bits <= 64
        ):
            raise ValueError(f"parity: n_bits={self.n_bits!r}; allowed an int in 1..64")
        if self.d_max > self.n_bits:
            raise ValueError(
                f"parity: d_max={self.d_max} > n_bits={self.n_bits}; allowed d_max <= n_bits"
            )
        if not isinstance(self.cot, bool):
            raise ValueError(f"parity: cot={self.cot!r}; allowed True or False")  # noqa: TRY004 - the CLI reports ValueError

    @property
    def answer_len(self) -> int:
        """Longest answer (without <eos>)."""
        return self.d_max if self.cot else 1

    @property
    def level_structure(self) -> str:
        return "exact"  # masks with exactly d ones: each problem has one level

    @property
    def seq_len(self) -> int:
        # <bos> bits | mask = answer <eos>
        return 1 + (2 * self.n_bits + 1) + 1 + self.answer_len + 1

    def _sample(self, key: jax.Array, d: jax.Array) -> tuple[jax.Array, jax.Array]:
        k_bits, k_mask = jax.random.split(key)
        n = self.n_bits
        bits = jax.random.randint(k_bits, (n,), 0, 2)
        mask = (random_ranks(k_mask, n) < d).astype(jnp.int32)  # a uniform d-subset of positions
        prefix_parity = jnp.cumsum(bits * mask) % 2  # at position i: parity of relevant bits <= i
        rank = (
            jnp.cumsum(mask) - 1
        )  # at a relevant position: how many relevant positions precede it
        hit = (mask[None, :] == 1) & (rank[None, :] == jnp.arange(self.d_max)[:, None])
        running = jnp.sum(hit * prefix_parity[None, :], axis=1)  # running[j]: parity of first j+1
        prompt = jnp.concatenate([bits + DIGIT0, jnp.array([tok("|")], jnp.int32), mask + DIGIT0])
        if self.cot:
            answer, answer_len = running + DIGIT0, d
        else:
            answer, answer_len = (running[d - 1] + DIGIT0)[None], jnp.int32(1)
        return assemble(prompt, answer, answer_len, self.seq_len)

    def solve(self, prompt: str) -> str:
        bits, mask = prompt.split("|")
        parity, running = 0, []
        for bit, relevant in zip(bits, mask):
            if relevant == "1":
                parity ^= int(bit)
                running.append(str(parity))
        return "".join(running) if self.cot else running[-1]

    def sample_space_size(self, d: int) -> int | None:
        return 2**self.n_bits * math.comb(self.n_bits, d)
