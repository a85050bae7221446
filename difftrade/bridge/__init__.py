"""Outside models: a grid's exact examples exported for an outside LLM
(:mod:`~difftrade.bridge.export`) and its answers scored back into a results grid
(:mod:`~difftrade.bridge.score`).

The names below are importable from ``difftrade.bridge`` itself; each submodule is imported
when first used."""

from __future__ import annotations

from difftrade.config.lazy import lazy_exports

_EXPORTS = {
    "score_file": "score",
    "write_jsonl": "export",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
