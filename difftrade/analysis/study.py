"""A multi-family study's tables, regenerated from its result files.

``summarize(folder)`` reads ``<family>.nc`` (a tradeoff grid) and, where present,
``transfer_<family>.nc`` (point training at one budget) for every family in the folder and
returns Markdown: per family the transfer matrix, d*(n) with its seed bootstrap and the set of
difficulties not significantly worse than d* (paired sign-flip tests, Holm), the gap
decomposition, the mechanism fractions, and tradeoff models compared by AIC and by their
leave-one-budget-out error in predicting d*; then, from ``finetune/*.nc`` (grids fine-tuned from
a base) and ``bases/*.nc`` (the base runs), the fine-tuned grids beside their from-scratch
partners (:mod:`~difftrade.analysis.finetuning`). Everything is deterministic, so the published
tables can be checked against the committed files by regenerating them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from difftrade.analysis import (
    finetuning,
    forward,
    model_tables,
    paired_comparison,
    predictors,
    protocols,
    racing,
    report,
    selection,
    transfer,
)
from difftrade.analysis import optimum as analysis
from difftrade.results import assembly, divergence
from difftrade.results import schema as results
from difftrade.tasks import configs
from difftrade.tasks.configs import source_task
from difftrade.theory import level_model
from difftrade.theory.grid_values import argmin_difficulty

ALPHA = 0.05
BOOT_LEVEL = 0.9


def hard_target(num_levels: int) -> np.ndarray:
    """Target weights ``[L]`` proportional to the level's rank 1..L (harder levels weigh more)."""
    w = np.arange(1, num_levels + 1, dtype=np.float64)
    return w / w.sum()


def _fmt_set(values) -> str:
    return "{" + ", ".join(str(int(v)) for v in values) + "}"


def d_star_table(ds: xr.Dataset) -> str:
    """d*(n), its bootstrap interval, the difficulties not significantly worse than the selected
    d* (optimistic: d* is picked on the same seeds), the selection-free all-pairs set
    (:func:`~difftrade.analysis.selection.best_set`), seed-split agreement and the runner-up's margin."""
    r, d = predictors.risk_grid(ds), ds["difficulty"].values
    boot = analysis.bootstrap_d_star(r, d, level=BOOT_LEVEL)
    cmp = paired_comparison.compare_to_d_star(r, d, method="sign_flip", alpha=ALPHA)
    best = selection.best_set(r, d, method="sign_flip", alpha=ALPHA)
    agree = selection.split_agreement(r, d)
    mean = analysis.seed_mean(r)
    lines = [
        (
            f"| n | d*(n) | {BOOT_LEVEL:.0%} bootstrap | not significantly worse than the selected d* | "
            f"best set, all pairs (α = {ALPHA}) | seed-split agreement | runner-up: margin | target risk at d* |"
        ),
        "|---:|---:|:---:|:---:|:---:|---:|:---:|---:|",
    ]
    for j, n in enumerate(ds["budget"].values):
        if not np.isfinite(cmp.d_star[j]):
            lines.append(f"| {int(n):,} | none (every member diverged) | | | | | | |")
            continue
        i = int(np.flatnonzero(d == cmp.d_star[j])[0])
        runner = (
            "none"
            if not np.isfinite(cmp.runner_up[j])
            else f"{int(cmp.runner_up[j])}: +{cmp.runner_up_margin[j]:.3f}"
        )
        lines.append(
            f"| {int(n):,} | {int(cmp.d_star[j])} | [{int(boot.low[j])}, {int(boot.high[j])}] | "
            f"{_fmt_set(cmp.not_worse_set(j))} | {_fmt_set(best.members(j))} | {agree[j]:.0%} | {runner} | {mean[i, j]:.3f} |"
        )
    return "\n".join(lines)


def matrix_table(ds: xr.Dataset, name: str) -> str:
    """Seed mean of ``name`` ``[difficulty, budget]`` as a table (rows: difficulty)."""
    mean = analysis.seed_mean(predictors.risk_grid(ds, name))
    budgets = ds["budget"].values
    lines = [
        "| d \\ n | " + " | ".join(f"{int(n):,}" for n in budgets) + " |",
        "|---:|" + "---:|" * len(budgets),
    ]
    for i, d in enumerate(ds["difficulty"].values):
        lines.append(f"| {int(d)} | " + " | ".join(f"{v:.3f}" for v in mean[i]) + " |")
    return "\n".join(lines)


def above_table(ds: xr.Dataset) -> str:
    """Exact match on the levels above each row's own, ``[difficulty, budget]`` (mean over those
    levels, then over seeds; diverged members skipped), as a table. All zeros when nothing a row
    learns reaches harder levels (the extrapolation gap fixed by construction); values that grow
    with n when it does (a graded gap). The hardest row has no level above it."""
    budgets = ds["budget"].values
    lines = [
        "| d \\ n | " + " | ".join(f"{int(n):,}" for n in budgets) + " |",
        "|---:|" + "---:|" * len(budgets),
    ]
    for d, mean in predictors.above_own_level(ds).items():  # [N] per row
        lines.append(f"| {d} | " + " | ".join(f"{v:.3f}" for v in mean) + " |")
    return "\n".join(lines)


def family_section(
    name: str, ds: xr.Dataset, point: xr.Dataset | None, records: list[forward.ForwardRecord]
) -> str:
    """Every table of one family; ``records``: its forward validation
    (:func:`~difftrade.analysis.predictors.forward_validation`)."""
    cfg = configs.stored(ds, name)
    mask = divergence.diverged_mask(ds)
    diverged = 0 if mask is None else int(mask.sum())
    seeds = ds.sizes["seed"]
    lines = [
        (
            f"### {name}: {ds.attrs.get('task', '?')}, levels {source_task(configs.stored(ds)).level_structure}, training distribution "
            f"`{cfg.grid.train_distribution}`"
        ),
        "",
        (
            f"{ds.sizes['difficulty']} difficulties x {ds.sizes['budget']} budgets x {seeds} seeds; "
            f"{diverged} diverged members; {ds.attrs.get('device', '?')}, wall time {ds.attrs.get('wall_seconds', float('nan')):.0f} s; "
            f"config hash {ds.attrs.get('config_hash', '?')}."
        ),
        "",
    ]
    if "train_steps" in ds:
        lines += [
            f"Fixed epochs ({cfg.train.epochs} passes over each member's data): steps per member "
            + ", ".join(
                f"{int(s):,} at n = {int(n):,}"
                for n, s in zip(ds["budget"].values, ds["train_steps"].values)
            )
            + ".",
            "",
        ]
    elif "stopped_step" in ds:
        lines += [report.stopping_line(ds), ""]
    else:
        lines += [f"Fixed steps: {cfg.train.steps:,} per member at every budget.", ""]
    note = analysis.support_note(seeds)
    if note:
        lines += [f"Note: {note}.", ""]
    if point is not None:
        lines += [
            transfer.render(transfer.transfer_matrix(point)).replace(
                "## ", "#### Point training: "
            ),
            "",
        ]
    lines += [
        transfer.render(transfer.transfer_matrix(ds)).replace(
            "## ", f"#### Grid (`{cfg.grid.train_distribution}`): "
        ),
        "",
    ]
    target = ", ".join(f"{w:.2f}" for w in ds["target_weights"].values)
    lines += [f"#### d*(n), the run's target (level weights {target})", "", d_star_table(ds), ""]
    hard = hard_target(ds.sizes["level"])
    lines += [
        f"#### d*(n), hard-weighted target (level weights ∝ 1..{ds.sizes['level']}: "
        + ", ".join(f"{w:.2f}" for w in hard)
        + "; the same members, re-weighted)",
        "",
        d_star_table(assembly.with_target(ds, hard)),
        "",
    ]
    for var, title in (
        ("target_risk", "target risk"),
        ("train_risk", "train risk"),
        ("generalization_gap", "generalization gap"),
        ("extrapolation_gap", "extrapolation gap"),
    ):
        lines += [f"#### {title} (seed mean)", "", matrix_table(ds, var), ""]
    lines += [
        "#### exact match on the levels above the row's own (seed mean)",
        "",
        above_table(ds),
        "",
    ]
    m = report.mechanism(ds)
    lines += [
        (
            f"Mechanism (ordered pairs of seed means differing by > 0.01): generalization gap rises with d in "
            f"{m['gen_gap_rises_with_d']:.0%}, falls with n in {m['gen_gap_falls_with_n']:.0%}; extrapolation gap "
            f"falls with d in {m['extrap_gap_falls_with_d']:.0%}."
        ),
        "",
        "#### Models of target risk (fitted to the seed means; the per-level model to each level's exact match)",
        "",
        model_tables.model_table(ds),
        "",
        "#### Predicting d* at larger budgets (forward validation)",
        "",
        forward.table(records),
        "",
    ]
    return "\n".join(lines)


def _same_levels(a: xr.Dataset, b: xr.Dataset) -> bool:
    """Two grids of one task over the same difficulties, levels and target, trained on other distributions."""
    return (
        a.attrs.get("task") == b.attrs.get("task")
        and all(
            np.array_equal(a[k].values, b[k].values)
            for k in ("difficulty", "level", "target_weights")
        )
        and not np.allclose(a["train_weights"].values, b["train_weights"].values)
    )


def cross_table(grids: dict[str, xr.Dataset]) -> str:
    """The per-level model fitted on one grid (every budget) predicting d*(n) and the target risk
    of another grid of the same task, levels and target trained on other distributions; empty
    when no two grids qualify."""
    lines = []
    for a, da in grids.items():
        partners = [(b, db) for b, db in grids.items() if b != a and _same_levels(da, db)]
        if not partners:
            continue
        mass_a, acc_a, _ = predictors.level_inputs(da)
        fit = level_model.fit_levels(mass_a, da["budget"].values, acc_a)
        for b, db in partners:
            mass_b, _, target = predictors.level_inputs(db)
            n, d = db["budget"].values, db["difficulty"].values
            measured_risk = analysis.seed_mean(predictors.risk_grid(db))
            predicted = fit.d_star(mass_b, target, d, n)
            measured = argmin_difficulty(measured_risk, d)
            rmse = float(
                np.sqrt(np.nanmean((fit.target_risk(mass_b, target, n) - measured_risk) ** 2))
            )
            lines.append(
                f"| {a} | {b} | {', '.join(str(int(v)) for v in predicted)} | {', '.join(str(int(v)) for v in measured)} | "
                f"{np.nanmean(np.abs(predicted - measured)):.2f} | {rmse:.3f} |"
            )
    if not lines:
        return ""
    return "\n".join(
        [
            "### Across training distributions: the per-level model fitted on one grid, predicting another",
            "",
            "| fitted on | predicts | d*(n) predicted | d*(n) measured | mean d* error (levels) | target risk RMSE |",
            "|:---|:---|:---|:---|---:|---:|",
            *lines,
            "",
        ]
    )


def summarize(folder: str | Path) -> str:
    """Markdown for every ``<family>.nc`` in ``folder`` (families in name order)."""
    folder = Path(folder)
    grids = sorted(p for p in folder.glob("*.nc") if not p.name.startswith("transfer_"))
    if not grids:
        raise ValueError(f"folder {str(folder)!r} holds no <family>.nc result files")
    sections, loaded, records = [], {}, {}
    for path in grids:
        point_path = folder / f"transfer_{path.name}"
        point = results.load(point_path) if point_path.exists() else None
        loaded[path.stem] = results.load(path)
        records[path.stem] = predictors.forward_validation(loaded[path.stem])
        sections.append(family_section(path.stem, loaded[path.stem], point, records[path.stem]))
    cross, by_protocol = cross_table(loaded), protocols.protocol_table(loaded)
    tuned = finetuning.finetune_section(
        {**loaded, **load_folder(folder / "finetune", "finetune/")}, load_folder(folder / "bases")
    )
    return "\n".join(
        sections
        + ([cross] if cross else [])
        + ([by_protocol] if by_protocol else [])
        + [forward_summary_table(records), racing_table(loaded)]
        + ([tuned] if tuned else [])
    )


def load_folder(folder: Path, prefix: str = "") -> dict[str, xr.Dataset]:
    """``{prefix + stem: results}`` of every ``.nc`` in ``folder`` (name order; {} when absent)."""
    return {prefix + p.stem: results.load(p) for p in sorted(folder.glob("*.nc"))}


def forward_summary_table(records: dict[str, list[forward.ForwardRecord]]) -> str:
    """One row per grid (name -> its forward records): forward risk lost of the best baseline and
    of every model, as the ratio to the best baseline's (< 0.5 is the prescription target), and
    each method's mean level error."""
    rows, methods = [], None
    for name, grid_records in records.items():
        scores = forward.summary(grid_records)
        base = forward.best_baseline(scores)
        methods = methods or [s.method for s in scores if s.method not in forward.BASELINES]
        cells = {s.method: s for s in scores}
        rows.append(
            f"| {name} | {base.method}: {base.risk_lost:.3f} ({base.level_error:.2f}) | "
            + " | ".join(
                f"{cells[m].risk_lost / base.risk_lost:.2f} ({cells[m].level_error:.2f})"
                if base.risk_lost > 0
                else "–"
                for m in methods
            )
            + " |"
        )
    return "\n".join(
        [
            "### Forward validation across grids",
            "",
            (
                "Fitted on the smallest k >= 3 budgets, predicting every larger budget up to 8x the largest pilot. "
                "Best baseline: its risk lost (mean level error); models: risk lost as a multiple of the best baseline's "
                "(mean level error). The prescription target is <= 0.50 on every grid."
            ),
            "",
            "| grid | best baseline | " + " | ".join(methods or []) + " |",
            "|:---|:---|" + "---:|" * len(methods or []),
            *rows,
            "",
        ]
    )


def racing_table(grids: dict[str, xr.Dataset]) -> str:
    """One row per grid: races replayed at every budget (:func:`difftrade.analysis.racing.replay`,
    20 seed orders), means over budgets."""
    rows = []
    for name, ds in grids.items():
        rep = racing.replay(predictors.risk_grid(ds), ds["difficulty"].values, ds["budget"].values)
        rows.append(
            f"| {name} | {np.mean(rep.compute):.2f} | {np.mean(rep.risk_lost):.4f} | "
            f"{np.mean(rep.uniform_risk_lost):.4f} | {np.mean(rep.decided):.0%} |"
        )
    return "\n".join(
        [
            "### Racing at one budget (replay)",
            "",
            (
                "Every budget raced from 3 seeds up, one seed per look, paired t-tests, all pairs with Holm at "
                "α = 0.05 / looks; 20 seed orders. Compute: members trained as a share of the full column; risk lost "
                "against the full column's d*; uniform: the same compute spread evenly over the difficulties."
            ),
            "",
            "| grid | compute | risk lost | uniform allocation, risk lost | ends at one difficulty |",
            "|:---|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )
