"""Fine-tuned grids beside the from-scratch grid of the same family.

A fine-tuned grid (``run.init`` a base written by ``difftrade pretrain``) is paired with the
from-scratch grid of the same task, difficulties, budgets, training distribution and training
protocol (:func:`scratch_partner`). :func:`finetune_section` writes, per family: each base's
exact match per level, d*(n) of every grid with the selection-free all-pairs best set at the
smallest and largest budget, d*(n) with the hardest row left out (its level is then a target
level no row trains on), exact match on the levels above each row's own, and the three terms
of the decomposition at d*(n).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from difftrade.analysis import optimum as analysis
from difftrade.analysis import predictors, selection
from difftrade.config.run_config import RunConfig
from difftrade.tasks import configs
from difftrade.theory.grid_values import argmin_difficulty, argmin_index

ALPHA = 0.05
TERMS = ("train_risk", "generalization_gap", "extrapolation_gap")


def base_name(cfg: RunConfig) -> str:
    """The base a grid starts from, by its run directory (``runs/.../sorting_broad/base`` ->
    ``sorting_broad``); ``"scratch"`` for a grid trained from scratch."""
    init = Path(cfg.run.init)
    return "scratch" if cfg.run.init == "scratch" else (init.parent.name or init.name)


def _grid_key(cfg: RunConfig) -> tuple:
    """What a fine-tuned grid and its scratch partner share."""
    return (
        cfg.task_name,
        cfg.task_options,
        cfg.grid.difficulties,
        cfg.grid.budgets,
        cfg.grid.train_distribution,
        cfg.train.stopping,
        cfg.train.steps,
        cfg.run.target,
    )


def scratch_partner(tuned: xr.Dataset, grids: dict[str, xr.Dataset]) -> str | None:
    """The name of the first grid (in name order) trained from scratch with the same task,
    difficulties, budgets, training distribution, protocol and target as ``tuned``; None if none."""
    key = _grid_key(configs.stored(tuned))
    for name in sorted(grids):
        cfg = configs.stored(grids[name], name)
        if cfg.run.init == "scratch" and _grid_key(cfg) == key:
            return name
    return None


def above_own(ds: xr.Dataset) -> np.ndarray:
    """Exact match on the levels above each row's own ``[N]``, averaged over the rows below the
    hardest (:func:`~difftrade.analysis.predictors.above_own_level`)."""
    rows = list(predictors.above_own_level(ds).values())
    return np.mean(rows, axis=0) if rows else np.full(ds.sizes["budget"], np.nan)


def without_hardest(ds: xr.Dataset) -> xr.Dataset:
    """The grid without its hardest row: no row then trains on the hardest target level."""
    return ds.isel(difficulty=slice(0, ds.sizes["difficulty"] - 1))


def _set(values: np.ndarray) -> str:
    return "{" + ", ".join(str(int(v)) for v in values) + "}"


def _row(label: str, cells: list[str]) -> str:
    return f"| {label} | " + " | ".join(cells) + " |"


def _header(first: list[str], budgets: np.ndarray, last: list[str] = ()) -> list[str]:
    cols = [*first, *(f"{int(n):,}" for n in budgets), *last]
    return ["| " + " | ".join(cols) + " |", "|:---|" + "---:|" * (len(cols) - 1)]


def d_star_rows(name: str, ds: xr.Dataset) -> str:
    """One table row: d*(n) at every budget and the all-pairs best sets at both ends."""
    r, d = predictors.risk_grid(ds), ds["difficulty"].values
    best = selection.best_set(r, d, alpha=ALPHA)
    cells = [str(int(v)) for v in argmin_difficulty(analysis.seed_mean(r), d)]
    ends = [_set(best.members(0)), _set(best.members(ds.sizes["budget"] - 1))]
    return _row(f"{name} ({ds.sizes['seed']} seeds)", cells + ends)


def terms_at_d_star(ds: xr.Dataset) -> list[str]:
    """Per budget, ``"train / generalization / extrapolation"`` (seed means) at d*(n)."""
    d = ds["difficulty"].values
    at = argmin_index(analysis.seed_mean(predictors.risk_grid(ds)), d)  # [N]
    means = {t: analysis.seed_mean(predictors.risk_grid(ds, t)) for t in TERMS}
    return [
        " / ".join(f"{means[t][i, j]:.2f}" for t in TERMS) + f" (d = {int(d[i])})"
        for j, i in enumerate(at)
    ]


def base_table(bases: dict[str, xr.Dataset]) -> list[str]:
    """Each base's training levels, budget and exact match per level."""
    lines = [
        "| base | trained on levels | examples | exact match per level |",
        "|:---|:---|---:|:---|",
    ]
    for name, ds in bases.items():
        w = ds["train_weights"].values[0]
        levels = ds["level"].values
        exact = ds["level_exact"].values.reshape(-1, ds.sizes["level"])[0]
        per_level = ", ".join(f"{int(lv)}: {v:.2f}" for lv, v in zip(levels, exact))
        trained = f"{int(levels[w > 0].min())}..{int(levels[w > 0].max())}"
        lines.append(f"| {name} | {trained} | {int(ds['budget'].values[0]):,} | {per_level} |")
    return lines


def _table(caption: str, header: list[str], rows: list[str]) -> list[str]:
    return ["", caption, "", *header, *rows]


def family_block(
    scratch: tuple[str, xr.Dataset], tuned: dict[str, xr.Dataset], bases: dict[str, xr.Dataset]
) -> str:
    """Markdown for one family: its bases, then every table of :func:`finetune_section`."""
    grids = {scratch[0]: scratch[1], **tuned}
    budgets = scratch[1]["budget"].values
    top = int(scratch[1]["difficulty"].values[-1])
    ends = [f"best set, n = {int(budgets[0]):,}", f"best set, n = {int(budgets[-1]):,}"]
    with_ends, plain = _header(["grid"], budgets, ends), _header(["grid"], budgets)
    name = configs.stored(scratch[1]).task_name
    return "\n".join(
        [
            f"### {name}: fine-tuned from a base, beside from scratch",
            "",
            *base_table(bases),
            *_table(
                f"d*(n) (argmin of the seed-mean target risk); best set: all pairs, Holm, α = {ALPHA}.",
                with_ends,
                [d_star_rows(g, ds) for g, ds in grids.items()],
            ),
            *_table(
                f"Past the training levels: d*(n) without row {top}, so no row trains on level "
                f"{top}, which the target still weighs.",
                with_ends,
                [d_star_rows(g, without_hardest(ds)) for g, ds in grids.items()],
            ),
            *_table(
                "Exact match on the levels above each row's own (mean over the rows below the hardest).",
                plain,
                [_row(g, [f"{v:.3f}" for v in above_own(ds)]) for g, ds in grids.items()],
            ),
            *_table(
                "At d*(n): train risk / generalization gap / extrapolation gap.",
                plain,
                [_row(g, terms_at_d_star(ds)) for g, ds in grids.items()],
            ),
            "",
        ]
    )


def families(grids: dict[str, xr.Dataset]) -> dict[str, dict[str, xr.Dataset]]:
    """``{scratch partner: {name: results}}``: the fine-tuned grids of ``grids`` (name ->
    results) grouped by their from-scratch partner (:func:`scratch_partner`), partner first."""
    found: dict[str, dict[str, xr.Dataset]] = {}
    for name, ds in grids.items():
        if base_name(configs.stored(ds, name)) == "scratch":
            continue
        partner = scratch_partner(ds, grids)
        if partner is not None:
            found.setdefault(partner, {partner: grids[partner]})[name] = ds
    return dict(sorted(found.items()))


def finetune_section(grids: dict[str, xr.Dataset], bases: dict[str, xr.Dataset]) -> str:
    """Markdown: one block per family that has fine-tuned grids (``grids``: name -> results, the
    from-scratch partners among them; ``bases``: base name -> the base run's results); ""
    when no fine-tuned grid has a scratch partner."""
    blocks = []
    for partner, members in families(grids).items():
        tuned = {k: v for k, v in members.items() if k != partner}
        used = sorted({base_name(configs.stored(ds)) for ds in tuned.values()})
        blocks.append(
            family_block(
                (partner, grids[partner]), tuned, {b: bases[b] for b in used if b in bases}
            )
        )
    return "\n".join(blocks)
