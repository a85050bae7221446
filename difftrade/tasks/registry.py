"""Name -> task class registry, with option validation (did-you-mean on typos)."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from difftrade.tasks.base import Task

REGISTRY: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator / function: add a task family under ``cls.name``.

    A name already taken by another class is refused (``ValueError``); registering the same class
    again is a no-op, so a module imported twice does not fail.
    """
    taken = REGISTRY.get(cls.name)
    if taken is not None and taken is not cls:
        raise ValueError(
            f"task name {cls.name!r} is already registered by {taken.__module__}.{taken.__qualname__}; "
            f"allowed: a name not in {', '.join(sorted(REGISTRY))}"
        )
    REGISTRY[cls.name] = cls
    return cls


def did_you_mean(value: str, allowed: list[str] | tuple[str, ...]) -> str:
    """' (did you mean X?)' or '' — for error messages."""
    close = difflib.get_close_matches(str(value), list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def task_options(name: str) -> dict[str, Any]:
    """Option names of a task family and their defaults."""
    cls = get_task_class(name)
    return {f.name: f.default for f in dataclasses.fields(cls) if f.init}


def get_task_class(name: str) -> type[Task]:
    if name not in REGISTRY:
        raise ValueError(
            f"task={name!r} is unknown{did_you_mean(name, sorted(REGISTRY))}; "
            f"allowed: {', '.join(sorted(REGISTRY))}"
        )
    return REGISTRY[name]


def make_task(name: str, **options: Any) -> Task:
    """Build a task by registry name; unknown options raise ``ValueError`` naming them."""
    cls = get_task_class(name)
    allowed = task_options(name)
    for key in options:
        if key not in allowed:
            raise ValueError(
                f"task option {key!r} is unknown for task {name!r}{did_you_mean(key, list(allowed))}; "
                f"allowed: {', '.join(allowed)}"
            )
    return cls(**options)
