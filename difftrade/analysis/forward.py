"""Forward validation: predict d* at budgets larger than any that a predictor was fitted on.

A researcher runs pilots at small budgets and asks which difficulty to use at a larger one. That
is how a predictor of d*(n) is scored here: for every pilot count k >= ``min_pilots`` it is fitted
on the seed-mean target risk of the k smallest budgets ``n_1 < ... < n_k`` and predicts d* at every
larger budget ``n_j`` (j > k). One :class:`ForwardRecord` per (method, pilot count, predicted
budget) holds

* ``predicted``: the predicted difficulty; ``d_star``: the measured one (argmin of the seed-mean
  target risk at ``n_j``, ties to the easiest);
* ``level_error`` = |predicted − d*| in levels;
* ``risk_lost`` = R(predicted, n_j) − R(d*, n_j): seed-mean target risk given up at ``n_j``.

Three baselines go through the same loop and need nothing but the pilots' seed means:

* ``carry forward``: the d* of the largest pilot;
* ``nearest budget``: the d* of the pilot budget nearest to ``n_j`` in log n. Forward, the nearest
  pilot is always the largest one, so it equals carry forward; it is kept as its own row because
  leave-one-budget-out (interpolation) uses the same rule with neighbours on both sides;
* ``always hardest``: the hardest difficulty of the grid.

:func:`summary` averages each method first over the predicted budgets of one pilot count, then
over pilot counts, so every pilot count weighs the same however many budgets lie above it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from difftrade.theory.grid_values import argmin_index

Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray], Callable[[float], np.ndarray]]
"""``predictor(difficulties [D], pilot budgets [k], seed-mean risk [D, k])`` -> a function
``n -> predicted risk [D]`` (the same form as :data:`difftrade.theory.threshold.Fitter`)."""

BASELINES = ("carry forward", "nearest budget", "always hardest")
MIN_PILOTS = 3
MAX_RATIO = 8.0  # predict budgets up to this many times the largest pilot


@dataclass(frozen=True)
class ForwardRecord:
    """One forward prediction: ``method``; ``pilots`` (the largest pilot budget); ``budget`` (the
    predicted one); ``predicted`` and ``d_star`` (difficulties); ``level_error``; ``risk_lost``."""

    method: str
    pilots: int
    budget: int
    predicted: float
    d_star: float
    level_error: float
    risk_lost: float

    def to_json(self) -> dict[str, float | int | str | None]:
        """The record as a JSON-ready dict (NaN -> None)."""
        return json_ready(self)


def json_ready(record: object) -> dict[str, float | int | str | None]:
    """A dataclass instance as a dict whose non-finite floats are None (JSON has no NaN)."""
    return {
        k: (None if isinstance(v, float) and not np.isfinite(v) else v)
        for k, v in asdict(record).items()
    }


def baseline_choice(
    method: str, difficulties: np.ndarray, pilots: np.ndarray, pilot_mean: np.ndarray, budget: float
) -> float:
    """The difficulty a baseline picks at ``budget`` from pilot budgets ``[k]`` and their seed
    means ``[D, k]``; NaN when the pilot it reads has no finite cell."""
    if method == "always hardest":
        return float(np.max(difficulties))
    if method == "carry forward":
        column = pilot_mean.shape[1] - 1
    elif method == "nearest budget":
        column = int(np.argmin(np.abs(np.log(pilots) - np.log(budget))))
    else:
        raise ValueError(f"method={method!r}; allowed: one of {BASELINES}")
    i = int(argmin_index(pilot_mean[:, column], difficulties))
    return float(difficulties[i]) if i >= 0 else float("nan")


def predictor_choice(
    predictor: Predictor, difficulties: np.ndarray, pilots: np.ndarray, pilot_mean: np.ndarray
) -> Callable[[float], float]:
    """Fit ``predictor`` on the pilots; returns ``budget -> predicted difficulty`` (NaN where the
    fit failed or predicts no finite risk)."""
    try:
        predict = predictor(difficulties, pilots, pilot_mean)
    except (ValueError, RuntimeError, np.linalg.LinAlgError):
        return lambda budget: float("nan")

    def choose(budget: float) -> float:
        r = np.asarray(predict(float(budget)), np.float64)
        i = int(argmin_index(r, difficulties))
        return float(difficulties[i]) if i >= 0 else float("nan")

    return choose


def forward_records(
    difficulties: np.ndarray,
    budgets: np.ndarray,
    mean: np.ndarray,
    predictors: Mapping[str, Predictor],
    *,
    min_pilots: int = MIN_PILOTS,
    max_ratio: float = MAX_RATIO,
) -> list[ForwardRecord]:
    """Every forward prediction of every predictor and baseline.

    ``difficulties [D]``; ``budgets [N]`` ascending; ``mean [D, N]`` seed-mean target risk (NaN: no
    finite member). ``predictors``: name -> :data:`Predictor`. Pilot counts k = ``min_pilots`` ..
    N − 1; each predicts the budgets above its largest pilot, up to ``max_ratio`` times it.
    """
    d = np.asarray(difficulties, np.float64)
    n = np.asarray(budgets, np.float64)
    y = np.asarray(mean, np.float64)
    if y.shape != (d.size, n.size):
        raise ValueError(f"mean has shape {y.shape}; allowed: [D, N] = [{d.size}, {n.size}]")
    if np.any(np.diff(n) <= 0):
        raise ValueError(f"budgets={n.tolist()}; allowed: strictly increasing")
    if min_pilots < 2:
        raise ValueError(f"min_pilots={min_pilots}; allowed: >= 2")
    best = argmin_index(y, d)  # [N]
    records = []
    for k in range(min_pilots, n.size):
        pilots, pilot_mean = n[:k], y[:, :k]
        choosers: dict[str, Callable[[float], float]] = {
            m: functools.partial(baseline_choice, m, d, pilots, pilot_mean) for m in BASELINES
        }
        choosers.update(
            {name: predictor_choice(p, d, pilots, pilot_mean) for name, p in predictors.items()}
        )
        for j in range(k, n.size):
            if best[j] < 0 or n[j] > max_ratio * pilots[-1]:
                continue
            for method, choose in choosers.items():
                records.append(
                    _record(method, int(pilots[-1]), j, choose(n[j]), d, n, y, int(best[j]))
                )
    return records


def _record(
    method: str,
    pilots: int,
    j: int,
    predicted: float,
    d: np.ndarray,
    n: np.ndarray,
    y: np.ndarray,
    best: int,
) -> ForwardRecord:
    if np.isfinite(predicted):
        row = int(np.flatnonzero(d == predicted)[0])
        lost = float(y[row, j] - y[best, j])
    else:
        lost = float("nan")
    return ForwardRecord(
        method, pilots, int(n[j]), predicted, float(d[best]), float(abs(predicted - d[best])), lost
    )


@dataclass(frozen=True)
class MethodScore:
    """One method's forward score: ``level_error`` and ``risk_lost`` averaged over predicted budgets
    within a pilot count, then over pilot counts; ``missing``: predictions it could not make."""

    method: str
    level_error: float
    risk_lost: float
    missing: int


def summary(records: list[ForwardRecord]) -> list[MethodScore]:
    """Per method, in the order methods first appear: the pilot-count-balanced means."""
    methods = list(dict.fromkeys(r.method for r in records))
    out = []
    for m in methods:
        mine = [r for r in records if r.method == m]
        per_pilot: dict[int, list[ForwardRecord]] = {}
        for r in mine:
            per_pilot.setdefault(r.pilots, []).append(r)
        missing = sum(not np.isfinite(r.predicted) for r in mine)
        out.append(
            MethodScore(
                m, _balanced(per_pilot, "level_error"), _balanced(per_pilot, "risk_lost"), missing
            )
        )
    return out


def _balanced(per_pilot: dict[int, list[ForwardRecord]], field: str) -> float:
    """Mean over pilot counts of the mean of ``field`` over each count's finite records."""
    means = []
    for records in per_pilot.values():
        values = np.array([getattr(r, field) for r in records], np.float64)
        if np.any(np.isfinite(values)):
            means.append(float(np.nanmean(values)))
    return float(np.mean(means)) if means else float("nan")


def best_baseline(scores: list[MethodScore]) -> MethodScore:
    """The baseline with the least risk lost."""
    return min((s for s in scores if s.method in BASELINES), key=lambda s: s.risk_lost)


def table(records: list[ForwardRecord]) -> str:
    """Markdown: each method's forward level error and risk lost, baselines marked, with the ratio
    of its risk lost to the best baseline's."""
    scores = summary(records)
    if not scores:
        return "No forward prediction: fewer budgets than pilots + 1."
    base = best_baseline(scores)
    counts = sorted({r.pilots for r in records})
    lines = [
        (
            f"Forward: fitted on the smallest k budgets, predicting every larger one up to {MAX_RATIO:g}x the largest "
            f"pilot, for {len(counts)} pilot counts (largest pilot {counts[0]:,} .. {counts[-1]:,}); means over "
            "predicted budgets, then over pilot counts."
        ),
        "",
        "| method | mean level error | risk lost | risk lost / best baseline's |",
        "|:---|---:|---:|---:|",
    ]
    for s in scores:
        name = f"{s.method} (baseline)" if s.method in BASELINES else s.method
        ratio = f"{s.risk_lost / base.risk_lost:.2f}" if base.risk_lost > 0 else "–"
        miss = f" ({s.missing} not predicted)" if s.missing else ""
        lines.append(f"| {name}{miss} | {s.level_error:.2f} | {s.risk_lost:.3f} | {ratio} |")
    return "\n".join(lines)
