"""difftrade: data difficulty vs data budget in fine-tuning.

Synthetic tasks with a tunable difficulty (``difftrade.tasks``), vmapped grids of small
transformers (``difftrade.train.trainer``), measured gaps and d*(n) (``difftrade.train.evaluate``), PAC-Bayes
certificates and shift bounds (``difftrade.theory``), figures (``difftrade.analysis.plots``) and a
difficulty recommendation for a budget (``recommend``, ``select``); a run's saved member weights
read on their own (``load_weights``).

The names below load on first use, so ``import difftrade`` (and ``difftrade --help``) does not
start jax.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from difftrade.analysis.optimum import d_star
    from difftrade.bridge.score import score_answer
    from difftrade.certify.compress import compress_run
    from difftrade.certify.run import certify_run
    from difftrade.recommender import Recommendation, recommend, validate_leave_one_budget_out
    from difftrade.recommender.pool import select
    from difftrade.results.weights_format import load_weights
    from difftrade.runner.experiment import run
    from difftrade.tasks import make_task
    from difftrade.tasks.configs import load

__version__ = "0.1.0"
__all__ = [
    "Recommendation",
    "__version__",
    "certify_run",
    "compress_run",
    "d_star",
    "load",
    "load_weights",
    "make_task",
    "recommend",
    "run",
    "score_answer",
    "select",
    "validate_leave_one_budget_out",
]
_HOME = {
    "load": "difftrade.tasks.configs",  # a TOML config, or a packaged one by name ("quick")
    "run": "difftrade.runner.experiment",  # train and evaluate a whole grid into a run directory
    "d_star": "difftrade.analysis.optimum",  # d*(n) from a [D, N, S] risk grid
    "recommend": "difftrade.recommender",
    "Recommendation": "difftrade.recommender",
    "validate_leave_one_budget_out": "difftrade.recommender",
    "select": "difftrade.recommender.pool",
    "certify_run": "difftrade.certify.run",  # PAC-Bayes certificates of a finished run
    "compress_run": "difftrade.certify.compress",  # compression certificates of a [subspace] run
    "make_task": "difftrade.tasks",
    "load_weights": "difftrade.results.weights_format",
    "score_answer": "difftrade.bridge.score",  # a per-example reward for an outside model's answer
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'difftrade' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names and the lazily loaded ones (tab completion, ``dir(difftrade)``)."""
    return sorted({*globals(), *_HOME})
