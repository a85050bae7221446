"""The threshold model: coverage π from the level structure (brute force), parameter recovery
on data drawn from the model, and leave-one-budget-out scoring against hand-built fitters."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from difftrade.theory.threshold import (
    ThresholdFit,
    fit_threshold,
    leave_one_budget_out,
    threshold_fitter,
    uncovered_mass,
)

D = np.array([1.0, 2.0, 3.0, 4.0])
N = np.array([32.0, 64, 128, 256, 512, 1024, 2048])


def _truth(pi=(0.75, 0.5, 0.25, 0.0), log_nc=(3.6, 4.6, 5.9, 7.2), width=0.35) -> ThresholdFit:
    return ThresholdFit(D, np.array(pi), np.array(log_nc), width, 0.0, 0, 0, 0.0)


def test_uncovered_mass_matches_enumeration():
    rng = np.random.default_rng(0)
    t = rng.dirichlet(np.ones(5))
    point, up_to = np.eye(5), np.tril(np.ones((5, 5))) / np.arange(1, 6)[:, None]
    for weights in (
        point,
        up_to,
        rng.dirichlet(np.ones(5), size=5) * (rng.uniform(size=(5, 5)) > 0.5),
    ):
        for structure in ("exact", "nested"):
            want = []
            for row in weights:
                hardest = max([l for l in range(5) if row[l] > 0], default=-1)
                covered = [row[l] > 0 or (structure == "nested" and l <= hardest) for l in range(5)]
                want.append(sum(t[l] for l in range(5) if not covered[l]))
            np.testing.assert_allclose(uncovered_mass(weights, t, structure), want, atol=1e-12)
    with pytest.raises(ValueError, match="structure='shells'"):
        uncovered_mass(point, t, "shells")


def test_fit_recovers_the_model_it_was_drawn_from():
    truth = _truth()
    rng = np.random.default_rng(1)
    y = truth.predict_risk(N) + rng.normal(0, 0.005, (4, N.size))
    for pi in (truth.pi, None):
        fit = fit_threshold(D, N, y, pi)
        np.testing.assert_allclose(fit.log_nc, truth.log_nc, atol=0.15)
        assert abs(fit.width - truth.width) < 0.1
        np.testing.assert_allclose(fit.pi, truth.pi, atol=0.03)
        fine = np.geomspace(32, 2048, 40)
        assert np.mean(fit.predict_d_star(fine) == truth.predict_d_star(fine)) > 0.9
        assert fit.num_params == 5 + (4 if pi is None else 0)
        assert fit.rss == pytest.approx(np.sum((fit.predict_risk(N) - y) ** 2))


def test_predicted_risk_is_the_formula():
    truth = _truth()
    n = np.array([100.0, 1000.0])
    want = truth.pi[:, None] + (1 - truth.pi[:, None]) * special.expit(
        (truth.log_nc[:, None] - np.log(n)) / truth.width
    )
    np.testing.assert_allclose(truth.predict_risk(n), want, rtol=1e-14)
    assert np.all(
        np.diff(truth.predict_d_star(np.geomspace(32, 2048, 50))) >= 0
    )  # moves to harder data


def test_leave_one_budget_out_scores_what_the_fitter_predicts():
    truth = _truth()
    y = truth.predict_risk(N)
    oracle = lambda d, n, r: lambda budget: truth.predict_risk(np.array([budget]))[:, 0]
    score = leave_one_budget_out(oracle, D, N, y)
    np.testing.assert_array_equal(score.predicted, score.measured)
    assert score.error == 0 and score.exact == 1 and score.risk_rmse < 1e-12
    always_easiest = lambda d, n, r: lambda budget: d.copy()  # risk rises with d: d* = 1 always
    score = leave_one_budget_out(always_easiest, D, N, y)
    measured = D[np.argmin(y, axis=0)]
    assert score.error == pytest.approx(np.mean(np.abs(1 - measured)))
    assert score.exact == pytest.approx(np.mean(measured == 1))
    fitted = leave_one_budget_out(threshold_fitter(truth.pi), D, N, y + 0.0)
    assert fitted.error <= 0.3


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"allowed: \[D, N\]"):
        fit_threshold(D, N, np.zeros((3, N.size)))
    with pytest.raises(ValueError, match="pi="):
        fit_threshold(D, N, np.zeros((4, N.size)), pi=[0.5, 0.5, 2.0, 0.0])
    with pytest.raises(ValueError, match="more cells than parameters"):
        fit_threshold(D, N[:2], np.zeros((4, 2)))
