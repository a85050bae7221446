"""Difficulty distributions and addressable example streams.

**Distributions** are weight vectors over a task's levels ``d_min..d_max`` (float32
``[num_levels]``, non-negative, summing to one).

**Streams are addressable.** Example ``i`` of split ``s`` at level ``d`` is generated from the key
``fold_in(fold_in(fold_in(root, s), d), i)``; nothing is stored. Under a mixture distribution
the level of example ``i`` is chosen by inverse-CDF from the uniform drawn with
``fold_in(fold_in(fold_in(root, s), LEVEL_CHOICE), i)`` (common random numbers across members).
Every example goes through ``task.sample_at(root, s, d, i)``: generator tasks sample from the key
above, a bank task (``difftrade.train.scored_difficulty``) returns row ``i`` of its pre-scored bank.
A budget ``n`` means indices ``[0, n)``: budgets are nested, and different splits never share a
key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from difftrade.tasks.base import Task, example_key  # noqa: F401 (example_key re-exported: it lives in tasks.base)

SPLITS: dict[str, int] = {"train": 0, "test": 1, "bound": 2, "pool": 3, "val": 4}
LEVEL_CHOICE: int = 1_000_003  # a fold_in slot no difficulty level uses


def split_id(split: str | int) -> int:
    if isinstance(split, (int, np.integer)):
        return int(split)
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown; allowed: {', '.join(SPLITS)}")
    return SPLITS[split]


# ---- addressable streams --------------------------------------------------------------------
def example_levels(
    task: Task, root: jax.Array, split: int, weights: jax.Array, indices: jax.Array
) -> jax.Array:
    """Level of each example index under a weight vector. int32 ``[B]`` from ``indices [B]``.

    ``weights`` float ``[num_levels]`` may be traced (vmapped over members).
    """
    level_root = jax.random.fold_in(jax.random.fold_in(root, split), LEVEL_CHOICE)
    u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(level_root, i)))(indices)
    cdf = jnp.cumsum(weights.astype(jnp.float32))
    # searchsorted on the CDF; levels with zero weight are never chosen (ties go right).
    idx = jnp.sum(u[:, None] >= cdf[None, :-1] / cdf[-1], axis=1)
    idx = jnp.where(weights[idx] > 0, idx, jnp.argmax(weights))  # float round-off guard
    return (idx + task.d_min).astype(jnp.int32)


def examples_at_level(
    task: Task, root: jax.Array, split: int, level: int | jax.Array, indices: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Examples ``indices [B]`` of ``split`` at one ``level``: tokens int32 ``[B, L]``, mask bool ``[B, L]``."""
    return jax.vmap(lambda i: task.sample_at(root, split, level, i))(indices)


def examples(
    task: Task, root: jax.Array, split: int, weights: jax.Array, indices: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Examples ``indices [B]`` under a difficulty distribution.

    Returns tokens int32 ``[B, L]``, loss mask bool ``[B, L]`` and levels int32 ``[B]``.
    Jittable and vmappable (over ``root``, ``weights`` and ``indices``).
    """
    levels = example_levels(task, root, split, weights, indices)
    tokens, mask = jax.vmap(lambda d, i: task.sample_at(root, split, d, i))(levels, indices)
    return tokens, mask, levels


def check_budget(n: int, field: str = "budget") -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or int(n) < 1:
        raise ValueError(f"{field}={n!r}; allowed: an integer >= 1")
    return int(n)


# ---- duplicates and overlap ----------------------------------------------------------------
@dataclass(frozen=True)
class OverlapReport:
    """Exact counts for one level: how many of the first ``n_train`` train examples repeat, and
    how many of the first ``n_test`` test examples also occur among them."""

    level: int
    n_train: int
    n_test: int
    sample_space: int | None
    distinct_train: int
    duplicate_train: int  # n_train - distinct_train
    test_in_train: int  # test examples (with multiplicity) whose problem appears in train

    def __str__(self) -> str:
        space = "?" if self.sample_space is None else str(self.sample_space)
        return (
            f"level {self.level}: sample space {space}, train n={self.n_train} has {self.distinct_train} "
            f"distinct ({self.duplicate_train} duplicates), {self.test_in_train}/{self.n_test} test examples occur in train"
        )


def overlap_report(
    task: Task, root: jax.Array, level: int, n_train: int, n_test: int
) -> OverlapReport:
    """Count exact duplicates in train ``[0, n_train)`` and test/train overlap at ``level``.

    Problems are compared by their full token rows (prompt and answer).
    """
    check_budget(n_train, "n_train")
    check_budget(n_test, "n_test")
    task.check_difficulty(level, "level")
    gen = jax.jit(examples_at_level, static_argnums=(0, 2))
    train, _ = gen(task, root, SPLITS["train"], level, jnp.arange(n_train))
    test, _ = gen(task, root, SPLITS["test"], level, jnp.arange(n_test))
    train_rows = {bytes(r) for r in np.asarray(train).astype(np.int8)}
    test_hits = sum(bytes(r) in train_rows for r in np.asarray(test).astype(np.int8))
    return OverlapReport(
        level=int(level),
        n_train=n_train,
        n_test=n_test,
        sample_space=task.sample_space_size(int(level)),
        distinct_train=len(train_rows),
        duplicate_train=n_train - len(train_rows),
        test_in_train=int(test_hits),
    )


def overlap_table(
    task: Task,
    root: jax.Array,
    levels: Sequence[int],
    budgets: Sequence[int],
    n_test: int,
    max_space: int = 10**9,
) -> tuple[np.ndarray, np.ndarray]:
    """Duplicate and test/train-overlap fractions for every (level, budget), exact.

    Uses nestedness: the train set of budget n is the first n examples of the largest budget, so
    one generation per level serves every budget. Levels whose sample space is unknown or larger
    than ``max_space`` get NaN (overlap there is negligible: about n²/space).
    Returns ``duplicate_fraction`` and ``test_in_train_fraction``, float64 ``[len(levels), len(budgets)]``.
    """
    dup = np.full((len(levels), len(budgets)), np.nan)
    hit = np.full_like(dup, np.nan)
    n_max = max(int(b) for b in budgets)
    for i, level in enumerate(levels):
        space = task.sample_space_size(int(level))
        if space is None or space > max_space:
            continue
        train = np.asarray(
            examples_at_level(task, root, SPLITS["train"], int(level), jnp.arange(n_max))[0]
        ).astype(np.int8)
        test = np.asarray(
            examples_at_level(task, root, SPLITS["test"], int(level), jnp.arange(n_test))[0]
        ).astype(np.int8)
        test_rows = [bytes(r) for r in test]
        seen: set[bytes] = set()
        done = 0
        for j in np.argsort(budgets):
            n = int(budgets[j])
            seen.update(bytes(r) for r in train[done:n])
            done = n
            dup[i, j] = (n - len(seen)) / n
            hit[i, j] = sum(r in seen for r in test_rows) / n_test
    return dup, hit
