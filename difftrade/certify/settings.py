"""What ``difftrade bound`` certifies and how: :class:`BoundSettings` (static, fixed before any
bound-set example is drawn), the :class:`~difftrade.theory.certificate_types.CertificateConfig`
it implies, and the settings a ``bounds.nc`` stores (:func:`stored_settings`)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np

from difftrade.config import settings_json
from difftrade.theory.certificate_types import CertificateConfig
from difftrade.theory.posterior import FitConfig


@dataclasses.dataclass(frozen=True)
class BoundSettings:
    """What to certify and how (static; fixed before any bound-set example is drawn)."""

    n_bound: int = 4096
    num_draws: int = 1  # per example and σ ("per_example"), or on the whole set ("whole_set")
    monte_carlo: Literal["per_example", "whole_set"] = "per_example"
    sigmas: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
    prior_sigmas: tuple[float, ...] | None = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    delta: float = 0.025
    delta_prime: float = 0.025
    delta_lower: float = (
        0.025  # the lower ends of the certificates (their two-sided intervals) pay this too
    )
    delta_heldout: float = 0.05
    seeds: tuple[int, ...] | None = None  # None: every seed
    budgets: tuple[int, ...] | None = None  # None: every budget
    member_chunk: int = 16
    bound_set: Literal["fresh", "train"] = "fresh"
    posterior: Literal["isotropic", "fitted"] = "isotropic"
    # prior centre: "init" = the member's data-free initialisation (or the fine-tuning base);
    # "grid" = the run's own member of the same difficulty and seed at the next smaller budget
    # n' (trained on training examples [0, n') only), with bound set the other n - n' examples
    # [n', n) of the member's training set (bound_set="train" only); "prefix" = the member's own
    # weights after its prefix phase (runs with train.prefix_steps > 0), trained on [0, n') only,
    # n' = prefix_budget(n), with the same bound set [n', n)
    prior: str = "init"  # a key of difftrade.certify.priors.PRIORS
    fit: FitConfig = dataclasses.field(
        default_factory=FitConfig
    )  # posterior="fitted": fitted on the in-distribution bound set
    # σ_P grid when fitted: (low, high, count) geometric. Fine on purpose: most fitted σᵢ sit at
    # σ_P, so a grid step of ratio r costs ~½(r²−1−ln r²) nats on *every* parameter (a 3x grid:
    # ~0.65 nats x 10⁵ parameters), while 1,000 values cost only ln 1000 = 6.9 nats.
    fitted_prior_grid: tuple[float, float, int] = (1e-4, 1.0, 1000)
    surrogate_p_min: float = (
        1e-4  # fit surrogate: answer cross-entropy clipped at ln(1/p_min), over it
    )
    # bound_set="train": also certify L_T(Q) by importance weighting the training bound set (a
    # second certificate from the same forward passes)
    importance_weighted: bool = False
    # its (σ, σ_P): "own" = chosen for the weighted certificate itself (the tightest); "shared" =
    # the in-distribution certificate's, so both certify the same Q (valid: every grid point is paid)
    iw_selection: Literal["own", "shared"] = "own"

    def __post_init__(self) -> None:
        # imported here: reading stored settings (the report, plots) needs no certifier
        from difftrade.certify.priors import PRIORS

        for name, allowed in (
            ("bound_set", ("fresh", "train")),
            ("posterior", ("isotropic", "fitted")),
            ("prior", tuple(PRIORS)),
            ("monte_carlo", ("per_example", "whole_set")),
            ("iw_selection", ("own", "shared")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} is unknown; allowed: {', '.join(map(repr, allowed))}"
                )
        for name in ("n_bound", "num_draws", "member_chunk"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}; allowed: an integer >= 1")
        if self.iw_selection == "shared" and not self.importance_weighted:
            raise ValueError(
                "iw_selection='shared' needs importance_weighted=True (it picks that certificate's σ, σ_P)"
            )
        if self.importance_weighted and self.bound_set != "train":
            raise ValueError(
                f"importance_weighted=True needs bound_set='train' (with a fresh target bound set L_T(Q) is "
                f"certified directly), got bound_set={self.bound_set!r}"
            )
        if PRIORS[self.prior].trained_on_train_set and self.bound_set != "train":
            raise ValueError(
                f"prior={self.prior!r} needs bound_set='train' (the training examples its prior never saw), "
                f"got bound_set={self.bound_set!r}"
            )
        if not 0 < self.surrogate_p_min < 1:
            raise ValueError(
                f"surrogate_p_min={self.surrogate_p_min!r}; allowed: a float in (0, 1)"
            )
        self.certificate_config()  # checks the σ and σ_P grids before any work

    @property
    def fitted_prior_sigmas(self) -> tuple[float, ...]:
        low, high, count = self.fitted_prior_grid
        return tuple(float(x) for x in np.geomspace(low, high, int(count)))

    def certificate_config(self) -> CertificateConfig:
        fitted = self.posterior == "fitted"  # σ is then per parameter: the grid only scales it by 1
        return CertificateConfig(
            sigmas=(1.0,) if fitted else self.sigmas,
            prior_sigmas=self.fitted_prior_sigmas if fitted else self.prior_sigmas,
            num_draws=self.num_draws,
            monte_carlo=self.monte_carlo,
            delta=self.delta,
            delta_prime=self.delta_prime,
            delta_lower=self.delta_lower,
            delta_heldout=self.delta_heldout,
            selection="bound",
        )


# What a field absent from a stored bounds.nc means, where that is not its default: files without
# ``monte_carlo`` drew their weights on the whole bound set.
ABSENT_MEANS = {"monte_carlo": "whole_set"}


def stored_settings(b: Any) -> BoundSettings:
    """The :class:`BoundSettings` a bounds Dataset ``b`` was certified with (its ``settings``
    attribute; absent fields read by :data:`ABSENT_MEANS`, else their defaults)."""
    source = b.encoding.get("source", "bounds.nc")
    return settings_json.from_json(BoundSettings, b.attrs.get("settings"), source, ABSENT_MEANS)
