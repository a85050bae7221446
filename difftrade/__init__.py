"""difftrade: data difficulty vs data budget in fine-tuning.

Synthetic tasks with a tunable difficulty (``difftrade.tasks``), vmapped grids of small
transformers (``difftrade.train``), measured gaps and d*(n) (``difftrade.evaluate``), PAC-Bayes
certificates and shift bounds (``difftrade.theory``), figures (``difftrade.plots``) and a
difficulty recommendation for a budget (``recommend``, ``select``); a run's saved member weights
read on their own (``load_weights``).

The names below load on first use, so ``import difftrade`` (and ``difftrade --help``) does not
start jax.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from difftrade.pool import select
    from difftrade.recommender import Recommendation, recommend, validate_leave_one_budget_out
    from difftrade.tasks import make_task
    from difftrade.weights_format import load_weights

__version__ = "0.1.0"
__all__ = ["Recommendation", "__version__", "load_weights", "make_task", "recommend", "select", "validate_leave_one_budget_out"]
_HOME = {"select": "difftrade.pool", "Recommendation": "difftrade.recommender", "recommend": "difftrade.recommender",
         "validate_leave_one_budget_out": "difftrade.recommender", "make_task": "difftrade.tasks",
         "load_weights": "difftrade.weights_format"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'difftrade' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value
