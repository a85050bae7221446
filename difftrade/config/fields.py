"""One validation mechanism for every config field: a table of ``Field`` specs per section.

A ``Field`` says what a config field holds: its kind (``int``, ``float``, ``str`` or ``bool``), its
range or choices, and whether it is one value or a list. Each section dataclass (``[grid]``,
``[model]``, ``[train]``, ``[eval]``, ``[run]``, ``[difficulty]``) names a spec for every one of its
fields and checks them in ``__post_init__`` with :func:`check_fields`, so a config read from TOML and
one built in code pass the same checks. Rules that tie fields together (a divisor, a multiple, the
task's levels) are written beside the table and raise through :func:`refuse`. Every refusal is one
line, ``section.field=VALUE ...; allowed: ...``.

Kinds: ``bool`` is never a number and a number is never a ``bool``; ``int`` refuses floats (``1.5``
and ``2.0`` alike) and strings, and holds int32 values (the trainer stores budgets, seeds and levels
as int32, and ``jax.random.key`` folds larger seeds onto small ones); ``float`` accepts ints and
refuses NaN and infinities. A bound is a number or the name of an earlier field of the same section
(``Field(int, 0, "steps", high_open=True)``: ``0 <= value < steps``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from collections.abc import Mapping
from typing import Any


def did_you_mean(value: str, allowed: list[str] | tuple[str, ...]) -> str:
    """' (did you mean X?)' or '' — for error messages."""
    close = difflib.get_close_matches(str(value), list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
Bound = float | str | None


@dataclasses.dataclass(frozen=True)
class Field:
    """What one config field holds.

    ``kind``: int, float, str or bool. ``low``/``high``: inclusive bounds unless ``low_open`` /
    ``high_open`` (a number, or the name of an earlier field of the section); ints always lie in
    int32. ``choices``: the strings allowed. ``many``: a list of such values (a tuple once checked),
    non-empty unless ``empty`` and distinct unless ``repeats``; for a string ``empty`` allows "".
    ``divides``: an earlier int field the value must divide.
    ``note``: said after the allowed values (what a special value means).
    """

    kind: type
    low: Bound = None
    high: Bound = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    many: bool = False
    empty: bool = False
    repeats: bool = False
    divides: str | None = None
    note: str = ""


def show(value: Any) -> str:
    """A value as an error message writes it (tuples as lists)."""
    if isinstance(value, tuple):
        value = list(value)
    return repr(value)


def refuse(section: str, name: str, value: Any, allowed: str, why: str = "") -> ValueError:
    """The one-line error ``section.name=VALUE{why}; allowed: {allowed}`` (raise it)."""
    return ValueError(
        " ".join(f"{section}.{name}={show(value)}{why}; allowed: {allowed}".splitlines())
    )


def _is_kind(value: Any, kind: type) -> bool:
    """Whether ``value`` is of ``kind``: bools are only bools, ints only ints, floats any real number."""
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, numbers.Integral)
    if kind is float:
        return isinstance(value, numbers.Real)
    return isinstance(value, kind)


def _bounds(
    spec: Field, values: Mapping[str, Any]
) -> tuple[tuple[float, str] | None, tuple[float, str] | None]:
    """(value, label) of the low and high bound; ints add the int32 limits."""

    def resolve(bound: Bound) -> tuple[float, str] | None:
        if isinstance(bound, str):
            return values[bound], f"{bound}={values[bound]}"
        return None if bound is None else (bound, str(bound))

    low, high = resolve(spec.low), resolve(spec.high)
    if spec.kind is int:
        low = low if low is not None and low[0] >= INT32_MIN else (INT32_MIN, str(INT32_MIN))
        high = high if high is not None and high[0] <= INT32_MAX else (INT32_MAX, str(INT32_MAX))
    return low, high


def _in_range(x: Any, spec: Field, values: Mapping[str, Any]) -> bool:
    """Whether one value of the field's kind lies in its range and choices."""
    if spec.choices:
        return x in spec.choices
    if spec.kind is str:
        return spec.empty or x != ""
    if spec.kind is bool:
        return True
    if spec.kind is float and not _finite(x):
        return False
    low, high = _bounds(spec, values)
    above = low is None or (x > low[0] if spec.low_open else x >= low[0])
    below = high is None or (x < high[0] if spec.high_open else x <= high[0])
    return above and below and (spec.divides is None or values[spec.divides] % x == 0)


def _finite(x: Any) -> bool:
    """Whether a real number is finite as a float (an int too large for a float is not)."""
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


def describe(spec: Field, values: Mapping[str, Any]) -> str:
    """What the field allows, in words (the part after ``allowed:``)."""
    if spec.choices:
        text = ", ".join(spec.choices)
    elif spec.kind is bool:
        text = "true or false"
    elif spec.kind is str:
        text = "strings" if spec.many else ("a string" if spec.empty else "a non-empty string")
    else:
        word = {int: ("an integer", "integers"), float: ("a finite number", "finite numbers")}[
            spec.kind
        ][spec.many]
        low, high = _bounds(spec, values)
        if low is not None and high is not None:
            text = f"{word} in {'(' if spec.low_open else '['}{low[1]}, {high[1]}{')' if spec.high_open else ']'}"
        elif low is not None:
            text = f"{word} {'>' if spec.low_open else '>='} {low[1]}"
        elif high is not None:
            text = f"{word} {'<' if spec.high_open else '<='} {high[1]}"
        else:
            text = word
        if spec.divides is not None:
            text += f" dividing {spec.divides}={values[spec.divides]}"
    if spec.many:
        text = f"a {'' if spec.empty else 'non-empty '}list of {'' if spec.repeats else 'distinct '}{text}"
    return f"{text} ({spec.note})" if spec.note else text


def check(section: str, name: str, value: Any, spec: Field, values: Mapping[str, Any]) -> Any:
    """``value`` checked against ``spec`` (a list becomes a tuple); ``ValueError`` naming the field.

    ``values``: the section's fields by name, for bounds that name another field.
    """
    allowed = lambda: describe(spec, values)  # built only for a refusal
    if spec.many:
        if not isinstance(value, (list, tuple)):
            raise refuse(section, name, value, allowed(), " is not a list")
        items = tuple(value)
        if not items and not spec.empty:
            raise refuse(section, name, value, allowed(), " is empty")
        for x in items:
            _check_one(section, name, value, x, spec, values, allowed)
        if not spec.repeats and len(set(items)) != len(items):
            raise refuse(section, name, value, allowed(), " repeats a value")
        return items
    if isinstance(value, (list, tuple, dict)):
        raise refuse(section, name, value, allowed(), " is not a single value")
    _check_one(section, name, value, value, spec, values, allowed)
    return value


def _check_one(
    section: str,
    name: str,
    value: Any,
    x: Any,
    spec: Field,
    values: Mapping[str, Any],
    allowed: Any,
) -> None:
    """Refuse (naming the whole ``value``) unless the single value ``x`` has the kind and range of ``spec``."""
    if spec.choices and isinstance(x, str) and x not in spec.choices:
        raise refuse(section, name, value, allowed(), did_you_mean(x, spec.choices))
    if not _is_kind(x, spec.kind) or not _in_range(x, spec, values):
        raise refuse(section, name, value, allowed())


def check_fields(obj: Any, section: str, table: Mapping[str, Field]) -> None:
    """Check every field of the dataclass ``obj`` against ``table`` (in table order); lists become tuples.

    A field without a spec is a programming error (``TypeError``): every config field is checked.
    """
    names = [f.name for f in dataclasses.fields(obj)]
    missing = sorted(set(names) - set(table))
    if missing:
        raise TypeError(
            f"{type(obj).__name__} fields {missing} have no entry in the [{section}] spec table"
        )
    values = {n: getattr(obj, n) for n in names}
    for name, spec in table.items():
        checked = check(section, name, values[name], spec, values)
        if checked is not values[name]:
            object.__setattr__(obj, name, checked)  # frozen dataclasses: a list stored as a tuple
            values[name] = checked
