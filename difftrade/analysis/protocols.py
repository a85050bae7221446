"""d*(n) of one task family under different training protocols, side by side: fixed steps, fixed
epochs and validation stopping (``[train] stopping = "validation"``) change how long each member
trains, so a d* that moves between them was decided by the optimisation budget, not the data."""

from __future__ import annotations

import numpy as np
import xarray as xr

from difftrade.analysis import optimum
from difftrade.tasks import configs


def protocol(ds: xr.Dataset) -> str:
    """How the members of a results file were trained, in a few words."""
    train = configs.stored(ds).train
    if train.stopping == "validation":
        return f"validation stopping (cap {train.steps:,}, patience {train.patience})"
    if train.epochs:
        return f"fixed epochs ({train.epochs})"
    return f"fixed steps ({train.steps:,})"


def protocol_table(grids: dict[str, xr.Dataset]) -> str:
    """Markdown: one row per grid (name -> results), grouped by task and training distribution,
    d*(n) of the run's target at every budget any grid of the group measured ("·" where it did
    not); "" when no group holds two protocols."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name, ds in grids.items():
        cfg = configs.stored(ds)
        groups.setdefault((cfg.task_name, cfg.grid.train_distribution), []).append(name)
    blocks = []
    for (task, distribution), names in groups.items():
        if len({protocol(grids[n]) for n in names}) < 2:
            continue
        budgets = sorted({int(b) for n in names for b in grids[n]["budget"].values})
        rows = []
        for n in names:
            best = optimum.d_star(grids[n])
            by_budget = dict(zip(best["budget"].values.tolist(), best.values.tolist(), strict=True))
            cells = [
                "·"
                if b not in by_budget or not np.isfinite(by_budget[b])
                else str(int(by_budget[b]))
                for b in budgets
            ]
            rows.append(f"| {n} | {protocol(grids[n])} | " + " | ".join(cells) + " |")
        blocks += [
            f"{task}, training distribution `{distribution}`:",
            "",
            "| grid | protocol | " + " | ".join(f"{b:,}" for b in budgets) + " |",
            "|:---|:---|" + "---:|" * len(budgets),
            *rows,
            "",
        ]
    if not blocks:
        return ""
    return "\n".join(
        [
            "### d*(n) by training protocol",
            "",
            "The argmin of the seed-mean target risk (the run's target) at each budget, per grid.",
            "",
            *blocks,
        ]
    )
