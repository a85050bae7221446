"""d*(n) from the certificates of a finished run: ``bounds.nc`` against ``results.nc``, arrays only.

``ds``: a results Dataset, ``target_risk [D, N, S]`` (dims difficulty, budget, seed). ``b``: a
bounds Dataset on the same coordinates (``target_bound``, ``shift_target_bound`` ``[D, N, S]``;
optionally ``target_iw_bound``, the lower ends ``target_lower_bound`` / ``target_iw_lower_bound``
and the held-out intervals ``heldout_target_upper`` / ``heldout_target_lower``), NaN where a
member was not certified, with the JSON ``settings`` attribute that ``difftrade bound`` stores
(its ``seeds`` and ``budgets``: the certified ones, ``null`` for all).

:func:`certified_view` restricts both to the certified seeds and budgets; :func:`d_star_table`
computes d*(n) measured, from each bound, and the certified sets of optimal difficulties. The
``bounds.md`` report (:mod:`difftrade.certify.report`) and the bound figures
(:mod:`difftrade.analysis.plots`) both read them; neither needs the certifier.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from difftrade.analysis.optimum import d_star, seed_mean
from difftrade.config.settings_json import settings_table
from difftrade.theory.d_star_from_bounds import certified_d_star_set, d_star_from_bound

VACUOUS = 0.999  # a certificate at or above this says nothing about a [0, 1] risk


def certified_selection(b: xr.Dataset) -> dict[str, list[int]]:
    """The seeds and budgets ``b`` certified, read from its ``settings`` attribute:
    ``{"seed": [...], "budget": [...]}``, a dim left out where the settings say ``null`` (all).

    Reads only those two fields (the full settings are
    :func:`difftrade.certify.settings.stored_settings`); ``ValueError`` naming the file when the
    attribute is not a JSON table or a field is neither ``null`` nor a list of integers.
    """
    source = b.encoding.get("source", "bounds.nc")
    raw = settings_table(b.attrs.get("settings"), source)
    selection = {}
    for dim, key in (("seed", "seeds"), ("budget", "budgets")):
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ValueError(
                f"{source}: its settings have {key}={value!r}; allowed: null or a list of integers"
            )
        selection[dim] = value
    return selection


def certified_view(ds: xr.Dataset, b: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    """Measured results and bounds restricted to the seeds and budgets that were certified
    (:func:`certified_selection`): ``[D, N, S] -> [D, N', S']`` for every variable of both.

    Seed means of measured risks and the empirical d* are then taken over the same members as
    the certificates they are set against (``--seeds 0`` compares seed 0 with seed 0).
    """
    selection = certified_selection(b)
    return ds.sel(selection), b.sel(selection)


def d_star_table(ds: xr.Dataset, b: xr.Dataset) -> dict[str, np.ndarray]:
    """d*(n) measured and from the bounds, and per-seed agreement, on ``certified_view`` arrays.

    ``empirical``, ``certified``, ``shift`` (and ``importance`` when ``b`` has the
    importance-weighted certificate): ``[N]`` difficulties (seed means; NaN where every bound at
    that n is vacuous); ``measured_per_seed`` ``[N, S]``: each seed's own measured d*;
    ``seeds_agree`` / ``seeds_informative`` (``iw_seeds_agree`` /
    ``iw_seeds_informative``): ``[N]`` counts of seeds whose own certified L_T(Q) (importance-
    weighted) names a d* (some bound non-vacuous) and, of those, the seeds where it is the d* of
    their own measured target risks. ``heldout_set`` ``[D, N, S]`` bool: the certified set of
    the deterministic networks from the held-out test sets' intervals. ``certified_set``
    (``iw_certified_set``) ``[D, N, S]`` bool, when ``b`` has the lower ends: the difficulties
    that no other difficulty's certified L_T(Q) beats (:func:`~difftrade.theory.d_star_from_bounds.certified_d_star_set`). A member's lower end counts
    only where its own bound is informative (< ``VACUOUS``): otherwise its σ was picked among
    vacuous ties and its Q is an arbitrary, often very noisy, network.
    """
    diffs = ds["difficulty"].values
    measured = d_star_from_bound(ds["target_risk"].values, diffs)  # [N, S]

    def from_bound(field: str) -> np.ndarray:  # d* of the seed-mean bound, [N]
        return d_star_from_bound(
            seed_mean(b[field].values), diffs, vacuous=VACUOUS
        )  # all-NaN cells stay NaN

    def agreement(field: str) -> tuple[np.ndarray, np.ndarray]:
        per_seed = d_star_from_bound(b[field].values, diffs, vacuous=VACUOUS)  # [N, S]
        informative = np.isfinite(per_seed)
        return np.sum(informative & (per_seed == measured), axis=-1), np.sum(informative, axis=-1)

    out = {
        "empirical": d_star(ds["target_risk"].values, diffs),
        "measured_per_seed": measured,
        "certified": from_bound("target_bound"),
        "shift": from_bound("shift_target_bound"),
    }
    out["seeds_agree"], out["seeds_informative"] = agreement("target_bound")
    if "target_iw_bound" in b:
        out["importance"] = from_bound("target_iw_bound")
        out["iw_seeds_agree"], out["iw_seeds_informative"] = agreement("target_iw_bound")
    if "heldout_target_lower" in b:  # the deterministic networks, from the run's held-out test sets
        out["heldout_set"] = certified_d_star_set(
            b["heldout_target_upper"].values, b["heldout_target_lower"].values
        )
    for prefix, key in (("target", "certified_set"), ("target_iw", "iw_certified_set")):
        if f"{prefix}_lower_bound" in b:
            upper = b[f"{prefix}_bound"].values
            out[key] = certified_d_star_set(
                upper, np.where(upper < VACUOUS, b[f"{prefix}_lower_bound"].values, np.nan)
            )
    return out
