"""Name -> task class registry, with option validation (did-you-mean on typos) and plugins.

Task families come from three places: the built-in modules of ``difftrade.tasks``, any module
that applies ``@register`` when imported (``difftrade --import MODULE``, or a plain ``import``
from Python), and installed packages that declare an entry point in the group ``difftrade.tasks``
(``ENTRY_POINT_GROUP``). An entry point names a module (importing it registers its tasks), a
``Task`` subclass (registered) or a factory (called; it may return a ``Task`` subclass or an
iterable of them, which are registered). Entry points load on first need: when a name is not
registered yet, or when every name is listed (``task_names``).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from difftrade.config.fields import did_you_mean
from difftrade.tasks.base import Task

REGISTRY: dict[str, type[Task]] = {}
ENTRY_POINT_GROUP = "difftrade.tasks"
_LOADED_ENTRY_POINTS: set[str] = set()  # "name = value" of the entry points already loaded
_BROKEN_ENTRY_POINTS: dict[str, str] = {}  # "name = value" -> why it failed to load


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register(cls: type[Task]) -> type[Task]:
    """Class decorator / function: add a task family under ``cls.name``.

    A name already taken by another class is refused (``ValueError`` naming both classes);
    registering the same class again is a no-op, so a module imported twice does not fail.
    """
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ValueError(f"register({cls!r}): allowed: a subclass of difftrade.tasks.Task")  # noqa: TRY004 - the CLI reports ValueError
    if inspect.isabstract(cls):
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        raise ValueError(
            f"{_origin(cls)} cannot be registered: it does not define {missing}; allowed: a Task "
            "subclass that defines every abstract method"
        )
    taken = REGISTRY.get(cls.name)
    if taken is not None and taken is not cls:
        raise ValueError(
            f"task name {cls.name!r} is already registered by {_origin(taken)}, so {_origin(cls)} "
            f"cannot take it; allowed: a name not in {', '.join(sorted(REGISTRY))}"
        )
    REGISTRY[cls.name] = cls
    return cls


def import_modules(names: Iterable[str]) -> None:
    """Import each module by name (``--import``), so its ``@register`` decorators run.

    A module that cannot be imported raises ``ValueError`` naming it and the error.
    """
    importlib.invalidate_caches()  # a module written since the last import attempt is found
    for name in names:
        try:
            importlib.import_module(name)
        except ValueError as err:  # e.g. a duplicate task name from register
            raise ValueError(f"--import {name}: {err}") from err
        except Exception as err:  # any import-time failure becomes one line
            raise ValueError(
                f"--import {name}: cannot import module {name!r} ({type(err).__name__}: {err}); "
                "allowed: a module importable from sys.path (set PYTHONPATH or install it)"
            ) from err


def _register_loaded(obj: Any) -> None:
    """Register what an entry point loaded: a module (already registered), a class, or a factory's result."""
    if isinstance(obj, type):
        register(obj)
    elif callable(obj):
        made = obj()
        for cls in [made] if isinstance(made, type) else (made or ()):
            register(cls)


def load_entry_points() -> None:
    """Load every ``difftrade.tasks`` entry point of the installed packages not loaded yet.

    One that fails is kept aside with one line naming the entry point, its package and the error
    (:func:`broken_plugins`), so every other task still works; it is tried again on the next call.
    """
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = f"{ep.name} = {ep.value}"
        if key in _LOADED_ENTRY_POINTS:
            continue
        try:
            _register_loaded(ep.load())
        except Exception as err:  # noqa: BLE001 - a broken plugin becomes one line naming it
            dist = f" of package {ep.dist.name}" if getattr(ep, "dist", None) is not None else ""
            _BROKEN_ENTRY_POINTS[key] = (
                f"entry point '{key}'{dist} in group {ENTRY_POINT_GROUP!r} failed to load "
                f"({type(err).__name__}: {' '.join(str(err).split())})"
            )
            continue
        _BROKEN_ENTRY_POINTS.pop(key, None)
        _LOADED_ENTRY_POINTS.add(key)


def broken_plugins() -> list[str]:
    """One line per installed entry point that failed to load at its last try."""
    return list(_BROKEN_ENTRY_POINTS.values())


def task_names() -> list[str]:
    """Every registered task name, sorted, after loading the installed plugins."""
    load_entry_points()
    return sorted(REGISTRY)


def task_options(name: str) -> dict[str, Any]:
    """Option names of a task family and their defaults."""
    cls = get_task_class(name)
    return {f.name: f.default for f in dataclasses.fields(cls) if f.init}


def get_task_class(name: str) -> type[Task]:
    """The class registered under ``name``; the installed plugins are loaded if it is not there yet."""
    if name not in REGISTRY:
        load_entry_points()
    if name not in REGISTRY:
        broken = broken_plugins()
        raise ValueError(
            f"task={name!r} is unknown{did_you_mean(name, sorted(REGISTRY))}; "
            f"allowed: {', '.join(sorted(REGISTRY))}, or a family registered by a module "
            f"(--import MODULE) or an installed package (entry-point group {ENTRY_POINT_GROUP!r})"
            + (f"; {len(broken)} plugin(s) failed to load, first: {broken[0]}" if broken else "")
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
