"""Lazy package exports (PEP 562): a stage's ``__init__`` names its public objects without
importing the submodules that define them, so importing a stage starts nothing heavy (jax)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` that load each public name from its submodule on
    first use (PEP 562), so importing a stage runs none of its submodules: ``exports`` maps
    name -> submodule of ``package`` that defines it."""
    namespace = sys.modules[package].__dict__

    def getattr_(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return getattr_, dir_
