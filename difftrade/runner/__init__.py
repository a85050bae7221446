"""Running a grid: the chunk loop, the run directory, resume, locks, multi-host, progress,
merging finished runs.

:mod:`~difftrade.runner.experiment` (``run``: a whole grid), :mod:`~difftrade.runner.population`
(chunk plans, stored chunks, resume by member id), :mod:`~difftrade.runner.chunks` (a run's chunk
files), :mod:`~difftrade.runner.rundir` (``config.json``, sessions, ``DirLock``),
:mod:`~difftrade.runner.multihost`, :mod:`~difftrade.runner.progress`,
:mod:`~difftrade.runner.merge` (runs that differ in one axis). Status lines go to the
``"difftrade"`` logger of :mod:`~difftrade.config.logs`.

The names below are importable from ``difftrade.runner`` itself; each submodule is imported
when first used."""

from __future__ import annotations

from difftrade.config.lazy import lazy_exports

_EXPORTS = {
    "run": "experiment",
    "load_run": "rundir",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
