"""A progress line with rate and ETA for long computations over a population's members."""

from __future__ import annotations

import sys
import time


class Progress:
    """Progress with ETA on stderr: a line redrawn in place on a terminal, plain lines (at most one
    per ``LOG_EVERY`` seconds, and one per chunk) otherwise. It moves within a chunk through
    :data:`difftrade.train.trainer.SEGMENT_LISTENERS` (``segment``), and by whole members per chunk (``update``)."""

    LOG_EVERY = 30.0
    REDRAW_EVERY = 0.5

    def __init__(self, total_members: int, enabled: bool = True, segments_per_member: int = 1):
        self.total, self.done, self.enabled, self.start = total_members, 0, enabled, time.time()
        self.per_member, self.partial, self.chunk, self.shown = segments_per_member, 0, 0, 0.0
        self.tty = sys.stderr.isatty()

    def begin_chunk(self, members: int) -> None:
        """A chunk of ``members`` starts (its padding copies are not counted)."""
        self.chunk, self.partial = members, 0

    def segment(self, count: int) -> None:
        """``count`` member-segments finished inside the running chunk (a host callback)."""
        self.partial += count
        now = time.time()
        if now - self.shown >= (self.REDRAW_EVERY if self.tty else self.LOG_EVERY):
            self._show(self.done + min(self.chunk, self.partial / self.per_member), "")

    def update(self, members: int, note: str = "") -> None:
        """A chunk of ``members`` finished."""
        self.done += members
        self.partial = self.chunk = 0
        self._show(self.done, note)

    def _show(self, done: float, note: str) -> None:
        if not self.enabled:
            return
        self.shown = time.time()
        elapsed = self.shown - self.start
        eta = (
            f"{elapsed / done * (self.total - done):5.0f}s" if done else "    ?"
        )  # unknown before any progress
        bar = "#" * int(30 * done / self.total)
        line = f"[{bar:<30}] {done:.0f}/{self.total} members  {elapsed:6.0f}s elapsed  ETA {eta} {note}".rstrip()
        end = "\n" if not self.tty or done >= self.total else ""
        sys.stderr.write(("\r" + line + "   " if self.tty else line) + end)
        sys.stderr.flush()
