"""The compiled population programs of this process, and where a running program reports.

:class:`Programs`: one jitted program per (kind, static key), built once, with how often each
kind was traced (every compilation follows a trace; run summaries record the count).
:class:`SegmentChannel`: where a running trainer reports each finished checkpoint segment (a
host callback compiled into the program); a progress bar listens inside
``with SEGMENTS.listening(fn):``. Neither changes what a program computes.

``PROGRAMS`` and ``SEGMENTS`` are this process's: a compiled program keeps the callback it was
traced with, so the channel it reports to lives as long as the programs do.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


class Programs:
    """Compiled programs by ``(kind, key)``; ``key`` holds everything static that changes the
    traced program (configs, view, mesh)."""

    def __init__(self) -> None:
        self._built: dict[tuple[str, Any], Callable[..., Any]] = {}
        self._traces: collections.Counter[str] = collections.Counter()

    def get(
        self, kind: str, key: Any, build: Callable[[Callable[[], None]], Callable[..., Any]]
    ) -> Callable[..., Any]:
        """The program of ``kind`` for ``key``; the first time, ``build(traced)`` makes it, and
        the program calls ``traced()`` while it is traced (so each trace is counted)."""
        if (kind, key) not in self._built:
            self._built[(kind, key)] = build(lambda: self._traces.update((kind,)))
        return self._built[(kind, key)]

    def traces(self) -> collections.Counter[str]:
        """How often each kind was traced in this process (a copy)."""
        return self._traces.copy()

    def clear(self) -> None:
        """Forget every program, as a new process would start (the trace counts stay)."""
        self._built.clear()


class SegmentChannel:
    """Listeners of finished checkpoint segments: each is called with the number of
    member-segments (one segment of one member) that just finished. Calls arrive unordered,
    from every device."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[int], None]] = []

    def report(self, nonfinite: np.ndarray) -> None:
        """The host callback at the end of a segment; ``nonfinite`` has one value per member."""
        for listener in tuple(self._listeners):  # a copy: a run may stop listening meanwhile
            listener(int(np.size(nonfinite)))

    @contextlib.contextmanager
    def listening(self, listener: Callable[[int], None]) -> Iterator[None]:
        """``listener`` hears every segment finished inside the block."""
        self._listeners.append(listener)
        try:
            yield
        finally:
            self._listeners.remove(listener)

    @property
    def listeners(self) -> int:
        """How many listen now."""
        return len(self._listeners)


PROGRAMS = Programs()
SEGMENTS = SegmentChannel()
