"""The handlers of the ``difftrade`` command, one module per concern; :mod:`difftrade.cli.main` builds
the argument parser and calls them.

:mod:`~difftrade.cli.grids` (``run``, ``pretrain``, ``demo``, ``transfer``: training grids,
and the CPU device split their processes use), :mod:`~difftrade.cli.reports` (``report``,
``merge``, ``recommend``, ``select``: reading finished results),
:mod:`~difftrade.cli.certificates` (``bound``, ``compress``) and
:mod:`~difftrade.cli.examples` (``tasks``, ``difficulty``, ``export``, ``score``: a task's
examples). A handler takes the parsed ``argparse.Namespace`` and returns the exit status; it
imports jax and the library inside its body, never at module level, so ``difftrade --help``
stays free of jax. The comma-separated option values several commands take are parsed here.
"""

from __future__ import annotations


def parse_floats(text: str, flag: str) -> tuple[float, ...]:
    """A comma-separated list of numbers, e.g. ``1e-3,3e-3``; ValueError naming ``flag`` otherwise."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(
            f"{flag}={text!r}; allowed: comma-separated numbers, e.g. 1e-3,3e-3,1e-2"
        ) from None


def parse_ints(text: str | None, flag: str) -> tuple[int, ...] | None:
    """``"0,1"`` -> ``(0, 1)``; None stays None (every value of the grid)."""
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values:
        raise ValueError(f"{flag}={text!r}; allowed: comma-separated integers, e.g. 0,1")
    return values
