"""How model-based and nominal difficulty agree on the same examples: Spearman's rank correlation
between reference loss and nominal level, the mean nominal level of each model-based level and the
mean reference loss of each nominal level (:func:`agreement`, :func:`rank_agreement`).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from scipy import stats

from difftrade.config.model_config import ModelConfig
from difftrade.model.transformer import Params
from difftrade.tasks import data
from difftrade.tasks.base import Task
from difftrade.train.scored_difficulty import draw_pool, score


# ---- agreement ------------------------------------------------------------------------------------
def rank_agreement(
    scores: np.ndarray, nominal: np.ndarray, num_levels: int, nominal_levels: tuple[int, ...]
) -> dict[str, Any]:
    """How model-based and nominal difficulty agree on the same examples.

    scores float ``[N]`` (reference loss), nominal int ``[N]``. Model-based levels are
    ``num_levels`` equal-count bins of the scores (the train-bank rule). Returns
    ``spearman_rho`` and ``spearman_pvalue`` (``scipy.stats.spearmanr``, ties averaged),
    ``n``, ``mean_nominal`` float64 ``[num_levels]`` (mean nominal level per model-based
    level), ``mean_score`` float64 ``[len(nominal_levels)]`` (mean reference loss per nominal
    level, NaN where absent) and ``counts`` int64 ``[num_levels, len(nominal_levels)]``.
    """
    scores, nominal = np.asarray(scores, np.float64).ravel(), np.asarray(nominal).ravel()
    n = scores.shape[0]
    if nominal.shape[0] != n or n < 2 or n < num_levels:
        raise ValueError(
            f"rank_agreement: {n} scores and {nominal.shape[0]} levels; need equal lengths >= max(2, num_levels)"
        )
    result = stats.spearmanr(scores, nominal)
    model_level = np.empty(n, np.int64)
    model_level[np.argsort(scores, kind="stable")] = np.arange(n) * num_levels // n
    counts = np.zeros((num_levels, len(nominal_levels)), np.int64)
    column = {d: j for j, d in enumerate(nominal_levels)}
    np.add.at(counts, (model_level, np.asarray([column[int(d)] for d in nominal])), 1)
    mean_nominal = counts @ np.asarray(nominal_levels, np.float64) / counts.sum(axis=1)
    mean_score = np.asarray(
        [scores[nominal == d].mean() if np.any(nominal == d) else np.nan for d in nominal_levels]
    )
    return {
        "spearman_rho": float(result.statistic),
        "spearman_pvalue": float(result.pvalue),
        "n": int(n),
        "mean_nominal": mean_nominal,
        "mean_score": mean_score,
        "counts": counts,
    }


def agreement(
    source_task: Task,
    ref_params: Params,
    model_cfg: ModelConfig,
    n: int,
    key: jax.Array,
    *,
    num_levels: int | None = None,
    split: str = "pool",
) -> dict[str, Any]:
    """Rank agreement of reference loss and nominal level on ``n`` fresh examples.

    Examples ``0..n-1`` of ``split`` (default the ``pool`` stream, which no run trains or tests
    on) with root ``key``, uniform over nominal levels (duplicates kept: a plain sample). Returns
    ``rank_agreement``'s dict (``num_levels`` defaults to the source's number of levels) plus
    ``task`` and ``nominal_levels``.
    """
    data.check_budget(n, "n")
    tokens, mask, nominal = draw_pool(source_task, key, split, 0, n)
    scores = score(source_task, ref_params, model_cfg, tokens, mask)
    k = source_task.num_levels if num_levels is None else num_levels
    out = rank_agreement(scores, nominal, k, source_task.levels)
    return {"task": source_task.name, "nominal_levels": source_task.levels, **out}


def format_agreement(result: dict[str, Any]) -> str:
    """A few readable lines of an ``agreement`` result."""
    mean_nominal = ", ".join(f"{x:.2f}" for x in result["mean_nominal"])
    mean_score = ", ".join(
        f"{d}: {x:.3f}" for d, x in zip(result["nominal_levels"], result["mean_score"])
    )
    return "\n".join(
        [
            (
                f"{result['task']}: Spearman rho(reference loss, nominal level) = {result['spearman_rho']:.3f} "
                f"(p = {result['spearman_pvalue']:.2g}, n = {result['n']})"
            ),
            f"  mean nominal level per model-based level 1..{len(result['mean_nominal'])}: {mean_nominal}",
            f"  mean reference loss per nominal level: {mean_score}",
        ]
    )
