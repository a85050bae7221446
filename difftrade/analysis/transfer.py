"""Transfer matrix: how well a model trained at each difficulty solves every level.

Row ``d`` (training difficulty), column ``l`` (evaluation level): exact-match accuracy on level
``l``'s held-out test set of the members trained at row ``d``, at one budget, averaged over seeds
(diverged members excluded), with the lowest and highest seed. It is read off an ordinary run's
``level_exact [difficulty, budget, seed, level]``, so every grid is also a transfer experiment;
the check to make before a tradeoff grid is a run at one large budget.

What to look for: the paper's mechanism needs harder training data to *cover* easier problems
(high accuracy left of the diagonal) and some budget-dependent reach to the right of it. A matrix
with accuracy only on the diagonal means the levels do not transfer: train on ``d_min..d``
(``[grid] train_distribution = "up_to"``) or choose another format.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from difftrade.analysis.plots import DPI
from difftrade.results import divergence


def transfer_matrix(ds: xr.Dataset, budget: int | None = None) -> xr.Dataset:
    """The transfer matrix of a results dataset at ``budget`` (default: the largest).

    Returns a Dataset with ``accuracy``, ``accuracy_low``, ``accuracy_high`` float64
    ``[difficulty, level]`` (seed mean, min, max over healthy seeds; NaN where every seed
    diverged) and ``seeds`` int ``[difficulty]`` (healthy seeds per row); attrs ``budget``, ``task``.
    """
    budgets = ds["budget"].values
    b = int(budgets.max()) if budget is None else budget
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b not in budgets:
        raise ValueError(
            f"budget={budget!r} is not in this run; allowed: {', '.join(str(int(x)) for x in budgets)}"
        )
    acc = ds["level_exact"].sel(budget=b)
    diverged = divergence.diverged_mask(ds)
    healthy = (
        xr.ones_like(acc.isel(level=0), dtype=bool) if diverged is None else ~diverged.sel(budget=b)
    )
    acc = acc.where(healthy)
    seeds = healthy.sum("seed").astype(np.int64)
    with np.errstate(all="ignore"):
        out = xr.Dataset(
            {
                "accuracy": acc.mean("seed", skipna=True),
                "accuracy_low": acc.min("seed", skipna=True),
                "accuracy_high": acc.max("seed", skipna=True),
                "seeds": seeds,
            }
        )
    out.attrs = {"budget": int(b), "task": str(ds.attrs.get("task", "?"))}
    return out.drop_vars("budget", errors="ignore")


def coverage(tm: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Mean accuracy below and above each row's own level: ``(down [D], up [D])``.

    ``down[i]``: mean over levels ``< difficulty[i]`` (NaN for the easiest row), how much harder
    training data covers easier problems; ``up[i]``: mean over levels ``> difficulty[i]`` (NaN for
    the hardest), how far it reaches beyond its own level.
    """
    acc = tm["accuracy"].values
    diffs, levels = tm["difficulty"].values, tm["level"].values
    down, up = np.full(len(diffs), np.nan), np.full(len(diffs), np.nan)
    for i, d in enumerate(diffs):
        below, above = acc[i, levels < d], acc[i, levels > d]
        if below.size and np.isfinite(below).all():
            down[i] = below.mean()
        if above.size and np.isfinite(above).all():
            up[i] = above.mean()
    return down, up


def render(tm: xr.Dataset) -> str:
    """Markdown: the matrix (mean [min, max] over seeds) and the coverage of each row."""
    levels, diffs = tm["level"].values, tm["difficulty"].values
    down, up = coverage(tm)
    lines = [
        f"## Transfer matrix: {tm.attrs['task']} at n = {tm.attrs['budget']:,}",
        "",
        (
            "Exact-match accuracy on each level's test set (rows: training difficulty; mean over seeds, "
            "[lowest, highest seed]); `below`/`above`: mean accuracy on the levels below/above the row's own."
        ),
        "",
        "| trained at | seeds | "
        + " | ".join(f"level {int(l)}" for l in levels)
        + " | below | above |",
        "|---:|---:|" + "---:|" * (len(levels) + 2),
    ]
    for i, d in enumerate(diffs):
        cells = [
            "–"
            if not np.isfinite(tm["accuracy"].values[i, j])
            else f"{tm['accuracy'].values[i, j]:.2f} [{tm['accuracy_low'].values[i, j]:.2f}, {tm['accuracy_high'].values[i, j]:.2f}]"
            for j in range(len(levels))
        ]
        lines.append(
            f"| {int(d)} | {int(tm['seeds'].values[i])} | "
            + " | ".join(cells)
            + f" | {_num(down[i])} | {_num(up[i])} |"
        )
    return "\n".join(lines) + "\n"


def _num(value: float) -> str:
    """Two decimals, or "–" where there is nothing to show (NaN)."""
    return "–" if not np.isfinite(value) else f"{value:.2f}"


def figure(tm: xr.Dataset) -> plt.Figure:
    """Heatmap of the seed-mean accuracy with each cell's value and its seed range written in it."""
    acc = tm["accuracy"].values
    levels, diffs = tm["level"].values, tm["difficulty"].values
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(levels), 0.8 + 0.6 * len(diffs)))
    im = ax.imshow(acc, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for i in range(len(diffs)):
        for j in range(len(levels)):
            lo, hi = tm["accuracy_low"].values[i, j], tm["accuracy_high"].values[i, j]
            text = (
                "diverged"
                if not np.isfinite(acc[i, j])
                else f"{acc[i, j]:.2f}\n[{lo:.2f}, {hi:.2f}]"
            )
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if not np.isfinite(acc[i, j]) or acc[i, j] < 0.6 else "black",
            )
    ax.set_xticks(range(len(levels)), [str(int(l)) for l in levels])
    ax.set_yticks(range(len(diffs)), [str(int(d)) for d in diffs])
    ax.set_xlabel("evaluation level")
    ax.set_ylabel("training difficulty")
    ax.set_title(
        f"{tm.attrs['task']}: exact-match accuracy at n = {tm.attrs['budget']:,}\n(seed mean, [min, max])",
        fontsize=9,
    )
    fig.colorbar(im, ax=ax, label="accuracy")
    fig.tight_layout()
    return fig


def save(
    tm: xr.Dataset, out_dir: str | Path, formats: tuple[str, ...] = ("png", "pdf")
) -> list[str]:
    """Write ``transfer.md`` and the figure (``transfer.<fmt>``) into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "transfer.md"]
    paths[0].write_text(render(tm))
    fig = figure(tm)
    for fmt in formats:
        paths.append(out / f"transfer.{fmt}")
        fig.savefig(paths[-1], dpi=DPI)
    plt.close(fig)
    return [str(p) for p in paths]
