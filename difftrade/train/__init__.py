"""The per-member trainer and evaluator: one compiled program trains and evaluates a chunk
of members (vmap over members, scan over steps).

:mod:`~difftrade.train.trainer` (``train_population``), :mod:`~difftrade.train.evaluate`
(``EvalConfig``, ``evaluate_population``), :mod:`~difftrade.train.subspace` and
:mod:`~difftrade.train.quantize` (training in a random subspace, quantized views),
:mod:`~difftrade.train.mesh` (the member mesh), :mod:`~difftrade.train.chunk_sizing` (members per
chunk from device memory).

The names below are importable from ``difftrade.train`` itself; each submodule is imported
when first used."""

from __future__ import annotations

from difftrade.config.lazy import lazy_exports

_EXPORTS = {
    "train_population": "trainer",
    "EvalConfig": "evaluate",
    "evaluate_population": "evaluate",
    "SubspaceConfig": "subspace",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
