"""What :func:`~difftrade.recommender.recommend` returns, and how it reads.

:class:`Recommendation`: the training distribution for a budget and how sure it is, as plain
Python (``to_dict``, JSON-ready) and as text (``str``); :class:`ModelPrediction`: one closed-form
family's d*(n). The number formatting here is shared with the validation table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ModelPrediction:
    """d*(n) of one fitted family: ``d_star`` (continuous, clipped to the measured
    difficulties), ``weight`` (Akaike/Schwarz weight among the families compared)."""

    family: str
    d_star: float
    weight: float


@dataclass(frozen=True)
class Recommendation:
    """A training distribution for a budget, and how sure we are about it.

    ``weights [L]`` over ``levels [L]`` is the recommended training distribution;
    ``difficulty`` the headline training difficulty (a measured grid difficulty).
    ``method``: ``"measured"`` (interpolated measured surface) or ``"model"`` (closed-form fit).
    ``expected_risk``: interpolated seed-mean target risk of the recommendation (measured only).
    ``share``: ``{difficulty: fraction of bootstrap resamples choosing it}``;
    ``plausible``: difficulties with share >= ``min_share``. ``expected_loss``/``loss_q90``:
    mean / 90th percentile over resamples of the target risk lost against that resample's best.
    ``model``: the best family's prediction; ``models``: every family's (best first).
    ``diverged``: members excluded from the measured surface for NaN/inf training steps.
    ``runner_up_wins``: of the seeds measured for both, how many had a lower target risk at the
    runner-up difficulty than at the recommended one (paired, measured only), of
    ``paired_seeds`` seeds finite at both; ``worst_seed_loss``: the largest such difference (0 when none).
    """

    budget: int
    difficulty: float
    weights: np.ndarray
    levels: np.ndarray
    method: str
    extrapolated: bool
    budget_range: tuple[float, float]
    expected_risk: float | None = None
    runner_up: float | None = None
    margin: float | None = None
    share: dict[float, float] = field(default_factory=dict)
    plausible: tuple[float, ...] = ()
    min_share: float = 0.1
    n_boot: int = 0
    n_seeds: int = 0
    expected_loss: float | None = None
    loss_q90: float | None = None
    bracket: tuple[tuple[float, float], tuple[float, float]] | None = None
    model: ModelPrediction | None = None
    models: tuple[ModelPrediction, ...] = ()
    notes: tuple[str, ...] = ()
    diverged: int = 0
    runner_up_wins: int | None = None
    paired_seeds: int | None = None
    worst_seed_loss: float | None = None

    @property
    def mean_level(self) -> float:
        """Mean level under the recommended distribution."""
        return float(np.sum(np.asarray(self.levels, dtype=float) * self.weights))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python (JSON-ready) form."""
        return {
            "budget": self.budget,
            "difficulty": plain_number(self.difficulty),
            "weights": {plain_number(lv): float(w) for lv, w in zip(self.levels, self.weights)},
            "method": self.method,
            "extrapolated": self.extrapolated,
            "budget_range": [plain_number(b) for b in self.budget_range],
            "expected_risk": self.expected_risk,
            "runner_up": None if self.runner_up is None else plain_number(self.runner_up),
            "margin": self.margin,
            "share": {plain_number(k): v for k, v in self.share.items()},
            "plausible": [plain_number(d) for d in self.plausible],
            "min_share": self.min_share,
            "n_boot": self.n_boot,
            "n_seeds": self.n_seeds,
            "expected_loss": self.expected_loss,
            "loss_q90": self.loss_q90,
            "model": None if self.model is None else vars(self.model).copy(),
            "models": [vars(m).copy() for m in self.models],
            "notes": list(self.notes),
            "diverged_excluded": self.diverged,
            "runner_up_wins": self.runner_up_wins,
            "paired_seeds": self.paired_seeds,
            "worst_seed_loss": self.worst_seed_loss,
        }

    def __str__(self) -> str:
        how = {
            "measured": "measured target-risk surface"
            + (
                ""
                if self.bracket is None or self.bracket[0][0] == self.bracket[1][0]
                else f", interpolated in log n between budgets {format_number(self.bracket[0][0])} and {format_number(self.bracket[1][0])}"
            ),
            "model": f"closed-form model {self.model.family!r}"
            if self.model
            else "closed-form model",
        }[self.method]
        lines = [f"Recommendation for a budget of n = {self.budget:,} examples ({how})"]
        if self.extrapolated:
            lines.append(
                f"  EXTRAPOLATION: n is outside the measured budgets [{format_number(self.budget_range[0])}, {format_number(self.budget_range[1])}]"
            )
        lines.append(
            f"  train at difficulty {format_number(self.difficulty)}: {_weights_text(self.levels, self.weights)}"
        )
        if self.diverged:
            lines.append(
                f"  excluded {self.diverged} diverged member(s) (NaN/inf training steps; see nonfinite_steps)"
            )
        if self.expected_risk is not None:
            line = f"  expected target risk {self.expected_risk:.3f}"
            if self.runner_up is not None:
                line += f"; runner-up difficulty {format_number(self.runner_up)} is worse by {self.margin:.3f}"
            lines.append(line)
        if self.runner_up_wins is not None and self.runner_up is not None:
            lines.append(self._per_seed_line())
        if self.n_boot and self.share:
            shares = ", ".join(
                f"{format_number(d)}: {s:.0%}" if s >= 0.005 else f"{format_number(d)}: <1%"
                for d, s in sorted(self.share.items(), key=lambda kv: -kv[1])
            )
            plaus = ", ".join(format_number(d) for d in self.plausible)
            lines.append(
                f"  seed bootstrap ({self.n_boot} resamples of {self.n_seeds} seeds) chose difficulty {shares}; "
                f"plausible (>= {self.min_share:.0%}): {{{plaus}}}"
            )
        if self.expected_loss is not None:
            lines.append(
                f"  expected target-risk loss vs the best difficulty: {self.expected_loss:.3f} "
                f"(90th percentile {self.loss_q90:.3f})"
            )
        if self.model is not None:
            others = ", ".join(f"{m.family} {m.d_star:.2f}" for m in self.models[1:])
            lines.append(
                f"  closed-form model {self.model.family} (AIC weight {self.model.weight:.2f}): "
                f"d*(n) = {self.model.d_star:.2f}"
                + (f"; other families: {others}" if others else "")
            )
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _per_seed_line(self) -> str:
        """How often, seed by seed, the runner-up beat the recommendation, and by how much."""
        runner = format_number(self.runner_up)
        if not self.runner_up_wins:
            return (
                f"  per seed: difficulty {format_number(self.difficulty)} was at least as good as "
                f"the runner-up {runner} on every seed measured for both"
            )
        return (
            f"  per seed: the runner-up {runner} did better on {self.runner_up_wins} of "
            f"{self.paired_seeds} seeds, by up to {self.worst_seed_loss:.3f} target risk (the choice "
            "can fail on a seed where the seed mean favours it)"
        )


def plain_number(x: Any) -> Any:
    """A scalar ``x`` as a plain Python number for dicts and JSON: an ``int`` when its value is
    a whole number, else a ``float``."""
    x = float(x)
    return int(x) if x.is_integer() else x


def format_number(x: Any) -> str:
    """A scalar ``x`` as short text: a whole number with thousands separators (``12,800``),
    anything else to 3 significant digits (``0.125``)."""
    x = float(x)
    return f"{int(x):,}" if x.is_integer() else f"{x:.3g}"


def _weights_text(levels: np.ndarray, weights: np.ndarray) -> str:
    w = np.asarray(weights, dtype=float)
    if np.isclose(w.max(), 1.0):
        return f"all data at level {format_number(levels[int(np.argmax(w))])}"
    nz = [(lv, x) for lv, x in zip(levels, w) if x > 0]
    return "weights " + ", ".join(f"level {format_number(lv)}: {x:.3f}" for lv, x in nz)
