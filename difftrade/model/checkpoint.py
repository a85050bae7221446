"""Base-model checkpoints (orbax) for fine-tuning grids.

A base is a directory holding ``params/`` (an orbax StandardCheckpointer save of one member's
parameter pytree) and ``base.json`` (the model config, task and the config hash of the run that
produced it). ``load_base`` refuses a base whose architecture differs from the grid's model, and
one whose stored parameters do not have the model's leaves, shapes and dtypes, naming the
directory before anything is compiled.

``save_base`` writes into a temporary sibling directory and renames it into place, so a save
that is killed leaves no half-written base; ``base.json`` is written last, and a directory
without it (from a save interrupted before that rule) is replaced, with a line on stderr.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from difftrade.config import files
from difftrade.config.logs import log
from difftrade.config.model_config import ModelConfig
from difftrade.model.transformer import Params, init_params
from difftrade.tasks.keys import root_key

META = "base.json"
ALLOWED = "allowed: 'scratch' or a directory written by `difftrade pretrain`"


def _one_line(err: BaseException, limit: int = 300) -> str:
    """``"Type: message"`` on one line, at most ``limit`` characters of the message."""
    return f"{type(err).__name__}: {' '.join(str(err).split())[:limit]}"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a temporary directory of a live save is left alone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _remove(path: Path, why: str) -> None:
    """Delete a directory tree with one line on stderr naming it and why."""
    shutil.rmtree(path)
    log.warning(f"difftrade: removed {path} ({why})")


def clear_incomplete(path: Path) -> None:
    """Remove what killed saves of the base ``path`` left: temporary ``.{name}.tmp{pid}``
    directories of processes that no longer run, and ``path`` itself when it has no ``base.json``."""
    for tmp in path.parent.glob(f".{path.name}.tmp*"):
        pid = tmp.name.removeprefix(f".{path.name}.tmp")
        if pid.isdigit() and not pid_alive(int(pid)):
            _remove(tmp, "an interrupted base checkpoint save")
    if path.is_dir() and not (path / META).exists():
        _remove(path, f"an incomplete base checkpoint: no {META}, its save was interrupted")


def save_base(
    path: str | Path, params: Params, model_cfg: ModelConfig, info: dict[str, Any]
) -> Path:
    """Write a base checkpoint (one member's params, no member axis) atomically. Returns the directory.

    Refuses a ``path`` that already holds a complete base (with ``base.json``); an incomplete one
    is removed first (:func:`clear_incomplete`).
    """
    path = Path(path).resolve()
    clear_incomplete(path)
    if path.exists():
        raise ValueError(f"base checkpoint {str(path)!r} already exists; allowed: a new directory")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        ckpt = ocp.StandardCheckpointer()
        ckpt.save(tmp / "params", params)
        ckpt.wait_until_finished()
        meta = {"model": dataclasses.asdict(model_cfg), **info}
        (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True))
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_meta(path: Path) -> dict[str, Any]:
    """The ``base.json`` of a base directory; ``ValueError`` naming it when absent, not JSON or without ``model``."""
    meta_path = path / META
    if not meta_path.exists():
        raise ValueError(f"run.init={str(path)!r} is not a base checkpoint (no {META}); {ALLOWED}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{meta_path} is not a base checkpoint's {META} ({_one_line(err)}); {ALLOWED}"
        ) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
        raise ValueError(f"{meta_path} has no 'model' object; {ALLOWED}")  # noqa: TRY004 - bad input is a ValueError
    return meta


BASE_HASH = "base_config_hash"  # config.json key and results.nc attribute of a fine-tuned run


def base_identity(init: str) -> str | None:
    """The config hash of the run that produced the base at ``init`` (its ``base.json``), recorded
    by a run fine-tuned from it; None from scratch or for a base that records none."""
    if init == "scratch":
        return None
    found = read_meta(Path(init)).get("config_hash")
    return None if found is None else str(found)


def check_same_base(init: str, recorded: Any, where: str) -> None:
    """``ValueError`` naming ``where`` (a run file) when it records a base (``recorded``, its
    :data:`BASE_HASH`) other than the one now at ``init``; files that record none pass."""
    now = base_identity(init)
    if recorded is not None and now is not None and str(recorded) != now:
        raise ValueError(
            f"{where} was fine-tuned from the base of experiment {recorded}, but run.init="
            f"{init!r} now holds the base of experiment {now}; allowed: the base it was made from "
            "(rebuild it with `difftrade pretrain` and its config)"
        )


def load_run_base(run_dir: str | Path, init: str, model_cfg: ModelConfig) -> Params:
    """The base a finished run was fine-tuned from (:func:`load_base`), refused when it is not the
    base that the run's ``config.json`` records (:func:`check_same_base`)."""
    recorded = files.read_meta(run_dir).get(BASE_HASH)
    check_same_base(init, recorded, str(Path(run_dir) / files.META))
    return load_base(init, model_cfg)


def _key(path: tuple[Any, ...]) -> str:
    """A pytree key path as ``"blocks.0.qkv.kernel"`` (dict keys, attributes and indices alike)."""
    parts = [getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path]
    return ".".join(str(p) for p in parts if str(p) != "value")


def leaf_specs(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{"blocks.0.qkv.kernel": (shape, dtype name), ...}`` of a tree of arrays, abstract arrays or orbax metadata."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {_key(k): (tuple(int(n) for n in v.shape), str(v.dtype)) for k, v in leaves}


def check_stored(path: Path, abstract: Any) -> None:
    """``ValueError`` naming the base ``path`` unless its stored ``params/`` have the leaves, shapes
    and dtypes of ``abstract`` (read from orbax's metadata, before any array is restored)."""
    if not (path / "params").is_dir():
        raise ValueError(f"base checkpoint {str(path)!r} has no params/ directory; {ALLOWED}")
    try:
        stored = leaf_specs(ocp.StandardCheckpointer().metadata(path / "params").item_metadata.tree)
    except Exception as err:  # noqa: BLE001 - orbax raises Value, FileNotFound, Key or tensorstore errors
        raise ValueError(
            f"base checkpoint {str(path)!r} has no readable params/ ({_one_line(err)}); {ALLOWED}"
        ) from None
    wanted = leaf_specs(abstract)
    if stored.keys() != wanted.keys():
        extra, lost = sorted(stored.keys() - wanted.keys()), sorted(wanted.keys() - stored.keys())
        raise ValueError(
            f"base checkpoint {str(path)!r} holds parameters unlike the config's model (extra {extra[:5]}, "
            f"missing {lost[:5]}); {ALLOWED} with this model"
        )
    for name, spec in wanted.items():
        if stored[name] != spec:
            raise ValueError(
                f"base checkpoint {str(path)!r}: {name} is {stored[name][1]}{list(stored[name][0])}, the "
                f"config's model needs {spec[1]}{list(spec[0])}; {ALLOWED} with this model"
            )


def load_base(path: str | Path, model_cfg: ModelConfig) -> Params:
    """Restore a base's params for ``model_cfg``; ValueError naming the directory if it is missing,
    incomplete or damaged, or the architecture, leaves, shapes or dtypes differ."""
    path = Path(path).resolve()
    saved = read_meta(path)["model"]
    wanted = model_cfg.architecture()
    diff = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
    if diff:
        detail = ", ".join(
            f"model.{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in diff.items()
        )
        raise ValueError(
            f"base checkpoint {str(path)!r} does not match the config's architecture: {detail}"
        )
    abstract = jax.eval_shape(lambda: init_params(model_cfg, root_key(0)))
    check_stored(path, abstract)
    try:
        return ocp.StandardCheckpointer().restore(path / "params", abstract)
    except Exception as err:  # noqa: BLE001 - a damaged array file: tensorstore, Value or OS errors
        raise ValueError(
            f"base checkpoint {str(path)!r} cannot be restored ({_one_line(err)}); {ALLOWED}"
        ) from None
