"""A progress line for long computations over a population's members: what stage it is in, how
many members are done, the elapsed time, and an ETA timed from measured work only."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable


class Progress:
    """Progress on stderr: a line redrawn in place on a terminal, plain lines (at most one per
    ``LOG_EVERY`` seconds, and one per chunk) otherwise.

    It moves within a chunk through :data:`difftrade.train.programs.SEGMENTS`
    (``segment``), and by whole members per chunk (``update``). Until the first segment or chunk
    of this session finishes, the stage is ``compiling`` and there is no ETA: the rate is timed
    from that first report on, so compilation never inflates the ETA. While running (``start``
    to ``close``) a background ticker redraws the line, so the elapsed time keeps moving through
    evaluation and writes. ``stage(name)`` names what runs now (e.g. ``writing results``).
    """

    LOG_EVERY = 30.0
    REDRAW_EVERY = 0.5

    def __init__(
        self,
        total_members: int,
        enabled: bool = True,
        segments_per_member: int = 1,
        verb: str = "training",
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.done, self.enabled, self.clock = total_members, 0.0, enabled, clock
        self.start_time = clock()
        self.per_member, self.partial, self.chunk, self.shown = segments_per_member, 0, 0, -1e18
        self.verb, self.current = verb, "compiling"
        self.first: tuple[float, float] | None = None  # (time, done) of the first measured report
        self.last_done = 0.0  # the count last shown
        self.tty = sys.stderr.isatty()
        self.lock = threading.Lock()
        self.ticker: threading.Thread | None = None
        self.stopped = threading.Event()

    # ---- reports from the computation --------------------------------------------------------
    def begin_chunk(self, members: int) -> None:
        """A chunk of ``members`` starts (its padding copies are not counted)."""
        self.chunk, self.partial = members, 0

    def segment(self, count: int) -> None:
        """``count`` member-segments finished inside the running chunk (a host callback)."""
        self.partial += count
        self._measured(self._now_done())
        if self.clock() - self.shown >= self._every():
            self._show(self._now_done(), "")

    def update(self, members: int, note: str = "") -> None:
        """``members`` finished: a chunk, or (before any chunk ran) members found on disk."""
        running = self.chunk > 0
        self.done += members
        self.partial = self.chunk = 0
        if running:
            self._measured(self.done)
        self._show(self.done, note)

    def stage(self, name: str) -> None:
        """Name the stage that runs now (shown until the next one)."""
        self.current = name
        self._show(self._now_done(), "")

    # ---- ticker ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background ticker (a no-op when disabled or already started)."""
        if self.enabled and self.ticker is None:
            self.ticker = threading.Thread(
                target=self._tick, daemon=True, name="difftrade-progress"
            )
            self.ticker.start()

    def close(self) -> None:
        """Stop the ticker and end the line on a terminal (it keeps its last state)."""
        self.stopped.set()
        if self.ticker is not None:
            self.ticker.join(timeout=5)
            self.ticker = None
        if self.enabled and self.tty and self.shown > -1e18:
            sys.stderr.write("\n")
            sys.stderr.flush()

    def _tick(self) -> None:
        while not self.stopped.wait(max(self._every(), self.REDRAW_EVERY)):
            self._show(self._now_done(), "")

    # ---- the line --------------------------------------------------------------------------
    def _every(self) -> float:
        return self.REDRAW_EVERY if self.tty else self.LOG_EVERY

    def _now_done(self) -> float:
        return self.done + min(self.chunk, self.partial / self.per_member)

    def _measured(self, done: float) -> None:
        """The first measured report starts the clock of the rate and ends the compiling stage."""
        if self.first is None:
            self.first = (self.clock(), done)
            if self.current == "compiling":
                self.current = self.verb

    def eta(self, done: float) -> float | None:
        """Seconds left at the rate measured since the first report, None before it is known."""
        if self.first is None or done <= self.first[1]:
            return None
        rate = (self.clock() - self.first[0]) / (done - self.first[1])
        return rate * (self.total - done)

    def line(self, done: float, note: str = "") -> str:
        """The progress line for ``done`` members."""
        elapsed = self.clock() - self.start_time
        eta = self.eta(done)
        bar = "#" * int(30 * done / max(self.total, 1))
        eta_text = "    ?" if eta is None else f"{eta:5.0f}s"
        return (
            f"[{bar:<30}] {done:.0f}/{self.total} members  {self.current}  {elapsed:6.0f}s elapsed  "
            f"ETA {eta_text} {note}"
        ).rstrip()

    def _show(self, done: float, note: str) -> None:
        if not self.enabled:
            return
        with self.lock:  # the ticker may read a count between two updates: never show less
            done = self.last_done = max(done, self.last_done)
            self.shown = self.clock()
            text = self.line(done, note)
            sys.stderr.write("\r" + text + "   " if self.tty else text + "\n")
            sys.stderr.flush()
