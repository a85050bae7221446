"""Run configs read against the registered task families, and the task a config names.

:mod:`difftrade.config.run_config` validates a config through a
:class:`~difftrade.config.task_catalog.TaskCatalog`; :data:`REGISTERED` is the catalog of the
families registered now (built-in, ``@register``, entry points), and the readers below pass it:
``load`` (a TOML path or a packaged preset name), ``from_dict`` (a parsed document),
``stored`` / ``from_json`` / ``from_stored`` (the config a results file or ``config.json``
holds). ``source_task`` builds a config's generator task; a model-based config's bank task is
built where the model runs (``difftrade.train.run_task``).

A run records the module of a task family from outside difftrade (:func:`task_module`; the
``task_module`` attribute of ``results.nc`` and key of ``config.json``); reading a stored config
whose task is not registered imports that module first, so ``report``, ``bound`` and the rest
work on a plugin's run without ``--import``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from difftrade.config import run_config
from difftrade.config.run_config import RunConfig
from difftrade.config.task_catalog import TaskFacts
from difftrade.tasks import REGISTRY, VOCAB, get_task_class, import_modules, make_task, task_options
from difftrade.tasks.base import Task


class Registered:
    """The :class:`~difftrade.config.task_catalog.TaskCatalog` of ``difftrade.tasks.REGISTRY``."""

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(REGISTRY))

    def defaults(self, name: str) -> dict[str, Any]:
        return task_options(name)

    def describe(self, name: str, options: dict[str, Any]) -> TaskFacts:
        task = make_task(name, **options)
        return TaskFacts(
            name=name,
            options={**task_options(name), **options},
            d_min=task.d_min,
            d_max=task.d_max,
            seq_len=task.seq_len,
            vocab_size=len(VOCAB),
        )


REGISTERED = Registered()


def load(path: str | Path) -> RunConfig:
    """A TOML run config (a path, or a packaged preset name such as ``"quick"``), validated."""
    return run_config.load(path, REGISTERED)


def from_dict(raw: dict[str, Any]) -> RunConfig:
    """A parsed TOML document validated (:func:`difftrade.config.run_config.from_dict`)."""
    return run_config.from_dict(raw, REGISTERED)


def stored(ds: Any, source: str | None = None) -> RunConfig:
    """The config a results dataset stores, validated; ``ValueError`` naming ``source``. Its
    ``task_module`` attribute, when the task is not registered, is imported first."""
    if "config" in ds.attrs:
        _import_recorded(_task_name(ds.attrs["config"]), ds.attrs.get(TASK_MODULE))
    return run_config.stored(ds, REGISTERED, source)


def from_json(text: str, source: str, module: str | None = None) -> RunConfig:
    """The config :meth:`RunConfig.to_json` wrote, validated; ``ValueError`` naming ``source``.
    ``module``: the task family's recorded module, imported first when its task is not registered."""
    _import_recorded(_task_name(text), module)
    return run_config.from_json(text, source, REGISTERED)


def from_stored(raw: Any, source: str, module: str | None = None) -> RunConfig:
    """A stored config's canonical form (parsed JSON), validated; ``ValueError`` naming ``source``.
    ``module``: the task family's recorded module, imported first when its task is not registered."""
    if isinstance(raw, dict) and isinstance(raw.get("task"), dict):
        _import_recorded(raw["task"].get("name"), module)
    return run_config.from_stored(raw, source, REGISTERED)


TASK_MODULE = "task_module"  # results.nc attribute and config.json key


def task_module(cfg: RunConfig) -> str | None:
    """The module defining the config's task family when it is not one of difftrade's (None)."""
    module = get_task_class(cfg.task_name).__module__
    return None if module.split(".")[0] == "difftrade" else module


def _task_name(text: Any) -> Any:
    try:
        return json.loads(text)["task"]["name"]
    except (TypeError, KeyError, ValueError):
        return None  # not a stored config: the reader names what is wrong


def _import_recorded(name: Any, module: Any) -> None:
    """Import ``module`` (a run's recorded task module) when ``name`` is not registered."""
    if isinstance(name, str) and name not in REGISTRY and isinstance(module, str) and module:
        import_modules([module])


def source_task(cfg: RunConfig) -> Task:
    """The generator task of ``[task]`` (its levels are the nominal ones)."""
    return make_task(cfg.task_name, **dict(cfg.task_options))
