"""The task a run config trains on, built where the model runs.

Nominal levels: the generator task of ``[task]``. ``difficulty.kind = "model"``: the generator's
pools scored by the reference checkpoint and binned into levels
(:func:`difftrade.train.scored_difficulty.model_based_task`); scoring is a forward pass over the
pools, so a scored task is kept for the rest of the process, keyed by everything it depends on
(the reference's ``base.json`` time stamp included, so a rewritten base is scored again).
"""

from __future__ import annotations

import functools
from pathlib import Path

from difftrade.config.model_config import ModelConfig
from difftrade.config.run_config import RunConfig
from difftrade.config.sections import DifficultySettings
from difftrade.model.checkpoint import load_base
from difftrade.model.transformer import Params
from difftrade.tasks.base import Task
from difftrade.tasks.configs import source_task
from difftrade.tasks.keys import root_key
from difftrade.train.scored_difficulty import model_based_task


def run_task(cfg: RunConfig) -> Task:
    """The task the grid of ``cfg`` runs on: its source task, or the model-scored bank task."""
    source = source_task(cfg)
    if cfg.difficulty.kind == "nominal":
        return source
    reference = Path(cfg.difficulty.reference).resolve()
    meta = reference / "base.json"
    stamp = meta.stat().st_mtime_ns if meta.exists() else None
    return _scored(source, cfg.difficulty, cfg.model, str(reference), stamp)


@functools.lru_cache(maxsize=4)
def _scored(
    source: Task,
    difficulty: DifficultySettings,
    model: ModelConfig,
    reference: str,
    stamp: int | None,  # part of the cache key: a rewritten base is scored again
) -> Task:
    return model_based_task(
        source,
        _load_reference(reference, difficulty, model),
        model,
        num_levels=difficulty.num_levels,
        per_level=difficulty.per_level,
        key=root_key(difficulty.pool_seed),
    )


def reference_params(cfg: RunConfig) -> Params:
    """The reference model's params (``difficulty.reference``); ValueError naming the field."""
    if cfg.difficulty.kind != "model":
        raise ValueError(
            f"difficulty.kind={cfg.difficulty.kind!r} has no reference model; allowed: 'model'"
        )
    return _load_reference(cfg.difficulty.reference, cfg.difficulty, cfg.model)


def _load_reference(reference: str, difficulty: DifficultySettings, model: ModelConfig) -> Params:
    if not (Path(reference) / "base.json").exists():
        raise ValueError(
            f"difficulty.reference={difficulty.reference!r} is not a base checkpoint (no base.json); allowed: a "
            "directory written by `difftrade pretrain CONFIG.toml` (CONFIG/base under --out, e.g. runs/pretrain/base)"
        )
    try:
        return load_base(reference, model)
    except ValueError as err:  # architecture mismatch
        raise ValueError(f"difficulty.reference={difficulty.reference!r}: {err}") from None
