"""Configuration: what a run is, described, validated and stored; importable without jax.

:mod:`~difftrade.config.run_config` (``RunConfig``, ``load``: a TOML file or a packaged preset
name), :mod:`~difftrade.config.sections` (``[grid]``, ``[run]``, ``[difficulty]``),
:mod:`~difftrade.config.train_config` (``[train]``), :mod:`~difftrade.config.fields` (field
validation), :mod:`~difftrade.config.files` (TOML and ``config.json`` read before jax starts),
:mod:`~difftrade.config.settings_json` (stored bound and compress settings),
:mod:`~difftrade.config.logs` (the package-wide ``"difftrade"`` logger and its stderr handler);
``presets/`` holds the configs shipped with the package.

The names below are importable from ``difftrade.config`` itself; each submodule is imported
when first used."""

from __future__ import annotations

from difftrade import lazy_exports

_EXPORTS = {
    "RunConfig": "run_config",
    "load": "run_config",
    "from_dict": "run_config",
    "stored": "run_config",
    "from_json": "run_config",
    "from_stored": "run_config",
    "TrainConfig": "train_config",
    "Population": "train_config",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
