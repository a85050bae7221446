"""k-hop pointer chasing over a random functional graph.

Difficulty ``d`` = number of hops. A problem is a random function ``f`` on ``num_nodes`` nodes
(letters ``a, b, ...``; each node's successor uniform over all nodes, self-loops allowed),
written as one edge ``xy`` (meaning ``f(x) = y``) per node, then the start node and the hop
count (one digit, so ``d_max <= 9``)::

    cb,ab,ba,da;c:3=bab<eos>      (cot=True: c -> b -> a -> b)

* ``shuffle_edges=True`` (default): edges are listed in a random order, so finding the successor
  of a node means matching its letter (content lookup), not counting positions.
* ``cot=True`` (default): the answer lists every visited node after the start, so each answer
  token is one lookup from the previous one and the answer of ``d`` hops starts with the answer
  of every smaller hop count from the same start. ``cot=False``: only the node after ``d`` hops.

The prompt has a fixed length ``3 num_nodes + 3``; only the hop digit and the answer length
depend on ``d``.

Why harder is harder: every hop depends on the previous one, so ``d`` lookups must be composed in
order; one wrong lookup sends every later node off the path, and with ``cot=True`` all ``d``
answer letters must be right.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from difftrade.tasks.base import DIGIT0, LETTER0, Task, assemble, tok
from difftrade.tasks.parity import random_ranks


@dataclasses.dataclass(frozen=True)
class Pointer(Task):
    name: ClassVar[str] = "pointer"
    difficulty_meaning: ClassVar[str] = "number of pointer hops through a random functional graph"
    d_min: int = 1
    d_max: int = 8
    num_nodes: int = 8
    shuffle_edges: bool = True
    cot: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_max > 9:
            raise ValueError(
                f"pointer: d_max={self.d_max}; allowed up to 9 (the hop count is one digit)"
            )
        if (
            isinstance(self.num_nodes, bool)
            or not isinstance(self.num_nodes, int)
            or not 2 <= self.num_nodes <= 26
        ):
            raise ValueError(
                f"pointer: num_nodes={self.num_nodes!r}; allowed an int in 2..26 (one letter per node)"
            )
        for field in ("shuffle_edges", "cot"):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(  # noqa: TRY004 - the CLI reports ValueError
                    f"pointer: {field}={getattr(self, field)!r}; allowed True or False"
                )

    @property
    def prompt_len(self) -> int:
        # N edges "xy" joined by ",", then ";" start ":" hops
        return 3 * self.num_nodes - 1 + 4

    @property
    def answer_len(self) -> int:
        """Longest answer (without <eos>)."""
        return self.d_max if self.cot else 1

    @property
    def level_structure(self) -> str:
        return "exact"  # the hop count d is written in the prompt: each problem has one level

    @property
    def seq_len(self) -> int:
        return 1 + self.prompt_len + 1 + self.answer_len + 1

    def _sample(self, key: jax.Array, d: jax.Array) -> tuple[jax.Array, jax.Array]:
        k_succ, k_order, k_start = jax.random.split(key, 3)
        n = self.num_nodes
        successor = jax.random.randint(k_succ, (n,), 0, n)
        if self.shuffle_edges:  # order[j]: the node whose edge is listed j-th
            rank = random_ranks(k_order, n)
            order = jnp.argmax(rank[None, :] == jnp.arange(n)[:, None], axis=1).astype(jnp.int32)
        else:
            order = jnp.arange(n, dtype=jnp.int32)
        start = jax.random.randint(k_start, (), 0, n)

        def hop(node, _):
            nxt = successor[node]
            return nxt, nxt

        _, visited = jax.lax.scan(hop, start, None, length=self.d_max)  # visited[i]: after i+1 hops
        comma = jnp.full((n,), tok(","), jnp.int32)
        edges = jnp.stack([order + LETTER0, successor[order] + LETTER0, comma], 1).reshape(-1)[:-1]
        tail = jnp.stack([jnp.int32(tok(";")), start + LETTER0, jnp.int32(tok(":")), d + DIGIT0])
        prompt = jnp.concatenate([edges, tail])
        if self.cot:
            answer, answer_len = visited + LETTER0, d
        else:
            answer, answer_len = (visited[d - 1] + LETTER0)[None], jnp.int32(1)
        return assemble(prompt, answer, answer_len, self.seq_len)

    def solve(self, prompt: str) -> str:
        graph, query = prompt.split(";")
        successor = {edge[0]: edge[1] for edge in graph.split(",")}
        node, hops = query.split(":")
        path = []
        for _ in range(int(hops)):
            node = successor[node]
            path.append(node)
        return "".join(path) if self.cot else path[-1]

    def sample_space_size(self, d: int) -> int | None:
        # successor function x start node x edge order (the hop digit is fixed by d)
        n = self.num_nodes
        return n**n * n * (math.factorial(n) if self.shuffle_edges else 1)
