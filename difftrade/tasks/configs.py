"""Run configs read against the registered task families, and the task a config names.

:mod:`difftrade.config.run_config` validates a config through a
:class:`~difftrade.config.task_catalog.TaskCatalog`; :data:`REGISTERED` is the catalog of the
families registered now (built-in, ``@register``, entry points), and the readers below pass it:
``load`` (a TOML path or a packaged preset name), ``from_dict`` (a parsed document),
``stored`` / ``from_json`` / ``from_stored`` (the config a results file or ``config.json``
holds). ``source_task`` builds a config's generator task; a model-based config's bank task is
built where the model runs (``difftrade.train.run_task``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from difftrade.config import run_config
from difftrade.config.run_config import RunConfig
from difftrade.config.task_catalog import TaskFacts
from difftrade.tasks import REGISTRY, VOCAB, make_task, task_options
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
    """The config a results dataset stores, validated; ``ValueError`` naming ``source``."""
    return run_config.stored(ds, REGISTERED, source)


def from_json(text: str, source: str) -> RunConfig:
    """The config :meth:`RunConfig.to_json` wrote, validated; ``ValueError`` naming ``source``."""
    return run_config.from_json(text, source, REGISTERED)


def from_stored(raw: Any, source: str) -> RunConfig:
    """A stored config's canonical form (parsed JSON), validated; ``ValueError`` naming ``source``."""
    return run_config.from_stored(raw, source, REGISTERED)


def source_task(cfg: RunConfig) -> Task:
    """The generator task of ``[task]`` (its levels are the nominal ones)."""
    return make_task(cfg.task_name, **dict(cfg.task_options))
