"""Runs side by side (``difftrade report A B ...``): what differs in their configs, and d*(n),
its target risk and the all-pairs best set at every budget any of them measured."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from difftrade.analysis import optimum as analysis
from difftrade.analysis import predictors, selection
from difftrade.tasks import configs
from difftrade.theory.grid_values import argmin_difficulty

ALPHA = 0.05
CAPTION = (
    "d*(n), seed-mean target risk at d*, and the all-pairs best set (paired sign-flip, Holm, "
    "α = {alpha}); · where a run has no such budget."
)


def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"grid": {"seeds": [...]}}`` -> ``{"grid.seeds": [...]}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out.update(flat(value, name + ".") if isinstance(value, dict) else {name: value})
    return out


def config_differences(grids: dict[str, xr.Dataset]) -> list[str]:
    """Markdown rows ``| field | value per run |`` for every config field that differs."""
    forms = {name: flat(configs.stored(ds, name).to_dict()) for name, ds in grids.items()}
    fields = sorted({k for form in forms.values() for k in form})
    rows = []
    for field in fields:
        values = [forms[name].get(field, "–") for name in grids]
        if any(v != values[0] for v in values):
            rows.append(f"| `{field}` | " + " | ".join(f"`{v}`" for v in values) + " |")
    return rows


def per_budget(ds: xr.Dataset) -> dict[int, tuple[int, float, str]]:
    """``{budget: (d*, seed-mean target risk at d*, all-pairs best set)}`` of one run."""
    r, d = predictors.risk_grid(ds), ds["difficulty"].values
    mean, best = analysis.seed_mean(r), selection.best_set(r, d, alpha=ALPHA)
    star = argmin_difficulty(mean, d)
    out = {}
    for j, n in enumerate(ds["budget"].values):
        if np.isfinite(star[j]):
            i = int(np.flatnonzero(d == star[j])[0])
            members = "{" + ", ".join(str(int(v)) for v in best.members(j)) + "}"
            out[int(n)] = (int(star[j]), float(mean[i, j]), members)
    return out


def compare(grids: dict[str, xr.Dataset]) -> str:
    """Markdown comparing ``grids`` (run name -> results, two or more)."""
    names = list(grids)
    measured = {name: per_budget(ds) for name, ds in grids.items()}
    budgets = sorted({n for m in measured.values() for n in m})
    head = "| | " + " | ".join(names) + " |"
    rule = "|:---|" + ":---|" * len(names)
    lines = ["# Runs compared", "", head, rule]
    lines.append(
        "| config hash | "
        + " | ".join(ds.attrs.get("config_hash", "?") for ds in grids.values())
        + " |"
    )
    lines.append("| seeds | " + " | ".join(str(ds.sizes["seed"]) for ds in grids.values()) + " |")
    bases = [ds.attrs.get("base_config_hash", "–") for ds in grids.values()]
    lines.append("| base (its config hash) | " + " | ".join(bases) + " |")
    diffs = config_differences(grids)
    lines += ["", "Config fields that differ:" if diffs else "The configs do not differ.", ""]
    lines += [head.replace("| |", "| field |", 1), rule, *diffs] if diffs else []
    lines += [
        "",
        CAPTION.format(alpha=ALPHA),
        "",
        "| n | " + " | ".join(names) + " |",
        "|---:|" + ":---|" * len(names),
    ]
    for n in budgets:
        cells = [
            "·" if n not in measured[name] else "{}: {:.3f} {}".format(*measured[name][n])
            for name in names
        ]
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
