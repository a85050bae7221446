"""The results of a grid as labelled arrays and the files that hold them.

:mod:`~difftrade.results.schema` (``load``: a run directory or ``results.nc``; atomic writers),
:mod:`~difftrade.results.assembly` (per-member metrics into the ``Dataset``),
:mod:`~difftrade.results.weights_format` (member weights on disk, ``load_weights``),
:mod:`~difftrade.results.provenance` (versions and devices), :mod:`~difftrade.results.divergence`
(diverged members named and masked).

The names below are importable from ``difftrade.results`` itself; each submodule is imported
when first used."""

from __future__ import annotations

from difftrade.config.lazy import lazy_exports

_EXPORTS = {
    "load": "schema",
    "load_weights": "weights_format",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
