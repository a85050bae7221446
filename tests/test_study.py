"""Study tables: re-targeting a finished run against the direct formula, the hard-weighted target,
and a clear error for a folder without grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from difftrade.analysis import study
from difftrade.results import assembly
from difftrade.results import schema as results

STUDY = Path(__file__).resolve().parents[1] / "docs" / "runs" / "study"

GRID = Path(__file__).resolve().parents[1] / "docs" / "runs" / "study" / "addition.nc"


def test_with_the_run_target_reproduces_the_stored_risks():
    ds = results.load(GRID)
    same = assembly.with_target(ds, ds["target_weights"].values)
    for name in ("target_risk", "extrapolation_gap"):
        np.testing.assert_allclose(
            same[name].values, ds[name].values, rtol=0, atol=1e-12, equal_nan=True
        )


def test_with_target_is_the_level_weighted_risk():
    ds = results.load(GRID)
    hard = study.hard_target(ds.sizes["level"])
    np.testing.assert_allclose(hard, np.arange(1, 5) / 10)
    out = assembly.with_target(ds, hard)
    level_risk = 1 - ds["level_exact"].transpose("difficulty", "budget", "seed", "level").values
    want = np.einsum("dnsl,l->dns", level_risk, hard)
    want[ds["diverged"].values] = np.nan
    np.testing.assert_allclose(
        out["target_risk"].transpose("difficulty", "budget", "seed").values, want, atol=1e-12
    )
    np.testing.assert_allclose(
        out["extrapolation_gap"].values,
        out["target_risk"].values - ds["test_risk"].values,
        atol=1e-12,
    )
    np.testing.assert_array_equal(out["train_risk"].values, ds["train_risk"].values)
    last = assembly.with_target(ds, np.eye(4)[3])  # all target mass on the hardest level
    np.testing.assert_allclose(last["target_risk"].values, level_risk[..., 3], atol=1e-12)


def test_bad_target_and_empty_folder_are_refused(tmp_path):
    with pytest.raises(ValueError, match="target_weights sums to 0.5"):
        assembly.with_target(results.load(GRID), [0.5, 0, 0, 0])
    with pytest.raises(ValueError, match="holds no <family>.nc result files"):
        study.summarize(tmp_path)


def test_leave_one_budget_out_has_the_threshold_predictor():
    """The recommender's validation refits the threshold model without each budget, with π from
    the run's level structure (nested addition, point rows: π(d) = target mass above d)."""
    from difftrade import recommender
    from difftrade.analysis import optimum as analysis
    from difftrade.theory import threshold

    ds = results.load(GRID)
    loo = recommender.validate_leave_one_budget_out(ds, n_boot=0)
    d, n = ds["difficulty"].values.astype(float), ds["budget"].values.astype(float)
    mean = analysis.seed_mean(ds["target_risk"].transpose("difficulty", "budget", "seed").values)
    pi = np.array([0.75, 0.5, 0.25, 0.0])
    np.testing.assert_allclose(
        recommender.validation._uncovered_mass(ds, recommender.surface(ds)), pi
    )
    for j in range(n.size):
        keep = np.arange(n.size) != j
        fit = threshold.fit_threshold(d, n[keep], mean[:, keep], pi)
        assert loo.predicted["threshold"][j] == fit.predict_d_star(n[j : j + 1])[0]
    assert "threshold (err, regret, support)" in str(loo)


def test_above_table_is_the_mean_accuracy_on_harder_levels():
    """Each cell, by a plain loop: over the seeds that did not diverge, the mean of the row's
    exact match on the levels above its own difficulty; the hardest row has no such levels."""
    ds = results.load(GRID.with_name("chain_mixture.nc"))
    ds["diverged"][0, 0, 0] = True  # a diverged member is skipped
    rows = [line for line in study.above_table(ds).splitlines()[2:]]
    levels = ds["level"].values
    assert [int(r.split("|")[1]) for r in rows] == [
        int(d) for d in ds["difficulty"].values if (levels > d).any()
    ]
    for row in rows:
        cells = [float(c) for c in row.split("|")[2:-1]]
        d = int(row.split("|")[1])
        i = int(np.flatnonzero(ds["difficulty"].values == d)[0])
        for j in range(ds.sizes["budget"]):
            per_seed = [
                np.mean(
                    [
                        float(ds["level_exact"][i, j, s, k])
                        for k in range(len(levels))
                        if levels[k] > d
                    ]
                )
                for s in range(ds.sizes["seed"])
                if not bool(ds["diverged"][i, j, s])
            ]
            assert cells[j] == pytest.approx(np.mean(per_seed), abs=5e-4), (d, j)


def test_protocol_table_sets_each_grids_d_star_side_by_side():
    """Grids of one task and training distribution under different protocols share a table whose
    cells are each grid's d*(n), "·" at budgets it did not measure; a lone protocol has none."""
    from difftrade.analysis import optimum, protocols

    grids = {n: results.load(STUDY / f"{n}.nc") for n in ("chain", "chain_validation", "sorting")}
    text = protocols.protocol_table(grids)
    assert "chain, training distribution `up_to`:" in text and "sorting" not in text
    assert protocols.protocol(grids["chain"]) == "fixed steps (600)"
    assert protocols.protocol(grids["chain_validation"]).startswith(
        "validation stopping (cap 1,800"
    )
    header = next(line for line in text.splitlines() if line.startswith("| grid |"))
    budgets = [int(c.replace(",", "")) for c in header.strip("|").split("|")[2:]]
    for name in ("chain", "chain_validation"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.strip("|").split("|")[2:]]
        best = optimum.d_star(grids[name])
        for b, cell in zip(budgets, cells, strict=True):
            expected = str(int(best.sel(budget=b))) if b in best["budget"].values else "·"
            assert cell == expected, (name, b)
    assert protocols.protocol_table({"sorting": grids["sorting"]}) == ""
