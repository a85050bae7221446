"""The selection-free confidence set for the best difficulty and seed-split agreement, checked
against a brute-force enumeration and by simulation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from difftrade.analysis import paired_comparison, selection


def brute_sign_flip(x: np.ndarray) -> float:
    """One-sided sign-flip p-value by enumerating every sign vector."""
    obs = x.sum()
    flips = [np.dot(s, x) for s in itertools.product((1.0, -1.0), repeat=x.size)]
    return float(np.mean(np.array(flips) >= obs - 1e-12))


def brute_holm(p: list[float], alpha: float) -> list[bool]:
    order = sorted(range(len(p)), key=lambda i: p[i])
    reject = [False] * len(p)
    for rank, i in enumerate(order):
        if p[i] * (len(p) - rank) > alpha:
            break
        reject[i] = True
    return reject


def test_set_equals_a_brute_force_all_pairs_procedure():
    rng = np.random.default_rng(3)
    for trial in range(6):
        risk = (
            rng.normal(0, 0.05, (3, 2, 7)) + np.array([0.0, 0.06, 0.12])[:, None, None] * trial / 3
        )
        got = selection.best_set(risk, [1, 2, 3], alpha=0.1)
        for j in range(2):
            pairs = list(itertools.permutations(range(3), 2))
            p = [brute_sign_flip(risk[a, j] - risk[b, j]) for a, b in pairs]
            rej = brute_holm(p, 0.1)
            expect = [not any(r for (a, _), r in zip(pairs, rej) if a == row) for row in range(3)]
            assert got.in_set[:, j].tolist() == expect


def test_the_true_best_is_kept_at_the_stated_rate_and_the_selected_test_is_optimistic():
    """All difficulties equal (every one is best): the all-pairs set drops one in at most α of the
    grids; the test against the selected d* drops one more often."""
    rng = np.random.default_rng(0)
    reps, alpha = 300, 0.05
    risk = rng.normal(0, 1, (4, reps, 8))  # budgets as replications
    new = selection.best_set(risk, [1, 2, 3, 4], alpha=alpha)
    old = paired_comparison.compare_to_d_star(risk, [1, 2, 3, 4], alpha=alpha)
    new_err = np.mean(~new.in_set.all(axis=0))
    old_err = np.mean(~old.not_worse.all(axis=0))
    assert new_err <= alpha + 2 * math.sqrt(alpha * (1 - alpha) / reps)
    assert old_err > new_err


def test_a_clearly_worse_difficulty_is_out_and_named_beaten():
    risk = np.zeros((3, 1, 8))
    risk[2] += 0.5 + np.linspace(0, 0.01, 8)
    got = selection.best_set(risk, [1, 2, 3])
    assert got.members(0) == (1.0, 2.0)
    assert got.beaten_by[2, 0] in (1.0, 2.0) and np.isnan(got.beaten_by[0, 0])


def test_seed_splits_are_every_balanced_split_once():
    s8 = selection.seed_splits(8)
    assert s8.shape == (35, 8) and np.all(s8.sum(axis=1) == 4) and np.all(s8[:, 0])
    assert len({tuple(r) for r in s8}) == 35
    s5 = selection.seed_splits(5)
    assert s5.shape == (math.comb(5, 2), 5)
    drawn = selection.seed_splits(16, max_splits=50)
    assert drawn.shape == (50, 16) and np.all(drawn.sum(axis=1) == 8)
    with pytest.raises(ValueError, match="num_seeds=1"):
        selection.seed_splits(1)


def test_split_agreement_by_hand():
    # 4 seeds: splits {0,1}|{2,3}, {0,2}|{1,3}, {0,3}|{1,2}. Row 0 wins on seeds 0 and 1 by far.
    risk = np.array([[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5]])[:, None, :]
    # {0,1}: d*=1 vs {2,3}: d*=2 -> disagree; {0,2}: means 0.5 vs 0.5 tie -> 1; {1,3} same -> agree
    # {0,3}|{1,2} likewise agree: 2 of 3
    assert selection.split_agreement(risk, [1, 2])[0] == pytest.approx(2 / 3)
