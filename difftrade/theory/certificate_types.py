"""The static settings and the result of a PAC-Bayes certificate.

:class:`CertificateConfig` holds everything fixed before the bound set is seen (the posterior σ
and prior σ_P grids, the Monte-Carlo draws, every δ, how σ is selected); it is validated on
construction and hashable, so it can be a jit-static argument. :class:`Certificate` is one
member's result, a pytree of float64 bounds and estimates. The recipe that fills one in, whose
module docstring the "step" numbers below refer to, is :mod:`difftrade.theory.member_certificate`;
``PyTree`` and ``LossFn`` are the types its entry points take.

Shapes: every ``Certificate`` field is a float64 scalar per member (``mc_risk_estimates`` [K],
``bound_grid`` and ``kl_grid`` [K, K_P]); under ``jax.vmap`` /
:func:`~difftrade.theory.population_certificate.certify_population` they gain a leading member
axis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import numpy as np

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]


@dataclasses.dataclass(frozen=True)
class CertificateConfig:
    """Static settings of a certificate, fixed before seeing the bound set. Hashable (jit-static).

    Attributes:
      sigmas: posterior σ grid, K > 0 values (ln K is paid).
      prior_sigmas: prior σ_P grid (K_P values, ln K_P paid), or None for σ_P = σ (tied).
      num_draws: Monte-Carlo weight draws per σ: r per example (``monte_carlo="per_example"``)
        or m, each on the whole bound set (``"whole_set"``).
      monte_carlo: "per_example" or "whole_set" (module docstring, step 3).
      delta: confidence spent on the PAC-Bayes kl bound (split over the K·K_P grid).
      delta_prime: confidence spent on sample convergence (split over the K posterior σ).
      delta_lower: confidence spent on the lower side of sample convergence (split over the K
        posterior σ); only the two-sided statement ``lower_bound ≤ L(Q) ≤ bound`` pays it.
      delta_heldout: confidence of the deterministic network's two-sided interval (a separate
        statement; :func:`format_budget` also prints the all-statements union).
      selection: "flatness" (largest σ with MC risk ≤ deterministic risk + tolerance; σ_P then
        minimises the bound) or "bound" (the (σ, σ_P) pair minimising the certified bound).
        Ties (typically: all vacuous at 1) go to the smallest KL. "shared", only for a later
        config of a joint call (:func:`certify`): the (σ, σ_P) the first config chose, so both
        columns certify the same Q (valid: every grid point is paid for).
      flatness_tolerance: tolerance of the flatness search, in risk units.
      xi: "relaxed" (ln 2√n, the usual recipe) or "exact" (Maurer's ξ(n), slightly tighter).
      binary_loss: the loss is 0-1, so the deterministic interval is Clopper–Pearson; else kl.
      map_batch_size: evaluations run through ``jax.lax.map`` with this batch size: draws×σ
        ("whole_set"; None: one at a time) or examples×draws, each on the whole σ grid
        ("per_example"; None: as many as fit ~2^26 perturbed parameters). Larger trades memory
        for speed; the numbers do not depend on it.
    """

    sigmas: tuple[float, ...]
    prior_sigmas: tuple[float, ...] | None = None
    num_draws: int = 100
    monte_carlo: Literal["per_example", "whole_set"] = "per_example"
    delta: float = 0.025
    delta_prime: float = 0.025
    delta_lower: float = 0.025
    delta_heldout: float = 0.05
    selection: Literal["flatness", "bound", "shared"] = "flatness"
    flatness_tolerance: float = 0.05
    xi: Literal["relaxed", "exact"] = "relaxed"
    binary_loss: bool = True
    map_batch_size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigmas", _grid("sigmas", self.sigmas))
        if self.prior_sigmas is not None:
            object.__setattr__(self, "prior_sigmas", _grid("prior_sigmas", self.prior_sigmas))
        if (
            isinstance(self.num_draws, bool)
            or not isinstance(self.num_draws, (int, np.integer))
            or self.num_draws < 1
        ):
            raise ValueError(
                f"num_draws={self.num_draws!r} is not allowed; allowed: an integer >= 1"
            )
        for name in ("delta", "delta_prime", "delta_lower", "delta_heldout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise ValueError(f"{name}={value!r} is out of range; allowed: a float in (0, 1)")
        if not self.delta + self.delta_prime + self.delta_lower < 1.0:
            raise ValueError(
                f"delta + delta_prime + delta_lower = {self.delta + self.delta_prime + self.delta_lower!r}; "
                "allowed: a sum below 1"
            )
        if self.selection not in ("flatness", "bound", "shared"):
            raise ValueError(
                f"selection={self.selection!r} is unknown; allowed: 'flatness', 'bound', 'shared'"
            )
        if (
            not isinstance(self.flatness_tolerance, (int, float))
            or not self.flatness_tolerance >= 0
        ):
            raise ValueError(
                f"flatness_tolerance={self.flatness_tolerance!r}; allowed: a float >= 0"
            )
        if self.monte_carlo not in ("per_example", "whole_set"):
            raise ValueError(
                f"monte_carlo={self.monte_carlo!r} is unknown; allowed: 'per_example', 'whole_set'"
            )
        if self.xi not in ("relaxed", "exact"):
            raise ValueError(f"xi={self.xi!r} is unknown; allowed: 'relaxed' (2√n) or 'exact'")
        mbs = self.map_batch_size
        if mbs is not None and (
            isinstance(mbs, bool) or not isinstance(mbs, (int, np.integer)) or mbs < 1
        ):
            raise ValueError(
                f"map_batch_size={mbs!r} is not allowed; allowed: None or an integer >= 1"
            )

    @property
    def num_sigmas(self) -> int:
        """K, the size of the posterior σ grid."""
        return len(self.sigmas)

    @property
    def num_prior_sigmas(self) -> int:
        """K_P, the size of the prior σ_P grid (1 when tied to σ)."""
        return 1 if self.prior_sigmas is None else len(self.prior_sigmas)

    @property
    def num_grid_points(self) -> int:
        """K·K_P, the number of (σ, σ_P) candidates paid for in the kl bound."""
        return self.num_sigmas * self.num_prior_sigmas


def _grid(name: str, values) -> tuple[float, ...]:
    arr = np.asarray(values, dtype=np.float64).reshape(-1) if np.ndim(values) <= 1 else None
    if arr is None or arr.size == 0:
        raise ValueError(
            f"{name}={values!r} is not allowed; allowed: a non-empty 1-D sequence of floats"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(
            f"{name}={arr.tolist()!r} has a non-positive or non-finite entry; allowed: values > 0"
        )
    if np.unique(arr).size != arr.size:
        raise ValueError(f"{name}={arr.tolist()!r} has repeated values; allowed: distinct values")
    return tuple(float(x) for x in arr)


class Certificate(NamedTuple):
    """Per-member certificate (a pytree of float64 arrays; leading member axis under vmap).

    ``mc_risk_estimate`` and ``mc_risk_estimates`` are *estimates*; ``sample_convergence_bound``,
    ``bound`` and the interval ends are bounds at the stated confidences.
    """

    num_examples: jax.Array  # n, size of the bound set
    deterministic_risk: jax.Array  # L̂(μ) on the bound set (an estimate of the network's risk)
    deterministic_lower: jax.Array  # two-sided interval for the network's risk at 1 − delta_heldout
    deterministic_upper: jax.Array
    mc_risk_estimates: jax.Array  # [K] Monte-Carlo estimates of L̂(Q_σ) per grid σ (ESTIMATES)
    mc_risk_estimate: jax.Array  # at the chosen σ (an ESTIMATE)
    sample_convergence_bound: jax.Array  # Û ≥ L̂(Q) at the chosen σ (δ′/K per σ)
    kl: jax.Array  # KL(Q‖P) at the chosen (σ, σ_P)
    sigma: jax.Array  # chosen posterior σ
    prior_sigma: jax.Array  # chosen prior σ_P
    bound: jax.Array  # certified upper bound on L(Q), confidence 1 − δ − δ′
    confidence: jax.Array  # 1 − δ − δ′
    kl_grid: jax.Array  # [K, K_P]
    bound_grid: (
        jax.Array
    )  # [K, K_P] certified bound at every candidate (each already paid ln K·K_P)
    valid: jax.Array  # bool: all losses finite and in [0, 1]
    sample_convergence_lower: jax.Array  # Ľ ≤ L̂(Q) at the chosen σ (δ_low/K per σ)
    lower_bound: (
        jax.Array
    )  # certified lower bound on L(Q): lower_bound ≤ L(Q) ≤ bound at interval_confidence
    interval_confidence: jax.Array  # 1 − δ − δ′ − δ_low
