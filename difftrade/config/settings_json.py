"""Settings dataclasses (``BoundSettings``, ``CompressSettings``) as the JSON a result file
stores, and back: one writer (:func:`to_json`) and one reader (:func:`from_json`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, TypeVar

S = TypeVar("S")


def to_json(settings: Any) -> str:
    """Every field of a settings dataclass (nested ones included) as JSON with sorted keys."""
    return json.dumps(dataclasses.asdict(settings), sort_keys=True)


def settings_table(
    text: str | None, source: str, what: str = "a table of settings"
) -> dict[str, Any]:
    """Stored settings JSON as a dict; ``ValueError`` naming ``source`` when ``text`` is not JSON
    or not a table (``what`` says what was expected)."""
    try:
        raw = json.loads(text)  # type: ignore[arg-type]
    except (TypeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{source}: its settings are not JSON ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(raw, dict):
        raise ValueError(  # noqa: TRY004 - the CLI reports ValueError
            f"{source}: its settings are {type(raw).__name__}, not {what}"
        )
    return raw


def from_json(cls: type[S], text: str, source: str, absent: Mapping[str, Any] | None = None) -> S:
    """The ``cls`` instance :func:`to_json` wrote, validated by its constructor.

    JSON arrays become tuples and nested tables the field's own dataclass. A field the text
    lacks takes ``absent[field]`` when given there (what a file without the field means), else
    its default. ``ValueError`` naming ``source`` for text that is not such settings.
    """
    raw = settings_table(text, source, f"a table of {cls.__name__} fields")
    try:
        return _build(cls, {**(absent or {}), **raw})
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{source}: its settings are not {cls.__name__} ({' '.join(str(err).split())})"
        ) from None


def _build(cls: type[S], raw: dict[str, Any]) -> S:
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValueError(f"unknown fields {unknown}; allowed: {', '.join(sorted(fields))}")
    values = {}
    for name, value in raw.items():
        f = fields[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            value = _build(type(default), value)
        elif isinstance(value, list):
            value = tuple(value)
        values[name] = value
    return cls(**values)
