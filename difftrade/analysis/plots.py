"""Figures of a results Dataset (matplotlib, Agg backend): PNG and PDF.

* ``heatmap``         target risk over training difficulty × budget with the seed range, d*(n) marked
* ``d_star_curve``    d*(n) with its bootstrap interval over seeds
* ``gap_decomposition`` train risk + generalization gap + extrapolation gap = target risk,
                      against difficulty, one panel per budget
* ``learning_curves`` training loss per checkpoint, one panel per budget
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from difftrade.analysis.certified import certified_view, d_star_table
from difftrade.analysis.optimum import BOOTSTRAP_RESAMPLES, bootstrap_d_star, seed_mean
from difftrade.theory.grid_values import argmin_difficulty, argmin_index, nan_mean

COLORS = {"train": "#4C72B0", "gen": "#DD8452", "extrap": "#55A868", "target": "black"}


def _grid(ds: xr.Dataset, name: str) -> np.ndarray:
    """``ds[name]`` as a float array ``[D, N, S]``."""
    return np.asarray(ds[name].transpose("difficulty", "budget", "seed").values, dtype=float)


def _budget_labels(budgets: np.ndarray) -> list[str]:
    return [f"{int(b):,}" for b in budgets]


def _budget_panels(num: int, height: float) -> tuple[plt.Figure, list[plt.Axes]]:
    """One panel per budget, at most 4 per row, shared y axis; unused panels hidden."""
    cols = min(num, 4)
    rows = -(-num // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.3 * cols, height * rows), sharey=True, squeeze=False
    )
    flat = list(axes.ravel())
    for ax in flat[num:]:
        ax.axis("off")
    return fig, flat[:num]


def heatmap(ds: xr.Dataset) -> plt.Figure:
    """Target risk (seed mean, as in the tables) over difficulty × budget, each cell with its
    lowest and highest seed; red outlines mark d*(n)."""
    grid = _grid(ds, "target_risk")
    risk = seed_mean(grid)  # [D, N]
    finite = np.isfinite(grid)
    low, high = (
        np.where(finite, grid, np.inf).min(-1),
        np.where(finite, grid, -np.inf).max(-1),
    )  # seed range
    diffs, budgets = ds["difficulty"].values, ds["budget"].values
    fig, ax = plt.subplots(figsize=(2.0 + 1.0 * len(budgets), 1.6 + 0.5 * len(diffs)))
    im = ax.imshow(risk, origin="lower", aspect="auto", cmap="viridis_r", vmin=0, vmax=1)
    for i in range(len(diffs)):
        for j in range(len(budgets)):
            text = (
                "all\ndiverged"
                if not np.isfinite(risk[i, j])
                else f"{risk[i, j]:.2f}\n[{low[i, j]:.2f}, {high[i, j]:.2f}]"
            )
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=6.5,
                color="black" if np.isfinite(risk[i, j]) and risk[i, j] < 0.5 else "white",
            )
    best = argmin_index(risk, diffs)  # [N]; -1: no finite cell
    for j in np.flatnonzero(best >= 0):  # outline the d*(n) cell, keep its number readable
        i = best[j]
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2.5))
    ax.set_xticks(range(len(budgets)), _budget_labels(budgets), rotation=45)
    ax.set_yticks(range(len(diffs)), [str(d) for d in diffs])
    ax.set_xlabel("training budget n (examples)")
    ax.set_ylabel("training difficulty d")
    ax.set_title(
        f"{ds.attrs.get('task', '')}: target risk, seed mean [lowest, highest seed]\n"
        "(red outline: d*(n), the lowest seed mean per budget)",
        fontsize=10,
    )
    fig.colorbar(im, ax=ax, label="target risk (1 − exact match)")
    fig.tight_layout()
    return fig


def d_star_curve(ds: xr.Dataset, n_boot: int = BOOTSTRAP_RESAMPLES) -> plt.Figure:
    """d*(n) at each measured budget (no lines between budgets: nothing was measured there), its
    90% bootstrap interval over seeds, and each seed's own argmin as small dots."""
    grid = _grid(ds, "target_risk")
    diffs, budgets = ds["difficulty"].values, ds["budget"].values
    boot = bootstrap_d_star(grid, diffs, n_boot=n_boot, level=0.9)
    per_seed = np.stack(
        [argmin_difficulty(grid[:, :, k], diffs) for k in range(grid.shape[2])], -1
    )  # [N, S]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.vlines(
        budgets,
        boot.low - 0.15,
        boot.high + 0.15,
        color="C0",
        alpha=0.25,
        lw=10,
        label="90% bootstrap (seeds)",
    )
    # each seed at its own level, spread sideways (log-x offsets within ±0.13, under half of a √2 step)
    offsets = np.linspace(-0.13, 0.13, grid.shape[2]) if grid.shape[2] > 1 else np.zeros(1)
    for k in range(grid.shape[2]):
        ax.plot(
            budgets * np.exp(offsets[k]),
            per_seed[:, k],
            ".",
            color="dimgrey",
            ms=4,
            zorder=3,
            label="each seed's argmin" if k == 0 else None,
        )
    ax.plot(
        budgets,
        boot.d_star,
        "o",
        mfc="none",
        mec="C0",
        mew=2,
        ms=11,
        zorder=2,
        label="d*(n): argmin of the seed mean",
    )
    ax.set_xscale("log")
    ax.set_xticks(budgets, _budget_labels(budgets), rotation=45)
    ax.minorticks_off()
    ax.set_yticks(diffs)
    ax.set_ylim(diffs.min() - 0.6, diffs.max() + 0.5)
    ax.set_xlabel("training budget n (examples)")
    ax.set_ylabel("optimal training difficulty d*")
    ax.set_title("d*(n) at the measured budgets (target risk)", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def gap_decomposition(ds: xr.Dataset) -> plt.Figure:
    """Waterfall per difficulty: train risk, + generalization gap, + extrapolation gap = target risk."""
    diffs, budgets = ds["difficulty"].values, ds["budget"].values
    mean = {
        k: seed_mean(_grid(ds, k))
        for k in ("train_risk", "generalization_gap", "extrapolation_gap", "target_risk")
    }
    fig, panels = _budget_panels(len(budgets), 3.2)
    x = np.arange(len(diffs))
    for j, b in enumerate(budgets):
        ax = panels[j]
        train, gen, ext = (
            mean["train_risk"][:, j],
            mean["generalization_gap"][:, j],
            mean["extrapolation_gap"][:, j],
        )
        ax.bar(x, train, 0.7, color=COLORS["train"], label="train risk")
        ax.bar(x, gen, 0.7, bottom=train, color=COLORS["gen"], label="generalization gap")
        # a negative gap is drawn downward from the top of the stack, outlined in red
        ax.bar(
            x,
            ext,
            0.7,
            bottom=train + gen,
            color=COLORS["extrap"],
            label="extrapolation gap",
            hatch="//",
            alpha=0.85,
            edgecolor=np.where(ext < 0, "red", COLORS["extrap"]).tolist(),
        )
        ax.plot(x, mean["target_risk"][:, j], "k_", ms=18, mew=2, label="target risk")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xticks(x, [str(d) for d in diffs])
        ax.set_title(f"n = {int(b):,}", fontsize=10)
        ax.set_xlabel("training difficulty d")
        if j % 4 == 0:
            ax.set_ylabel("risk (1 − exact match)")
    handles, labels = panels[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(
        "target risk = train risk + generalization gap + extrapolation gap (seed mean)", fontsize=10
    )
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    return fig


def learning_curves(ds: xr.Dataset) -> plt.Figure:
    """Training cross-entropy per checkpoint segment, one line per difficulty, one panel per budget."""
    diffs, budgets = ds["difficulty"].values, ds["budget"].values
    k = ds["checkpoint"].values
    # fixed epochs: steps differ by budget and the coordinate counts segments
    steps = (
        ds["train_steps"].values[:, None] * k / k[-1]
        if "train_steps" in ds
        else np.broadcast_to(k, (len(budgets), len(k)))
    )
    fig, panels = _budget_panels(len(budgets), 2.6)
    curve = ds["loss_curve"].reduce(nan_mean, dim="seed")  # skips diverged members
    curve = curve.transpose("difficulty", "budget", "checkpoint").values  # [D, N, K]
    for j, b in enumerate(budgets):
        ax = panels[j]
        for i, d in enumerate(diffs):
            ax.plot(
                steps[j],
                curve[i, j],
                marker=".",
                color=level_colour(i, len(diffs)),
                label=f"d={d}",
            )
        ax.set_yscale("log")
        ax.set_title(f"n = {int(b):,}", fontsize=10)
        ax.set_xlabel("training step")
        if j % 4 == 0:
            ax.set_ylabel("train cross-entropy (nats/token)")
        ax.grid(alpha=0.3)
    panels[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


DPI = 200  # saved figures


def level_colour(i: int, count: int) -> tuple[float, float, float, float]:
    """Colour ``i`` of ``count`` ordered lines: viridis (ordered and colour-blind safe) from dark
    purple to green, stopping at 0.6 of its range, where its contrast with white is still 3:1
    (the lighter end, up to yellow, is too faint on white)."""
    return plt.cm.viridis(0.6 * i / max(count - 1, 1))


FIGURES = {
    "heatmap": heatmap,
    "d_star": d_star_curve,
    "gaps": gap_decomposition,
    "learning_curves": learning_curves,
}


def save_all(
    ds: xr.Dataset, out_dir: str | Path, formats: tuple[str, ...] = ("png", "pdf")
) -> list[Path]:
    """Draw every figure into ``out_dir``; returns the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fn in FIGURES.items():
        fig = fn(ds)
        for fmt in formats:
            path = out_dir / f"{name}.{fmt}"
            fig.savefig(path, dpi=DPI)
            written.append(path)
        plt.close(fig)
    return written


def bounds_overlay(ds: xr.Dataset, b: xr.Dataset) -> plt.Figure:
    """Per certified budget: train risk, measured test risk, certified L_S(Q); target risk and its bounds."""
    ds, b = certified_view(ds, b)  # measured means over the certified seeds only
    diffs, budgets = ds["difficulty"].values, ds["budget"].values
    fig, panels = _budget_panels(len(budgets), 2.9)
    series = [
        (ds["train_risk"].values, "train risk", "C0", "o-"),
        (ds["test_risk"].values, "test risk (S_d)", "C1", "o-"),
        (b["in_dist_bound"].values, "certified L_S(Q)", "C1", "^--"),
        (ds["target_risk"].values, "target risk (T)", "C2", "s-"),
        (b["target_bound"].values, "certified L_T(Q)", "C2", "v--"),
        (b["shift_target_bound"].values, "shift bound on R_T", "C3", "d:"),
        *(
            [(b["target_iw_bound"].values, "certified L_T(Q), importance-weighted", "C4", "x--")]
            if "target_iw_bound" in b
            else []
        ),
    ]
    for j, n in enumerate(budgets):
        ax = panels[j]
        for values, label, color, style in series:
            ax.plot(diffs, seed_mean(values[:, j]), style, color=color, label=label, ms=4)
        ax.set_title(f"n = {int(n):,}", fontsize=10)
        ax.set_xlabel("training difficulty d")
        ax.set_xticks(diffs)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        if j % 4 == 0:
            ax.set_ylabel("risk (0-1, exact match)")
    handles, labels = panels[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(
        "measured risks vs certificates (mean over the certified seeds); bounds at 1 are vacuous",
        fontsize=10,
    )
    legend_inches = 0.2 * -(-len(labels) // 3) + 0.15  # three entries a row
    fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 0.96))
    return fig


def extrapolation_band(ds: xr.Dataset, b: xr.Dataset) -> plt.Figure:
    """Measured extrapolation gap with its certified band, per budget, against difficulty."""
    diffs, budgets = ds["difficulty"].values, ds["budget"].values
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for j, n in enumerate(budgets):
        color = level_colour(j, len(budgets))
        gap = seed_mean(_grid(ds, "extrapolation_gap"))[:, j]
        lo = seed_mean(b["extrap_gap_lower"].values[:, j])
        hi = seed_mean(b["extrap_gap_upper"].values[:, j])
        ax.plot(diffs, gap, "o-", color=color, ms=3, label=f"n={int(n):,}")
        ax.fill_between(diffs, lo, hi, color=color, alpha=0.12)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("training difficulty d")
    ax.set_ylabel("extrapolation gap R_T − R_S")
    ax.set_title("measured extrapolation gap and certified band (seed mean)", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def d_star_comparison(ds: xr.Dataset, b: xr.Dataset) -> plt.Figure:
    """Empirical d*(n), d* from the certified target bound, from the shift bound, and a fitted model."""
    from difftrade.theory.tradeoff_fitting import fit_dataset

    full = ds  # the fitted model sees every seed and budget
    ds, b = certified_view(ds, b)
    table = d_star_table(ds, b)
    diffs, budgets = ds["difficulty"].values, ds["budget"].values
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(budgets, table["empirical"], "o-", label="empirical d*(n), certified seeds")
    ax.plot(
        budgets,
        table["certified"],
        "v--",
        label="argmin certified L_T(Q) (omitted where all vacuous)",
    )
    ax.plot(budgets, table["shift"], "d:", label="argmin shift bound (omitted where all vacuous)")
    if "importance" in table:
        ax.plot(
            budgets,
            table["importance"],
            "x--",
            label="argmin importance-weighted L_T(Q) (omitted where all vacuous)",
        )
    try:
        fitted = fit_dataset(full)
        dense = np.geomspace(budgets.min(), budgets.max(), 100)
        ax.plot(
            dense,
            fitted.predict_d_star(dense),
            "-",
            color="grey",
            alpha=0.7,
            label=f"fitted {type(fitted.model).__name__}",
        )
    except Exception as err:  # noqa: BLE001 - a failed fit must not cost the other curves
        ax.text(0.02, 0.02, f"model fit failed: {err}", transform=ax.transAxes, fontsize=7)
    ax.set_xscale("log")
    ax.set_xticks(budgets, _budget_labels(budgets), rotation=45)
    ax.minorticks_off()
    ax.set_xlabel("training budget n (examples)")
    ax.set_ylabel("optimal training difficulty")
    ax.set_yticks(diffs)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def save_bounds(
    ds: xr.Dataset, b: xr.Dataset, out_dir: str | Path, formats: tuple[str, ...] = ("png", "pdf")
) -> list[Path]:
    """Draw the bound overlays into ``out_dir``."""
    out_dir = Path(out_dir)
    written = []
    for name, fn in (
        ("bounds", bounds_overlay),
        ("extrapolation_band", extrapolation_band),
        ("d_star_bounds", d_star_comparison),
    ):
        fig = fn(ds, b)
        for fmt in formats:
            path = out_dir / f"{name}.{fmt}"
            fig.savefig(path, dpi=DPI)
            written.append(path)
        plt.close(fig)
    return written
