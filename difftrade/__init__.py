"""difftrade: data difficulty vs data budget in fine-tuning.

Synthetic tasks with a tunable difficulty (``difftrade.tasks``), vmapped grids of small
transformers (``difftrade.train``), measured gaps and d*(n) (``difftrade.evaluate``), PAC-Bayes
certificates and shift bounds (``difftrade.theory``), figures (``difftrade.plots``) and a
difficulty recommendation for a budget (``recommend``, ``select``).
"""

from difftrade.pool import select
from difftrade.recommender import Recommendation, recommend, validate_leave_one_budget_out
from difftrade.tasks import make_task

__version__ = "0.1.0"
__all__ = ["Recommendation", "__version__", "make_task", "recommend", "select", "validate_leave_one_budget_out"]
