"""Racing at one budget: the stopping, the compute count and the replay, on columns built by hand."""

from __future__ import annotations

import numpy as np
import pytest

from difftrade.analysis import racing


def test_a_clear_winner_ends_the_race_at_the_first_look():
    rng = np.random.default_rng(0)
    col = np.stack(
        [
            0.2 + 0.01 * rng.standard_normal(8),
            0.8 + 0.01 * rng.standard_normal(8),
            0.9 + 0.01 * rng.standard_normal(8),
        ]
    )
    res = racing.race(col, [1, 2, 3], start=3)
    assert res.chosen == 1 and res.survivors == (1.0,) and res.looks == 1 and res.members == 3 * 3


def test_equal_difficulties_use_every_seed_and_pick_the_lowest_mean():
    rng = np.random.default_rng(1)
    col = rng.normal(0.5, 0.1, (3, 6))
    res = racing.race(col, [1, 2, 3], start=3)
    assert res.members == 3 * 6 and res.looks == 4
    assert res.chosen == [1, 2, 3][int(np.argmin(col.mean(axis=1)))]


def test_a_dropped_difficulty_stops_costing_members():
    # row 3 is far worse from the start; rows 1 and 2 are indistinguishable
    rng = np.random.default_rng(2)
    col = np.stack(
        [rng.normal(0.5, 0.05, 7), rng.normal(0.5, 0.05, 7), 2.0 + 0.01 * rng.standard_normal(7)]
    )
    res = racing.race(col, [1, 2, 3], start=3)
    assert 3.0 not in res.survivors and len(res.survivors) == 2
    assert res.members == 2 * 7 + 3  # row 3 trained its first 3 seeds only


def test_replay_scores_against_the_full_column():
    rng = np.random.default_rng(3)
    risk = np.stack(
        [rng.normal(0.2, 0.01, (2, 8)), rng.normal(0.9, 0.01, (2, 8))]
    )  # [D=2, N=2, S=8]
    rep = racing.replay(risk, [1, 2], [10, 20], orders=5)
    np.testing.assert_allclose(rep.compute, 2 * 3 / 16)  # decided at the first look
    np.testing.assert_array_equal(rep.risk_lost, 0.0)
    np.testing.assert_array_equal(rep.decided, 1.0)


def test_bad_input_is_one_line():
    with pytest.raises(ValueError, match=r"start=9; allowed: 2 <= start <= the column's 8 seeds"):
        racing.race(np.zeros((2, 8)), [1, 2], start=9)
    with pytest.raises(ValueError, match=r"risk has shape"):
        racing.race(np.zeros((3, 8)), [1, 2])


def test_run_race_measures_only_the_cells_it_uses():
    """The race asks for the first seeds of every difficulty, then one seed at a time for the
    survivors: the cells it measured are exactly its member count, and the answer is that of the
    race on the full column."""
    rng = np.random.default_rng(5)
    column = np.array([0.2, 0.5, 0.52, 0.9])[:, None] + 0.05 * rng.standard_normal((4, 10))
    asked: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def measure(rows, seeds):
        asked.append((tuple(rows.tolist()), tuple(seeds)))
        return column[rows][:, seeds]

    found, risk = racing.run_race(measure, [1, 2, 3, 4], 10, start=3)
    assert found == racing.race(column, [1, 2, 3, 4], start=3)
    assert asked[0] == ((0, 1, 2, 3), (0, 1, 2))
    assert all(len(seeds) == 1 for _, seeds in asked[1:])
    assert sum(len(r) * len(s) for r, s in asked) == found.members == np.isfinite(risk).sum()
    measured = np.isfinite(risk)
    np.testing.assert_array_equal(risk[measured], column[measured])
