"""Recommend a training-difficulty distribution for a data budget, and check the recommender
out of sample.

``recommend(results, n)`` answers: *for a budget of n examples, which training distribution
should I use, and how sure is that?*

* **Measured surface** (budgets inside the measured range). For each training difficulty ``d``
  the seed-mean target risk ``R(d, n)`` is interpolated linearly in ``log n`` between the two
  measured budgets that bracket ``n`` (exact at a measured budget); the recommendation is
  ``argmin_d R(d, n)`` (ties to the easiest difficulty). Uncertainty comes from a seed bootstrap:
  one resample draws ``S`` seeds with replacement and uses them for every (difficulty, budget)
  cell; the *plausible set* is every difficulty chosen in at least ``min_share`` of the
  resamples, and the *expected loss* is the mean over resamples of
  ``R_b(recommended) - min_d R_b(d)`` (how much target risk the recommendation gives up
  against the best difficulty of that resample).
* **Closed-form model** (always reported, and the answer outside the measured range). The
  families of :mod:`difftrade.theory.tradeoff_families` are fitted to the seed-mean target risk and
  ranked by AIC; the best one's ``d*(n)`` (clipped to the measured difficulties) is rounded
  to the nearest measured difficulty. The spread of ``d*(n)`` across families is reported as
  model uncertainty. Outside the measured budget range this is an extrapolation: an
  :class:`ExtrapolationWarning` is issued, or a ``ValueError`` with
  ``allow_extrapolation=False``.

The recommended *distribution* is the training distribution of the recommended grid row,
``train_weights[difficulty, level]`` (a one-hot vector for point training, a mixture for
``train_distribution = "mixture"``).

``validate_leave_one_budget_out(results)`` drops each measured budget in turn, predicts its d*
from the remaining budgets (interpolated surface, closed-form model, and the combination
``recommend`` uses) and compares with the measured d*: error in levels and target-risk regret.

Modules: :mod:`~difftrade.recommender.measured` (the measured surface and its log-n
interpolation), :mod:`~difftrade.recommender.choose` (:func:`recommend`: input checks, the
closed-form models, the measured choice and its seed bootstrap),
:mod:`~difftrade.recommender.recommendation` (:class:`Recommendation`, its dict and text forms)
and :mod:`~difftrade.recommender.validation` (:func:`validate_leave_one_budget_out`). The names
below are importable from ``difftrade.recommender`` itself.
"""

from difftrade.recommender.choose import (
    METHODS,
    ExtrapolationWarning,
    check_budget,
    fit_models,
    recommend,
)
from difftrade.recommender.measured import Surface, interpolate, surface
from difftrade.recommender.recommendation import ModelPrediction, Recommendation
from difftrade.recommender.validation import (
    PREDICTORS,
    LeaveOneOut,
    validate_leave_one_budget_out,
)

__all__ = [
    "METHODS",
    "PREDICTORS",
    "ExtrapolationWarning",
    "LeaveOneOut",
    "ModelPrediction",
    "Recommendation",
    "Surface",
    "check_budget",
    "fit_models",
    "interpolate",
    "recommend",
    "surface",
    "validate_leave_one_budget_out",
]
