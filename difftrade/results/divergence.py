"""Training divergence in a results dataset: the members whose training diverged (NaN/inf
training steps) as a mask over the grid and by flat member index, and the sentence a report or an
error prints about them. (Not the KL divergences of the certificates: :mod:`difftrade.theory.kl`.)
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from difftrade.results.schema import GRID_DIMS


def diverged_mask(ds: xr.Dataset) -> xr.DataArray | None:
    """Bool ``[difficulty, budget, seed]``: members with NaN/inf training steps (``diverged``, or
    ``nonfinite_steps > 0`` for results files without it); None when neither is stored."""
    if "diverged" in ds:
        return ds["diverged"].astype(bool)
    if "nonfinite_steps" in ds:
        return ds["nonfinite_steps"] > 0
    return None


def diverged_members(ds: xr.Dataset) -> np.ndarray:
    """Bool ``[M]`` by flat member index (grid order): members whose training diverged (:func:`diverged_mask`)."""
    bad = diverged_mask(ds)
    if bad is None:
        return np.zeros(int(np.prod([ds.sizes[d] for d in GRID_DIMS])), bool)
    return np.asarray(bad.transpose(*GRID_DIMS).values, bool).reshape(-1)


def describe_diverged(ds: xr.Dataset, limit: int = 10) -> str:
    """``"N diverged member(s) (d, n, seed): (1, 32, 0), ..."`` (the first ``limit``), or ``""`` if none."""
    bad = diverged_mask(ds)
    if bad is None or not bool(bad.any()):
        return ""
    bad = bad.transpose("difficulty", "budget", "seed")
    cells = [
        f"({int(bad['difficulty'][i])}, {int(bad['budget'][j])}, {int(bad['seed'][k])})"
        for i, j, k in np.argwhere(bad.values)
    ]
    more = f", ... and {len(cells) - limit} more" if len(cells) > limit else ""
    return (
        f"{len(cells)} diverged member(s) (NaN/inf training steps; their risks are NaN and excluded), "
        f"(d, n, seed): {', '.join(cells[:limit])}{more}"
    )
