"""The per-level threshold model: its formula against a scalar loop, recovery of known parameters,
and a prediction across training distributions that is exact when the data follow the model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from difftrade.analysis import study
from difftrade.results import schema as results
from difftrade.theory import level_model

STUDY = Path(__file__).resolve().parents[1] / "docs" / "runs" / "study"
TRUE = level_model.LevelFit(np.log([40.0, 150.0, 400.0, 900.0]), 0.6, 0.0, 0)


def test_level_mass_by_loops():
    w = np.array([[1.0, 0, 0, 0], [0.5, 0.5, 0, 0], [0.1, 0.2, 0.3, 0.4]])
    np.testing.assert_array_equal(level_model.level_mass(w, "exact"), w)
    nested = level_model.level_mass(w, "nested")
    for d in range(3):
        for level in range(4):
            assert nested[d, level] == pytest.approx(sum(w[d, k] for k in range(level, 4)))
    with pytest.raises(ValueError, match="structure='other' is unknown"):
        level_model.level_mass(w, "other")


def test_accuracy_is_the_logistic_of_log_examples():
    mass = np.array([[0.5, 0.5, 0.0, 0.0], [0.7, 0.1, 0.1, 0.1]])
    budgets = [10, 300, 5000]
    acc = TRUE.accuracy(mass, budgets)
    for d in range(2):
        for j, n in enumerate(budgets):
            for level in range(4):
                m = mass[d, level]
                want = (
                    0.0
                    if m == 0
                    else 1 / (1 + math.exp(-(math.log(n * m) - TRUE.log_nc[level]) / TRUE.width))
                )
                assert acc[d, j, level] == pytest.approx(want, abs=1e-12)
    target = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(
        TRUE.target_risk(mass, target, budgets), (1 - acc) @ target, atol=1e-12
    )


def test_fit_recovers_known_levels():
    up_to = np.tril(np.ones((4, 4))) / np.arange(1, 5)[:, None]
    budgets = 2.0 ** np.arange(5, 13)
    fit = level_model.fit_levels(up_to, budgets, TRUE.accuracy(up_to, budgets))
    np.testing.assert_allclose(fit.log_nc, TRUE.log_nc, atol=1e-4)
    assert fit.width == pytest.approx(TRUE.width, rel=1e-4) and fit.rss < 1e-12
    with pytest.raises(ValueError, match="accuracy has shape"):
        level_model.fit_levels(up_to, budgets, np.zeros((4, 3, 4)))


def test_cross_prediction_is_exact_for_grids_that_follow_the_model():
    """Two committed chain grids (levels 1..d, and mixtures) with their accuracies replaced by the
    model's: fitted on either, the model predicts the other's d*(n) and target risk exactly."""
    grids = {}
    for name in ("chain", "chain_mixture"):
        ds = results.load(STUDY / f"{name}.nc")
        acc = TRUE.accuracy(
            ds["train_weights"].values, ds["budget"].values
        )  # [D, N, L]; chain levels are exact
        seeds = ds.sizes["seed"]
        ds["level_exact"] = (
            ("difficulty", "budget", "seed", "level"),
            np.repeat(acc[:, :, None, :], seeds, axis=2),
        )
        risk = (1 - acc) @ ds["target_weights"].values
        ds["target_risk"] = (
            ("difficulty", "budget", "seed"),
            np.repeat(risk[:, :, None], seeds, axis=2),
        )
        ds["diverged"][:] = False
        grids[name] = ds
    rows = [line for line in study.cross_table(grids).splitlines() if line.startswith("| chain")]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == cells[3] and float(cells[4]) == 0.0 and float(cells[5]) < 1e-3, row
