"""Forward validation: fit on the smallest budgets, predict larger ones; baselines and records
checked against a direct recomputation from the seed means."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from difftrade.analysis import forward
from difftrade.analysis.forward import ForwardRecord

STUDY = Path(__file__).resolve().parents[1] / "docs" / "runs" / "study"


def grid(seed: int = 0, D: int = 4, N: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    d = np.arange(1.0, D + 1)
    n = 32.0 * 2.0 ** np.arange(N)
    # d*(n) moves up with n, plus noise, so baselines disagree
    y = np.abs(np.log2(n)[None, :] / 2 - d[:, None] - 1) / 10 + rng.uniform(0, 0.05, (D, N))
    return d, n, y


def easiest_argmin(column: np.ndarray, d: np.ndarray) -> float:
    best = np.nanmin(column)
    return float(min(d[column == best]))


def test_baselines_match_a_direct_recomputation():
    d, n, y = grid()
    records = forward.forward_records(d, n, y, {}, max_ratio=np.inf)
    seen = 0
    for k in range(3, n.size):
        for j in range(k, n.size):
            truth = easiest_argmin(y[:, j], d)
            for method, pick in (
                ("carry forward", easiest_argmin(y[:, k - 1], d)),
                ("always hardest", 4.0),
                ("nearest budget", easiest_argmin(y[:, k - 1], d)),
            ):
                rec = [
                    r
                    for r in records
                    if r.method == method and r.pilots == n[k - 1] and r.budget == n[j]
                ]
                assert len(rec) == 1
                row = int(np.flatnonzero(d == pick)[0])
                assert rec[0].predicted == pick and rec[0].d_star == truth
                assert rec[0].level_error == abs(pick - truth)
                assert rec[0].risk_lost == pytest.approx(y[row, j] - y[:, j].min(), abs=0)
                seen += 1
    assert seen == len(records) == 3 * sum(n.size - k for k in range(3, n.size))


def test_an_oracle_loses_nothing_and_the_ratio_limits_the_budgets():
    d, n, y = grid(1)
    oracle = {
        "oracle": lambda dd, pilots, mean: lambda budget: y[:, int(np.flatnonzero(n == budget)[0])]
    }
    records = forward.forward_records(d, n, y, oracle)
    mine = [r for r in records if r.method == "oracle"]
    assert mine and all(r.level_error == 0 and r.risk_lost == 0 for r in mine)
    assert all(r.budget <= 8 * r.pilots for r in records)
    assert max(r.budget / r.pilots for r in records) == 8  # budgets double: 2^3 is the furthest


def test_a_predictor_that_fails_is_counted_missing_not_dropped():
    d, n, y = grid(2)

    def broken(dd, pilots, mean):
        raise RuntimeError("did not converge")

    records = forward.forward_records(d, n, y, {"broken": broken})
    mine = [r for r in records if r.method == "broken"]
    assert mine and all(np.isnan(r.predicted) and np.isnan(r.risk_lost) for r in mine)
    score = {s.method: s for s in forward.summary(records)}["broken"]
    assert score.missing == len(mine) and np.isnan(score.risk_lost)


def test_summary_weighs_every_pilot_count_the_same():
    recs = [ForwardRecord("m", 100, 200, 2.0, 1.0, 1.0, 0.4)]
    recs += [ForwardRecord("m", 200, b, 1.0, 1.0, 0.0, 0.0) for b in (400, 800, 1600)]
    (score,) = forward.summary(recs)
    assert score.level_error == pytest.approx(0.5) and score.risk_lost == pytest.approx(0.2)


def test_bad_input_is_one_line_naming_it():
    d, n, y = grid()
    with pytest.raises(ValueError, match="strictly increasing"):
        forward.forward_records(d, n[::-1], y, {})
    with pytest.raises(ValueError, match=r"mean has shape"):
        forward.forward_records(d, n, y[:, :-1], {})


def test_cli_prints_forward_records_recomputable_from_the_file(capsys):
    """`difftrade recommend RESULTS --validate --json` on a committed grid: every record's fields,
    and the baselines' records recomputed here from the file's seed means alone."""
    from difftrade.analysis.optimum import seed_mean
    from difftrade.analysis.predictors import risk_grid
    from difftrade.cli.main import main

    path = STUDY / "addition_epochs.nc"
    assert main(["recommend", str(path), "--validate", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["recommendation"] is None
    fields = {"method", "pilots", "budget", "predicted", "d_star", "level_error", "risk_lost"}
    assert all(set(r) == fields for r in doc["forward"])
    ds = xr.open_dataset(path)
    d, n = ds["difficulty"].values.astype(float), ds["budget"].values.astype(float)
    y = seed_mean(risk_grid(ds))
    again = {
        (r.method, r.pilots, r.budget): r.to_json() for r in forward.forward_records(d, n, y, {})
    }
    printed = {
        (r["method"], r["pilots"], r["budget"]): r
        for r in doc["forward"]
        if r["method"] in forward.BASELINES
    }
    assert printed == again and len(printed) > 0
    methods = {r["method"] for r in doc["forward"]}
    assert {"threshold, π from coverage", "per level", "per-level cross-entropy trend"} <= methods


def constant_grid() -> xr.Dataset:
    """A committed study grid whose target risk is the same in every member (nothing learned)."""
    ds = xr.load_dataset(STUDY / "addition_epochs.nc")
    ds["target_risk"][:] = 1.0
    return ds


def test_constant_target_risk_is_not_identified_instead_of_dividing_by_zero():
    from difftrade.analysis import model_tables

    ds = constant_grid()
    assert "No model fitted: target risk is 1 in every cell" in model_tables.model_table(ds)
    assert "No forward prediction scored" in model_tables.forward_table(ds)
    y = np.full((3, 4), np.nan)
    assert "every member diverged" in model_tables.not_identified(y)
    y[:, 0] = [0.1, 0.2, 0.3]
    assert "fewer than two budgets" in model_tables.not_identified(y)
    y[:, 1] = [0.3, 0.2, 0.1]
    assert model_tables.not_identified(y) is None


def test_recommend_names_a_tie_and_a_budget_where_every_member_diverged():
    from difftrade.recommender.choose import recommend

    ds = constant_grid()
    rec = recommend(ds, 1024)
    assert any("[1, 2, 3, 4] tie at budget 1,024" in note for note in rec.notes)
    ds["diverged"][{"budget": 0}] = True  # every member at the smallest budget diverged
    rec = recommend(ds, 1024)
    assert any("every member at budgets [32] diverged" in note for note in rec.notes)
