"""The decomposition across n of grids of one family side by side: from scratch and fine-tuned.

One column per grid, one row per term (train risk, generalization gap, extrapolation gap,
target risk); each panel draws one line per training difficulty against the budget (seed
means, diverged members skipped) and each seed as a faint dot at its own value.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from difftrade.analysis import predictors
from difftrade.analysis.optimum import seed_mean
from difftrade.analysis.plots import level_colour

ROWS = {
    "train_risk": "train risk",
    "generalization_gap": "generalization gap",
    "extrapolation_gap": "extrapolation gap",
    "target_risk": "target risk",
}


def decomposition_columns(grids: dict[str, xr.Dataset]) -> plt.Figure:
    """``grids``: column title -> results of one family (same difficulties and budgets)."""
    first = next(iter(grids.values()))
    diffs, budgets = first["difficulty"].values, first["budget"].values
    fig, axes = plt.subplots(
        len(ROWS),
        len(grids),
        figsize=(3.4 * len(grids), 2.3 * len(ROWS)),
        sharex=True,
        sharey="row",
        squeeze=False,
    )
    for c, (title, ds) in enumerate(grids.items()):
        for r, (name, label) in enumerate(ROWS.items()):
            ax, values = axes[r, c], predictors.risk_grid(ds, name)  # [D, N, S]
            for i, d in enumerate(diffs):
                colour = level_colour(i, len(diffs))
                seeds = values.shape[-1]
                ax.scatter(
                    np.repeat(budgets, seeds),
                    values[i].ravel(),
                    s=4,
                    color=colour,
                    alpha=0.25,
                    lw=0,
                )
                ax.plot(
                    budgets,
                    seed_mean(values[i]),
                    marker="o",
                    ms=3,
                    color=colour,
                    label=f"d = {int(d)}",
                )
            ax.set_xscale("log", base=2)
            ax.axhline(0, color="grey", lw=0.5)
            ax.grid(alpha=0.3)
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
            if r == len(ROWS) - 1:
                ax.set_xticks(budgets, [f"{int(b):,}" for b in budgets], fontsize=7, rotation=45)
                ax.set_xlabel("budget n (examples)")
    axes[0, 0].legend(fontsize=7, title="training difficulty", title_fontsize=7)
    fig.tight_layout()
    return fig
