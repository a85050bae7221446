"""Configuration: what a run is, described, validated and stored; importable without jax.

:mod:`~difftrade.config.run_config` (``RunConfig``; ``load``, ``from_dict`` and the stored-config
readers, each given a :class:`~difftrade.config.task_catalog.TaskCatalog`:
:mod:`difftrade.tasks.configs` passes the registered families),
:mod:`~difftrade.config.sections` (``[grid]``, ``[run]``, ``[difficulty]``, ``[eval]``,
``[subspace]``), :mod:`~difftrade.config.model_config` (``[model]``),
:mod:`~difftrade.config.train_config` (``[train]``, the member population),
:mod:`~difftrade.config.level_weights` (difficulty distributions over a range of levels),
:mod:`~difftrade.config.task_catalog` (what validation asks of a task family),
:mod:`~difftrade.config.fields` (field validation), :mod:`~difftrade.config.files` (TOML and
``config.json`` read before jax starts), :mod:`~difftrade.config.settings_json` (stored bound and
compress settings), :mod:`~difftrade.config.logs` (the package-wide ``"difftrade"`` logger and
its stderr handler), :mod:`~difftrade.config.lazy` (the stages' lazy exports); ``presets/``
holds the configs shipped with the package.

The names below are importable from ``difftrade.config`` itself; each submodule is imported
when first used."""

from __future__ import annotations

from difftrade.config.lazy import lazy_exports

_EXPORTS = {
    "RunConfig": "run_config",
    "ModelConfig": "model_config",
    "EvalConfig": "sections",
    "SubspaceConfig": "sections",
    "GridConfig": "sections",
    "RunSettings": "sections",
    "DifficultySettings": "sections",
    "TaskCatalog": "task_catalog",
    "TaskFacts": "task_catalog",
    "TrainConfig": "train_config",
    "Population": "train_config",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
