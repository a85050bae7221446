"""Status lines of long computations: the ``"difftrade"`` logger.

It is set up here, in the lowest non-math stage (importable without jax), so that any stage may
log through it: checkpoints, chunk files, run directories, compression.

Library code logs progress at INFO (only when the call was given ``progress=True``) and
recoverable problems (a damaged chunk discarded, a temporary file removed) at WARNING. Out of the
box the logger writes bare lines to the current ``sys.stderr`` and does not pass records on to
the root logger. To send them elsewhere, configure it as any logger, e.g.::

    import logging
    lg = logging.getLogger("difftrade")
    lg.handlers.clear(); lg.propagate = True   # records now go to your root logger's handlers
    lg.setLevel(logging.WARNING)               # or: problems only, no progress lines
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("difftrade")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (so redirections and test
    capture see it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


if not log.handlers:
    log.addHandler(_StderrHandler())
    log.setLevel(logging.INFO)
    log.propagate = False
