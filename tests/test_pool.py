"""difftrade.recommender.pool: binning a pool of difficulty scores, largest-remainder counts,
redistribution, exact distinct selection, file input/output, and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from difftrade.recommender.pool import (
    RedistributionWarning,
    bin_scores,
    largest_remainder,
    redistribute,
    select,
    select_with_report,
)
from difftrade.recommender.pool_files import load_scores, save_selection


def pool(size=10_000, seed=0):
    return np.random.default_rng(seed).gamma(2.0, 1.0, size)


def counts_by_level(selection):
    rep = selection.report
    return np.array([(selection.levels == lv).sum() for lv in rep.levels])


# ---- exactness ------------------------------------------------------------------------------------
def test_exactly_budget_distinct_sorted_indices():
    s = pool()
    idx = select(s, 2000, np.full(8, 1 / 8))
    assert idx.shape == (2000,) and idx.dtype == np.int64
    assert len(np.unique(idx)) == 2000 and np.all(np.diff(idx) > 0)
    assert idx.min() >= 0 and idx.max() < s.size


def test_proportions_are_largest_remainder_exact():
    s = pool()
    w = np.array([0.05, 0.1, 0.15, 0.2, 0.2, 0.15, 0.1, 0.05])
    sel = select_with_report(s, 1999, w)
    counts = counts_by_level(sel)
    np.testing.assert_array_equal(counts, sel.report.counts)
    np.testing.assert_array_equal(counts, largest_remainder(w, 1999))
    assert counts.sum() == 1999 and np.all(np.abs(counts - 1999 * w) < 1)
    assert not sel.report.redistributed


def test_largest_remainder_examples():
    np.testing.assert_array_equal(largest_remainder(np.full(3, 1 / 3), 10), [4, 3, 3])
    np.testing.assert_array_equal(largest_remainder(np.array([0.3, 0.7]), 10), [3, 7])
    np.testing.assert_array_equal(largest_remainder(np.array([0.25, 0.25, 0.5]), 3), [1, 1, 1])
    np.testing.assert_array_equal(largest_remainder(np.full(8, 1 / 8), 2000), np.full(8, 250))


@settings(max_examples=60, deadline=None)
@given(
    raw=st.lists(st.floats(0, 10), min_size=1, max_size=6).filter(lambda x: sum(x) > 0),
    size=st.integers(1, 300),
    frac=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**16),
)
def test_selection_is_always_exact(raw, size, frac, seed):
    w = np.asarray(raw) / np.sum(raw)
    s = np.random.default_rng(seed).normal(size=size).round(1)  # ties on purpose
    budget = max(1, int(frac * size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RedistributionWarning)
        sel = select_with_report(s, budget, w, seed=seed)
    assert sel.indices.shape == (budget,) and len(np.unique(sel.indices)) == budget
    rep = sel.report
    assert rep.counts.sum() == budget and np.all(rep.counts <= rep.available)
    if not rep.redistributed:
        np.testing.assert_array_equal(rep.counts, largest_remainder(w, budget))


def test_determinism_given_seed():
    s = pool()
    w = np.full(4, 0.25)
    a = select(s, 500, w, seed=3)
    np.testing.assert_array_equal(a, select(s, 500, w, seed=3))
    assert not np.array_equal(a, select(s, 500, w, seed=4))


# ---- binning ----------------------------------------------------------------------------------------
def test_quantile_bins_are_equal_count_and_monotone():
    s = pool()
    level, edges = bin_scores(s, 8)
    assert np.all(np.bincount(level) == 1250)
    assert edges.shape == (9,) and np.all(np.diff(edges) > 0)
    order = np.argsort(s)
    assert np.all(np.diff(level[order]) >= 0)  # harder score, same or higher level


def test_explicit_bins_and_ineligible_scores():
    s = np.array([-1.0, 0.5, 1.5, 2.5, 3.0, 9.0])
    level, _ = bin_scores(s, 3, [0, 1, 2, 3])
    assert level.tolist() == [-1, 0, 1, 2, 2, -1]
    sel = select_with_report(s, 4, [0.25, 0.25, 0.5], bins=[0, 1, 2, 3])
    assert sel.indices.tolist() == [1, 2, 3, 4]
    assert any("outside the bin edges" in n for n in sel.report.notes)
    with pytest.raises(ValueError, match=r"budget=5 is larger than the eligible pool \(4"):
        select(s, 5, [0.25, 0.25, 0.5], bins=[0, 1, 2, 3])


@pytest.mark.parametrize(
    "bins, match",
    [([0, 1, 2], "3 edges"), ([0, 2, 1, 3], "ascending"), ([0, 1, np.nan, 3], "ascending")],
)
def test_bad_bins(bins, match):
    with pytest.raises(ValueError, match=match):
        select(
            np.arange(10.0),
            3,
            [0.25, 0.25, 0.5] if len(bins) != 3 else [0.5, 0.25, 0.25],
            bins=bins,
        )


def test_heavy_ties_share_a_level():
    s = np.ones(20)
    with pytest.warns(RedistributionWarning):
        idx = select(s, 8, np.full(4, 0.25))
    assert len(np.unique(idx)) == 8
    sel = select_with_report(s, 8, np.full(4, 0.25))
    assert sel.report.available.tolist() == [0, 0, 0, 20]
    assert any("no examples" in n for n in sel.report.notes)


# ---- redistribution ---------------------------------------------------------------------------------
def test_redistribution_splits_evenly_to_neighbours():
    s = pool()
    w = np.eye(8)[6]  # all at level 7 of 8: the pool has 1,250 there, the budget is 2,000
    with pytest.warns(RedistributionWarning, match="level 7 needed 2,000"):
        select(s, 2000, w)
    sel = select_with_report(s, 2000, w)
    assert sel.report.counts.tolist() == [0, 0, 0, 0, 0, 375, 1250, 375]
    assert sel.report.moves == ((7, 6, 375), (7, 8, 375))
    assert "moved 375 to level 6, 375 to level 8" in str(sel.report)


def test_redistribution_at_the_edge_walks_outwards():
    counts, moves = redistribute(np.array([10, 0, 0, 0]), np.array([3, 4, 5, 5]))
    assert counts.tolist() == [3, 4, 3, 0] and moves == [(0, 1, 4), (0, 2, 3)]


def test_no_warning_when_nothing_moves():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        select(pool(), 100, np.full(8, 1 / 8))


def test_accepts_a_recommendation_like_object():
    class Rec:
        weights = np.array([0.0, 0.5, 0.5])
        levels = np.array([2, 4, 6])

    sel = select_with_report(pool(300), 30, Rec())
    assert set(sel.levels.tolist()) == {4, 6}
    assert sel.report.levels.tolist() == [2, 4, 6]


# ---- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "scores, match",
    [
        ([1.0, np.nan, 2.0], r"scores\[1\]=nan"),
        ([1.0, 2.0, np.inf], r"scores\[2\]=inf"),
        (["a", "b", "c"], "dtype <U1"),
        ([1.0, None, 2.0], r"scores\[1\]=None is not a number"),
        ([[1.0, 2.0]], "1-D"),
        ([True, False, True], "dtype bool"),
    ],
)
def test_bad_scores(scores, match):
    with pytest.raises(ValueError, match=match):
        select(
            np.asarray(scores, dtype=object) if None in np.ravel(scores).tolist() else scores,
            1,
            [1.0],
        )


@pytest.mark.parametrize(
    "budget, match",
    [
        (0, "budget=0"),
        (-3, "budget=-3"),
        (1.5, "budget=1.5"),
        (True, "budget=True"),
        (11, "budget=11 is larger"),
    ],
)
def test_bad_budget(budget, match):
    with pytest.raises(ValueError, match=match):
        select(np.arange(10.0), budget, [0.5, 0.5])


@pytest.mark.parametrize(
    "weights, match",
    [
        ([0.5, 0.6], "sums to 1.1"),
        ([1.5, -0.5], "non-negative"),
        ([np.nan, 1.0], "finite"),
        ([[0.5, 0.5]], "shape"),
        ([], "shape"),
        ("ab", "weights"),
    ],
)
def test_bad_weights(weights, match):
    with pytest.raises(ValueError, match=match):
        select(np.arange(10.0), 3, weights)


def test_bad_seed():
    with pytest.raises(ValueError, match="seed=-1"):
        select(np.arange(10.0), 3, [0.5, 0.5], seed=-1)


# ---- files --------------------------------------------------------------------------------------------
def test_load_scores_csv(tmp_path):
    p = tmp_path / "pool.csv"
    p.write_text('id,text,loss\n0,a,0.5\n1,"b, c",1.25\n2,d,2e-1\n')
    np.testing.assert_allclose(load_scores(p, "loss"), [0.5, 1.25, 0.2])
    np.testing.assert_allclose(load_scores(p, 2), [0.5, 1.25, 0.2])
    with pytest.raises(
        ValueError, match=r"column='lost' is not in pool.csv; allowed: \['id', 'text', 'loss'\]"
    ):
        load_scores(p, "lost")
    with pytest.raises(ValueError, match="column=None"):
        load_scores(p)
    bad = tmp_path / "bad.csv"
    bad.write_text("loss\n0.5\nabc\n")
    with pytest.raises(ValueError, match=r"bad.csv line 3, column 'loss': 'abc' is not a number"):
        load_scores(bad, "loss")
    empty = tmp_path / "gap.csv"
    empty.write_text("loss\n0.5\n\n1.0\nnan\n")
    with pytest.raises(ValueError, match="line 5"):
        load_scores(empty)
    with pytest.raises(ValueError, match="does not exist"):
        load_scores(tmp_path / "none.csv", "loss")
    with pytest.raises(ValueError, match="suffix '.xlsx'"):
        (tmp_path / "x.xlsx").write_text("")
        load_scores(tmp_path / "x.xlsx", "loss")


def test_load_scores_npy_and_parquet(tmp_path):
    np.save(tmp_path / "s.npy", np.array([1.0, 2.0]))
    np.testing.assert_allclose(load_scores(tmp_path / "s.npy"), [1.0, 2.0])
    try:
        import pandas as pd
        import pyarrow  # noqa: F401
    except ImportError:
        (tmp_path / "s.parquet").write_bytes(b"PAR1")
        with pytest.raises(ImportError, match="pandas and pyarrow"):
            load_scores(tmp_path / "s.parquet", "loss")
    else:
        pd.DataFrame({"loss": [0.1, 0.2]}).to_parquet(tmp_path / "s.parquet")
        np.testing.assert_allclose(load_scores(tmp_path / "s.parquet", "loss"), [0.1, 0.2])


def test_save_selection_is_atomic_and_complete(tmp_path):
    s = pool(100)
    sel = select_with_report(s, 10, [0.5, 0.5])
    out = save_selection(tmp_path / "out" / "sel.csv", sel)
    lines = out.read_text().splitlines()
    assert lines[0] == "index,level,score" and len(lines) == 11
    assert [int(x.split(",")[0]) for x in lines[1:]] == sel.indices.tolist()
    assert float(lines[1].split(",")[2]) == s[sel.indices[0]]
    npy = save_selection(tmp_path / "sel.npy", sel)
    np.testing.assert_array_equal(np.load(npy), sel.indices)
    with pytest.raises(ValueError, match="suffix '.txt'"):
        save_selection(tmp_path / "sel.txt", sel)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out", "sel.csv", "sel.npy"]


def test_cli_select_weights_and_bins(tmp_path, capsys):
    """`difftrade select` parses --weights and --bins (blank pieces skipped) and names a bad field."""
    from difftrade.cli.main import main

    s = pool(200)
    np.save(tmp_path / "s.npy", s)
    edges = "-inf," + ",".join(f"{q:.6f}" for q in np.quantile(s, [0.5])) + ",inf,"
    assert (
        main(
            [
                "select",
                str(tmp_path / "s.npy"),
                "-n",
                "20",
                "--weights",
                "0.25,0.75",
                "--bins=" + edges,
                "--out",
                str(tmp_path / "sel.npy"),
            ]
        )
        == 0
    )
    expected = select_with_report(
        s, 20, [0.25, 0.75], bins=[-np.inf, float(edges.split(",")[1]), np.inf]
    )
    np.testing.assert_array_equal(np.load(tmp_path / "sel.npy"), expected.indices)
    capsys.readouterr()
    assert main(["select", str(tmp_path / "s.npy"), "-n", "20", "--weights", "0.25,x"]) == 2
    assert "--weights='0.25,x'" in capsys.readouterr().err
