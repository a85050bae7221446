"""Base-model checkpoints (orbax) for fine-tuning grids.

A base is a directory holding ``params/`` (an orbax StandardCheckpointer save of one member's
parameter pytree) and ``base.json`` (the model config, task and the config hash of the run that
produced it). ``load_base`` refuses a base whose architecture differs from the grid's model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from difftrade.model import ModelConfig, Params, init_params


def save_base(path: str | Path, params: Params, model_cfg: ModelConfig, info: dict[str, Any]) -> Path:
    """Write a base checkpoint (one member's params, no member axis). Returns the directory."""
    path = Path(path).resolve()
    if path.exists():
        raise ValueError(f"base checkpoint {str(path)!r} already exists; allowed: a new directory")
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(path / "params", params)
    ckpt.wait_until_finished()
    meta = {"model": dataclasses.asdict(model_cfg), **info}
    (path / "base.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return path


def load_base(path: str | Path, model_cfg: ModelConfig) -> Params:
    """Restore a base's params for ``model_cfg``; ValueError if missing or the architecture differs."""
    path = Path(path).resolve()
    meta_path = path / "base.json"
    if not meta_path.exists():
        raise ValueError(f"run.init={str(path)!r} is not a base checkpoint (no base.json); allowed: 'scratch' or a directory written by `difftrade pretrain`")
    saved = json.loads(meta_path.read_text())["model"]
    wanted = model_cfg.architecture()
    diff = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
    if diff:
        detail = ", ".join(f"model.{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"base checkpoint {str(path)!r} does not match the config's architecture: {detail}")
    abstract = jax.eval_shape(lambda: init_params(model_cfg, jax.random.key(0)))
    return ocp.StandardCheckpointer().restore(path / "params", abstract)
