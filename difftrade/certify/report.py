"""The ``bounds.md`` report: certificates against measured risks, d*(n) from each bound, and
certified sets of optimal difficulties. Reads arrays only (results and bounds Datasets); the d*(n)
analyses it prints are :mod:`difftrade.analysis.certified`, which the figures share."""

from __future__ import annotations

import numpy as np
import xarray as xr

from difftrade.analysis.certified import VACUOUS, certified_view, d_star_table
from difftrade.analysis.optimum import seed_mean
from difftrade.certify.priors import PRIORS
from difftrade.certify.settings import BoundSettings, stored_settings
from difftrade.results import divergence


def render(ds: xr.Dataset, b: xr.Dataset) -> str:
    """Markdown summary: certificates vs measured risks, shift bounds, d*(n) three ways."""
    settings = stored_settings(
        b
    )  # checks every stored setting, the certified seeds and budgets too
    ds, b = certified_view(ds, b)
    table = d_star_table(ds, b)
    lines = [
        *_setting_lines(ds, b, settings),
        "",
        "```",
        b.attrs["delta_budget"],
        "```",
        "",
        *_member_rows(ds, b),
        *_summary_lines(ds, b),
        *_d_star_rows(ds, table, "target_iw_bound" in b),
    ]
    if "certified_set" in table:
        lines += _certified_set_lines(ds, b, table, settings)
    return "\n".join(lines) + "\n"


def _setting_lines(ds: xr.Dataset, b: xr.Dataset, settings: BoundSettings) -> list[str]:
    """The report's title and what was certified: posterior, bound set, Monte-Carlo step, prior, left-out members."""
    iw = "target_iw_bound" in b
    fitted = settings.posterior == "fitted"
    if settings.bound_set == "train":
        weighted = (
            "; importance-weighted: a second certificate on the same examples, each weighted by t/s of the level "
            "it was drawn at (B · bound + π), "
            + (
                "at the σ, σ_P of cert. L_S(Q) (the same Q)."
                if settings.iw_selection == "shared"
                else "at its own σ, σ_P."
            )
        )
        bound_set = (
            "each member's own n training examples (n = budget); cert. L_T(Q) = the change of measure applied "
            "to cert. L_S(Q)" + (weighted if iw else ".")
        )
    else:
        bound_set = f"{settings.n_bound:,} fresh examples from S and from T per member."
    monte_carlo = (
        f"r = {settings.num_draws} fresh weight draw(s) per example and σ (slack ln(K/δ′)/(r·n))."
        if settings.monte_carlo == "per_example"
        else "m weight draws, each on the whole bound set (Langford–Caruana, slack ln(2K/δ′)/m)."
    )
    stale = (
        "**Stale shift bounds:** this bounds.nc has no exact change-of-measure field. Its shift bounds and any "
        "composed cert. L_T(Q) came from an inverted kl change of measure, which can fall below the true target "
        "risk. `difftrade bound RUN --refresh-shift` recomputes them and keeps the certificates."
    )
    return [
        f"# Certificates and shift bounds (config {b.attrs['config_hash']}, {b.attrs['certified_members']} members)",
        "",
        "PAC-Bayes certificates bound the risk of the *stochastic* network "
        + ("Q = N(μ, diag σ²) fitted to the bound" if fitted else "Q = N(w, σ²I)")
        + "; the measured risks are those of the deterministic network. Means over the certified seeds "
        + f"({', '.join(str(int(v)) for v in ds['seed'].values)}); `vacuous` = bound ≥ {VACUOUS}; "
        "‖μ − w₀‖ = distance from Q's mean to the prior centre.",
        "Bound set: " + bound_set,
        "Monte-Carlo step: " + monte_carlo,
        *([line] if (line := PRIORS[settings.prior].report_line) else []),
        *_diverged_lines(ds, b),
        *([stale] if "shift_bound" not in b.attrs else []),
    ]


def _member_rows(ds: xr.Dataset, b: xr.Dataset) -> list[str]:
    """The table of seed-mean measured risks, certificates, shift bounds, KL and distance per (d, n)
    (all-NaN cells, left uncertified, stay NaN)."""
    iw = "target_iw_bound" in b
    lines = [
        (
            "| d | n | train risk | test risk (S) | cert. L_S(Q) | target risk | cert. L_T(Q) | "
            + ("cert. L_T(Q), importance-weighted | " if iw else "")
            + "shift bound on R_T | KL (S) | ‖μ − w₀‖ |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if iw else ""),
    ]
    cols = {
        "train": ds["train_risk"].values,
        "test": ds["test_risk"].values,
        "cs": b["in_dist_bound"].values,
        "target": ds["target_risk"].values,
        "ct": b["target_bound"].values,
        "shift": b["shift_target_bound"].values,
        "iw": b["target_iw_bound"].values if iw else None,
        "kl": b["in_dist_kl"].values,
        "dist": b["prior_distance"].values
        if "prior_distance" in b
        else np.full(b["in_dist_kl"].shape, np.nan),
    }
    for i, d in enumerate(ds["difficulty"].values):
        for j, n in enumerate(ds["budget"].values):
            row = [
                seed_mean(cols[k][i, j])
                for k in ("train", "test", "cs", "target", "ct", *(("iw",) if iw else ()), "shift")
            ]
            lines.append(
                f"| {d} | {int(n):,} | "
                + " | ".join(f"{v:.3f}" for v in row)
                + "".join(
                    " | —" if np.isnan(v) else f" | {v:.3g}"
                    for v in (seed_mean(cols["kl"][i, j]), seed_mean(cols["dist"][i, j]))
                )
                + " |"
            )
    return lines


def _share_nonvacuous(values: np.ndarray) -> str:
    """``"k of m"``: the certified (finite) members whose bound is below :data:`VACUOUS`."""
    done = values[np.isfinite(values)]
    return f"{int(np.sum(done < VACUOUS))} of {done.size}"


def _summary_lines(ds: xr.Dataset, b: xr.Dataset) -> list[str]:
    """The fitted posterior's retained move, the non-vacuous counts and π per difficulty."""
    lines = []
    if "fit_retained" in b:
        kept = b["fit_retained"].values[np.isfinite(b["fit_retained"].values)]
        lines += [
            "",
            (
                f"Fitted posterior: μ keeps {kept.min():.2f} – {kept.max():.2f} of training's move away from the "
                "prior centre (1 = the trained weights, 0 = back at the prior: then Q certifies the prior, not the member)."
            ),
        ]
    iw = "target_iw_bound" in b
    return lines + [
        "",
        f"Non-vacuous certificates: {_share_nonvacuous(b['in_dist_bound'].values)} in-distribution, "
        f"{_share_nonvacuous(b['target_bound'].values)} on the target"
        + (
            f" ({_share_nonvacuous(b['target_iw_bound'].values)} importance-weighted)."
            if iw
            else "."
        ),
        "Target mass no training example can cover, per difficulty (π): "
        + ", ".join(
            f"d={d}: {p:.3f}" for d, p in zip(ds["difficulty"].values, b["uncoverable_mass"].values)
        ),
    ]


def _d_star_rows(ds: xr.Dataset, table: dict[str, np.ndarray], iw: bool) -> list[str]:
    """The table of d*(n): measured, from each bound, and the seeds' agreement."""
    lines = [
        "",
        (
            "d* from a bound is the difficulty with the smallest bound, `—` where every bound at that n is vacuous. "
            "`seeds` columns: of the seeds whose own certified L_T(Q) names a d*, those where it is the d* of their own "
            "measured target risks."
        ),
        "",
        "| n | empirical d* | d* from certified L_T(Q) | d* from shift bound | seeds: certified d* = measured d* |"
        + (
            " d* from importance-weighted L_T(Q) | seeds: importance-weighted d* = measured d* |"
            if iw
            else ""
        ),
        "|---:|---:|---:|---:|---:|" + ("---:|---:|" if iw else ""),
    ]

    def fmt(v: float) -> str:
        return "—" if np.isnan(v) else f"{v:.0f}"

    def share(agree: float, informative: float) -> str:
        return f"{int(agree)} of {int(informative)}" if informative else "—"

    for j, n in enumerate(ds["budget"].values):
        lines.append(
            f"| {int(n):,} | {fmt(table['empirical'][j])} | {fmt(table['certified'][j])} | {fmt(table['shift'][j])} | "
            + share(table["seeds_agree"][j], table["seeds_informative"][j])
            + " |"
            + (
                f" {fmt(table['importance'][j])} | {share(table['iw_seeds_agree'][j], table['iw_seeds_informative'][j])} |"
                if iw
                else ""
            )
        )
    return lines


def _diverged_lines(ds: xr.Dataset, b: xr.Dataset) -> list[str]:
    """The report's line on the members left uncertified because they (or their grid prior) diverged;
    ``ds``, ``b``: the :func:`certified_view` arrays."""
    text = divergence.describe_diverged(ds)
    mask = divergence.diverged_mask(ds)
    own = int(mask.sum()) if mask is not None else 0
    if (
        "uncertified_diverged" not in b.attrs
    ):  # a bounds.nc from before diverged members were left out
        return (
            [
                (
                    f"**Diverged members:** {text}. This bounds.nc predates leaving them uncertified: its numbers for them "
                    "are not certificates; rerun `difftrade bound`."
                )
            ]
            if text
            else []
        )
    others = int(b.attrs["uncertified_diverged"]) - own
    parts = (
        [
            (
                f"**Left uncertified:** {text}: their weights come from NaN/inf training steps, so bounds.nc holds NaN "
                "for them and no mean or d* counts them."
            )
        ]
        if text
        else []
    )
    if others > 0:
        parts.append(
            f"{'Also left' if text else '**Left'} uncertified{'' if text else ':**'} {others} member(s) whose "
            "grid prior (the same difficulty and seed at the next smaller budget) diverged."
        )
    return [" ".join(parts)] if parts else []


def _certified_set_lines(
    ds: xr.Dataset, b: xr.Dataset, table: dict[str, np.ndarray], settings: BoundSettings
) -> list[str]:
    """The report's table of certified sets of optimal difficulties, per budget and seed."""
    diffs, seeds = ds["difficulty"].values, ds["seed"].values
    measured = table["measured_per_seed"]  # [N, S]
    per_member = settings.delta + settings.delta_prime + settings.delta_lower
    columns = [
        (key, label)
        for key, label in (
            ("certified_set", "certified set per seed"),
            ("iw_certified_set", "importance-weighted set per seed"),
            ("heldout_set", "held-out test sets, per seed"),
        )
        if key in table
    ]

    def cell(key: str, j: int) -> str:
        out = []
        for k, seed in enumerate(seeds):
            if not np.any(np.isfinite(b["target_bound"].values[:, j, k])):
                continue  # this seed was not certified at this n
            members = diffs[table[key][:, j, k]]
            out.append(f"{int(seed)}: {{{', '.join(str(int(d)) for d in members)}}}")
        return "; ".join(out) or "—"

    lines = [
        "",
        (
            "Certified sets of optimal difficulties: d is left out when another difficulty's certified L_T(Q) is below "
            "d's certified *lower* end, so the comparison itself is certified (comparing two upper bounds, as the d* "
            "columns above do, certifies no order). A lower end counts only where d's own certificate is non-vacuous: "
            "otherwise d's σ was picked among vacuous ties and its Q is an arbitrary, often very noisy, network. Per n "
            f"and seed, the set holds with probability ≥ 1 − {len(diffs)} × {per_member:.6g} = "
            f"{1 - len(diffs) * per_member:.6g} (each member's interval: δ + δ′ + δ_low)."
            + (
                " For contrast, the last column orders the deterministic networks by the Clopper–Pearson intervals of "
                "their target risks from the run's held-out test sets (no KL; per n and seed ≥ 1 − "
                f"{len(diffs)} × {settings.delta_heldout:.6g} = {1 - len(diffs) * settings.delta_heldout:.6g}): "
                "what held-out data certifies, against what the training data alone does."
                if "heldout_set" in table
                else ""
            )
        ),
        "",
        "| n | measured d* per seed | " + " | ".join(label for _, label in columns) + " |",
        "|---:|---|" + "---|" * len(columns),
    ]
    for j, n in enumerate(ds["budget"].values):
        picked = "; ".join(
            f"{int(seed)}: {'—' if np.isnan(measured[j, k]) else int(measured[j, k])}"
            for k, seed in enumerate(seeds)
        )
        lines.append(
            f"| {int(n):,} | {picked} | " + " | ".join(cell(key, j) for key, _ in columns) + " |"
        )
    return lines
