"""The transformer, its GPU kernels and pretrained base checkpoints.

:mod:`~difftrade.model.transformer` (``ModelConfig``, ``init_params``, ``apply``),
:mod:`~difftrade.model.kernels` (fused Triton/Pallas kernels), :mod:`~difftrade.model.checkpoint`
(``save_base``, ``load_base``).

The names below are importable from ``difftrade.model`` itself; each submodule is imported
when first used."""

from __future__ import annotations

from difftrade.config.lazy import lazy_exports

_EXPORTS = {
    "ModelConfig": "transformer",
    "init_params": "transformer",
    "apply": "transformer",
    "load_base": "checkpoint",
    "save_base": "checkpoint",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
