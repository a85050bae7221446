"""What a population is trained with: the optimisation settings (:class:`TrainConfig`, the
``[train]`` table: its field checks, :meth:`~TrainConfig.for_budget` for fixed epochs, and
:func:`prefix_budget` of a prefix phase) and the per-member hyperparameters (:class:`Population`).

The trainer itself is :mod:`difftrade.train.trainer`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from difftrade.config.fields import Field, check_fields, refuse


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation (static). AdamW, linear warmup then cosine decay to ``final_lr_fraction``."""

    steps: int = 1000
    batch_size: int = 64
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    b1: float = 0.9
    b2: float = 0.98
    final_lr_fraction: float = 0.1
    num_checkpoints: int = 10
    # A data-dependent prior from the member's own run (Dziugaite et al. 2021): the first
    # ``prefix_steps`` steps draw minibatches from examples [0, n') only, n' = prefix_budget(n,
    # prefix_fraction), and the weights after them are kept (``TrainResult.prior_params``) as a
    # prior centre independent of the examples [n', n). 0 = off (every step draws from [0, n)).
    prefix_steps: int = 0
    prefix_fraction: float = 0.5
    # Fixed epochs instead of fixed steps: 0 = every member trains ``steps`` steps; > 0 = a member
    # with budget n trains about ``epochs`` passes over its n examples (:meth:`for_budget`), and
    # ``steps`` is not used.
    epochs: float = 0.0
    # Validation stopping: "fixed" = every member trains ``steps`` steps and keeps its last weights;
    # "validation" = ``steps`` is a cap, and after every checkpoint segment each member is scored on
    # ``val_examples`` examples of its own training distribution (split "val": never the target,
    # never its training or test examples), keeps its best weights so far (lowest validation
    # exact-match risk, ties to lower cross-entropy) and stops once ``patience`` checkpoints in a
    # row bring no improvement.
    stopping: str = "fixed"
    patience: int = 3
    val_examples: int = 256

    def __post_init__(self) -> None:
        # with epochs, steps is not used: num_checkpoints and warmup_steps are not checked against it
        check_fields(self, "train", EPOCHS_FIELDS if self.epochs else TRAIN_FIELDS)
        if self.epochs and self.prefix_steps:
            raise refuse(
                "train",
                "prefix_steps",
                self.prefix_steps,
                "0 when train.epochs > 0",
                f" cannot be combined with epochs = {self.epochs} (the prefix phase is a number of steps)",
            )
        if self.stopping == "fixed":
            for name in ("patience", "val_examples"):
                if getattr(self, name) != TrainConfig.__dataclass_fields__[name].default:
                    raise refuse(
                        "train",
                        name,
                        getattr(self, name),
                        "its default when train.stopping = 'fixed'",
                        " has no effect unless train.stopping = 'validation'",
                    )
        if self.stopping == "validation" and (self.epochs or self.prefix_steps):
            name, value = (
                ("epochs", self.epochs) if self.epochs else ("prefix_steps", self.prefix_steps)
            )
            raise refuse(
                "train",
                name,
                value,
                "0 when train.stopping = 'validation'",
                " cannot be combined with validation stopping (the cap is train.steps; the selected weights are one checkpoint)",
            )
        if self.epochs:
            return
        seg = self.steps // self.num_checkpoints
        if self.prefix_steps % seg:
            raise refuse(
                "train",
                "prefix_steps",
                self.prefix_steps,
                f"0 (off) or a multiple of steps / num_checkpoints = {seg} below steps ({self.steps})",
                f" is not a multiple of steps / num_checkpoints = {seg}",
            )

    def for_budget(self, budget: int) -> TrainConfig:
        """The fixed-steps configuration of a member with ``budget`` examples.

        Itself when ``epochs`` is 0. Otherwise ``steps`` = epochs * budget / batch_size, rounded up
        to a multiple of ``num_checkpoints`` (at least 2 steps), with ``warmup_steps`` capped at a
        tenth of those steps, and ``epochs`` 0.
        """
        if not self.epochs:
            return self
        c = self.num_checkpoints
        per_checkpoint = math.ceil(self.epochs * budget / (self.batch_size * c) - 1e-9)
        steps = c * max(per_checkpoint, math.ceil(2 / c))
        return dataclasses.replace(
            self, epochs=0.0, steps=steps, warmup_steps=min(self.warmup_steps, steps // 10)
        )


# [train]: one spec per field (difftrade.config.fields). The schedule warms up for max(warmup_steps, 1)
# steps and decays over the rest, so steps >= 2 and warmup_steps < steps; grad_clip is the
# largest global gradient norm (0 would zero every update).
TRAIN_FIELDS: dict[str, Field] = {
    "steps": Field(int, 2, note="one warmup step at least, then the decay"),
    "num_checkpoints": Field(int, 1, "steps", divides="steps"),
    "batch_size": Field(int, 1),
    "warmup_steps": Field(int, 0, "steps", high_open=True),
    "weight_decay": Field(float, 0),
    "grad_clip": Field(float, 0, low_open=True, note="the largest global gradient norm"),
    "b1": Field(float, 0, 1, high_open=True),
    "b2": Field(float, 0, 1, high_open=True),
    "final_lr_fraction": Field(float, 0, 1, note="of the peak learning rate"),
    "prefix_steps": Field(
        int, 0, "steps", high_open=True, note="0 = off; a multiple of steps / num_checkpoints"
    ),
    "prefix_fraction": Field(float, 0, 1, low_open=True, high_open=True),
    "epochs": Field(float, 0, note="0 = fixed steps; > 0 = passes over each member's budget"),
    "stopping": Field(str, choices=("fixed", "validation")),
    "patience": Field(int, 1, note="checkpoints without improvement before a member stops"),
    "val_examples": Field(int, 1, 65536),
}
EPOCHS_FIELDS: dict[str, Field] = {
    **TRAIN_FIELDS,
    "num_checkpoints": Field(int, 1),
    "warmup_steps": Field(int, 0),
    "prefix_steps": Field(int, 0),
}


def prefix_budget(budget: Any, fraction: float) -> Any:
    """Examples [0, n') a member's prefix phase draws from: ``n' = max(1, floor(fraction * n))``,
    computed in float32 so the host (numpy) and the trainer (jax) agree exactly. ``budget`` int
    ``[...]`` (numpy, or any array with an array-API namespace such as jax's) -> int32 ``[...]``
    of the same kind."""
    namespace = getattr(budget, "__array_namespace__", None)
    xp = namespace() if namespace is not None else np
    scaled = xp.floor(xp.float32(fraction) * xp.asarray(budget).astype(xp.float32))
    return xp.maximum(1, scaled.astype(xp.int32))


@dataclasses.dataclass(frozen=True)
class Population:
    """Per-member hyperparameters, each with leading member axis ``M``.

    weights float32 ``[M, num_levels]``, budget int32 ``[M]``, seed int32 ``[M]``,
    learning_rate float32 ``[M]``.
    """

    weights: np.ndarray
    budget: np.ndarray
    seed: np.ndarray
    learning_rate: np.ndarray

    def __post_init__(self) -> None:
        m = self.budget.shape[0]
        for field in ("weights", "seed", "learning_rate"):
            if getattr(self, field).shape[0] != m:
                raise ValueError(
                    f"population.{field} has {getattr(self, field).shape[0]} members; expected {m}"
                )
        if np.any(self.budget < 1):
            raise ValueError(
                f"population.budget has values {self.budget[self.budget < 1].tolist()}; allowed: >= 1"
            )
        if not np.all(np.isfinite(self.learning_rate)) or np.any(self.learning_rate <= 0):
            raise ValueError(
                f"population.learning_rate={self.learning_rate.tolist()}; allowed: > 0"
            )

    @property
    def size(self) -> int:
        return int(self.budget.shape[0])

    def take(self, idx: np.ndarray) -> Population:
        """Members ``idx`` (a numpy index array)."""
        return Population(
            self.weights[idx], self.budget[idx], self.seed[idx], self.learning_rate[idx]
        )
