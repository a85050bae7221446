"""Tidy tables of a results Dataset for other tools (pandas, a spreadsheet, an experiment tracker).

One table per set of dimensions, one row per coordinate combination and one column per variable:

* ``members``: ``[difficulty, budget, seed]`` (risks, gaps, ``diverged``, ...),
* ``levels``: ``[difficulty, budget, seed, level]`` (``level_exact``, ``level_ce``),
* ``curves``: ``[difficulty, budget, seed, checkpoint]`` (``loss_curve``, ``accuracy_curve``),
* ``cells``: ``[difficulty, budget]`` (duplicate and overlap fractions),

and any other set of dimensions under its dimension names joined by ``_``. The coordinates come
first, as columns. ``difftrade report --csv`` writes them as ``tables/NAME.csv``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import xarray as xr

NAMES = {
    ("difficulty", "budget", "seed"): "members",
    ("difficulty", "budget", "seed", "level"): "levels",
    ("difficulty", "budget", "seed", "checkpoint"): "curves",
    ("difficulty", "budget"): "cells",
}


def tidy_tables(ds: xr.Dataset) -> dict[str, pd.DataFrame]:
    """``{name: DataFrame}``: the variables of ``ds`` grouped by their dimensions (0-d ones left out)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, var in ds.data_vars.items():
        if var.dims:
            groups.setdefault(tuple(var.dims), []).append(str(name))
    return {
        NAMES.get(dims, "_".join(dims)): ds[names].to_dataframe().reset_index()[[*dims, *names]]
        for dims, names in groups.items()
    }


def write_tables(ds: xr.Dataset, out_dir: str | Path) -> list[Path]:
    """Write :func:`tidy_tables` as ``out_dir/tables/NAME.csv``; returns the paths written."""
    folder = Path(out_dir) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in tidy_tables(ds).items():
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        written.append(path)
    return written
