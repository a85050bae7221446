"""The files a run's configuration lives in, read without starting jax: the TOML a user writes
(:func:`read_toml`) and a run directory's ``config.json`` (:func:`read_meta`, written by
:func:`difftrade.runner.rundir.write_meta`). Both give plain dicts; :func:`difftrade.config.run_config.from_dict`
turns one into a validated :class:`~difftrade.config.run_config.RunConfig`. The command line reads grid
sizes here (:func:`grid_members`) before jax starts, to choose its CPU device count."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

META = "config.json"  # a run directory's config and its hash: {"config_hash": str, "config": dict}


def one_line(err: BaseException) -> str:
    """``"Type: message"`` of an exception on one line."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML config file as a dict; ``ValueError`` naming the file when it is absent or not TOML."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"config file {str(path)!r} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {one_line(err)}") from None


def read_meta(out_dir: str | Path) -> dict[str, Any]:
    """A run directory's ``config.json``: ``{"config_hash": str, "config": dict}`` (and
    ``"task_module": str`` for a task family from outside difftrade, ``"base_config_hash": str`` for
    a run fine-tuned from a base).

    ``ValueError`` naming the file when it is unreadable, not JSON, or lacks either key.
    """
    meta = Path(out_dir) / META
    allowed = (
        f"allowed: the {META} that difftrade run wrote (restore it, or move {str(out_dir)!r} aside and run "
        "again)"
    )
    try:
        old = json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{meta} is not a difftrade run's {META} ({one_line(err)}); {allowed}"
        ) from None
    missing = [k for k in ("config_hash", "config") if not isinstance(old, dict) or k not in old]
    if missing:
        raise ValueError(f"{meta} lacks the keys {missing}; {allowed}")
    return old


def grid_members(config: dict[str, Any]) -> int:
    """Members of a config dict's grid: difficulties x budgets x seeds (KeyError/TypeError when
    the dict has no such grid)."""
    grid = config["grid"]
    return len(grid["difficulties"]) * len(grid["budgets"]) * len(grid["seeds"])


CONFIG_DIR = Path(__file__).resolve().parent / "presets"  # configs shipped with the package


def packaged_configs() -> dict[str, Path]:
    """Name -> path of the configs shipped in ``difftrade/config/presets`` (e.g. ``quick``)."""
    return {path.stem: path for path in sorted(CONFIG_DIR.glob("*.toml"))}


def config_path(text: str | Path) -> Path:
    """A config argument: an existing path, else a packaged config's name (``quick`` or ``quick.toml``).

    Anything else stays as given, so reading it reports the missing file.
    """
    path = Path(text)
    if path.exists() or path.parent != Path("."):
        return path
    return packaged_configs().get(path.stem if path.suffix == ".toml" else str(text), path)
