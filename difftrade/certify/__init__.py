"""Certificates and shift bounds next to a finished run (``difftrade bound RUN_DIR``).

For every certified member (all seeds by default):

* **PAC-Bayes certificates** (``difftrade.theory.member_certificate``) of the Gibbs predictor
  Q = N(trained weights, σ²I) (``posterior="isotropic"``, σ from a grid) or Q = N(μ, diag σ²)
  fitted by minimising the bound (``posterior="fitted"``, ``difftrade.theory.posterior``), with
  prior P = N(w₀, σ_P²I), w₀ = the member's data-free initialisation or the pretrained base it was
  fine-tuned from, or (``prior="grid"``) the grid's member of the same difficulty and seed at the
  next smaller budget n', or (``prior="prefix"``) the member's own weights after its prefix phase
  (``TrainConfig.prefix_steps``: trained on examples [0, n') only); 0-1 loss of exact match. The
  *bound set* (``bound_set``):

  - ``"train"``: the member's own n training examples (n = its budget). This is the PAC-Bayes
    generalization certificate proper: it bounds L_S(Q) from the data Q was trained on, so the
    KL/n term is what grows with difficulty and shrinks with n. L_T(Q) is then bounded by the
    change of measure below applied to the certified L_S(Q) (no further δ). With
    ``prior="grid"`` or ``"prefix"`` the bound set is the examples [n', n) that the prior never saw.
  - ``"fresh"``: n_bound new examples from split "bound" (never used for training, testing or
    choosing w₀) from S (certifies L_S(Q)) and n_bound from the target T (certifies L_T(Q)).
    Valid, but on data independent of Q a plain test-set bound on Q (KL = 0) is never looser.
* **Extrapolation band**: the measured extrapolation gap of the deterministic network with a
  certified band from the per-level held-out test sets (Clopper–Pearson per level and side,
  all 2L one-sided statements at δ/(2L): valid simultaneously for R_S and R_T).
* **Change of measure**: R_T ≤ the exact worst case over [0, 1] losses given U_S, the certified
  upper end of R_S (:func:`~difftrade.theory.change_of_measure.lp_shift_bound`), the distributions known
  exactly (nested levels: shells; exact-size levels: levels). π, the target mass no training
  example can cover, is always in it (vacuous there by construction).
* **Importance-weighted target certificate** (``bound_set="train"``, ``importance_weighted``):
  L_T(Q) from the training bound set itself. A training example drawn at level l gets the loss
  w_l·ℓ/B with w_l = t_l/s_l and B = max_l w_l over the levels S covers; its S-expectation is
  (L_T(Q) − uncovered part)/B, so the same PAC-Bayes machinery certifies it and
  L_T(Q) ≤ B·bound + π. Unlike the change of measure it sees *where* the errors fall (an error on
  a level the target weighs less costs less); the price is the factor B on the complexity term.
  A separate statement: its own δ + δ′ per member, certified from the same forward passes (the
  same weight draws) as the in-distribution certificate, so it costs almost nothing extra.

Every member of the run uses the same standard normal weight draws ε (one key, common random
numbers): generated once per chunk instead of once per member (on the CPU drawing them was most
of a certificate's time), each member's draws still independent of its own data.

Results: ``bounds.nc`` (dims difficulty, budget, seed) and ``bounds.md`` with the δ budget.

Modules: :mod:`~difftrade.certify.settings` (what to certify), :mod:`~difftrade.certify.priors`
(the prior kinds), :mod:`~difftrade.certify.losses` (the certified losses),
:mod:`~difftrade.certify.run` (the chunked, resumable certification on every device),
:mod:`~difftrade.certify.shift_fields` (the change-of-measure fields) and
:mod:`~difftrade.certify.report` (``bounds.md``; arrays only). The d*(n) analyses of
``bounds.nc`` it prints (``certified_view``, ``d_star_table``) are
:mod:`difftrade.analysis.certified`, shared with the figures. The names below are importable from
``difftrade.certify`` itself; each submodule is imported when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BoundSettings": "settings",
    "PRIORS": "priors",
    "PriorKind": "priors",
    "grid_prior_members": "priors",
    "ZeroOneLoss": "losses",
    "ZeroOneAndWeightedLoss": "losses",
    "ClippedCrossEntropy": "losses",
    "distance": "geometry",
    "retained_displacement": "geometry",
    "certify_run": "run",
    "certifiable": "run",
    "refresh_shift": "run",
    "SHIFT_BOUND": "shift_fields",
    "level_bands": "shift_fields",
    "shift_atoms": "shift_fields",
    "shift_variables": "shift_fields",
    "render": "report",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
