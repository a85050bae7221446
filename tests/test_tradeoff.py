"""difftrade.theory.tradeoff_families, tradeoff_fitting, d_star_from_bounds: closed forms, fitting,
d*(n) from bounds; and the measured and bootstrap d*(n) of difftrade.analysis.optimum on grids drawn from
those closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from difftrade.analysis.optimum import bootstrap_d_star, d_star
from difftrade.theory.d_star_from_bounds import certified_d_star_set, d_star_from_bound
from difftrade.theory.tradeoff_families import (
    FAMILIES,
    ExponentialTradeoff,
    PacBayesTradeoff,
    PowerTradeoff,
    numeric_d_star,
)
from difftrade.theory.tradeoff_fitting import compare_models, fit, fit_dataset

DIFFICULTIES = np.arange(1.0, 9.0)
BUDGETS = 400.0 * 2.0 ** np.arange(7)  # 400 .. 25600
TRUE = {
    "power": (PowerTradeoff(), {"c": 40.0, "a": 0.4}),
    "exponential": (ExponentialTradeoff(), {"c": 0.5, "k": 0.8, "a": 0.6, "b": 0.35}),
    "pacbayes": (PacBayesTradeoff(), {"c": 30.0, "a": 0.5}),
}


def grid(model, params):
    return model.risk(DIFFICULTIES[:, None], BUDGETS[None, :], params)


@pytest.mark.parametrize("name", TRUE)
def test_closed_form_matches_numeric_argmin(name):
    model, params = TRUE[name]
    n = np.geomspace(50, 1e6, 9)
    closed = model.d_star(n, params)
    assert np.all(closed > 0.05) and np.all(closed < 200)
    numeric = numeric_d_star(model, n, params, 0.05, 200.0)
    np.testing.assert_allclose(closed, numeric, rtol=1e-5)


@pytest.mark.parametrize("name", TRUE)
def test_d_star_is_clipped_to_the_range(name):
    model, params = TRUE[name]
    n = np.geomspace(1, 1e6, 9)
    clipped = model.d_star(n, params, 2.0, 6.0)
    np.testing.assert_allclose(
        clipped, numeric_d_star(model, n, params, 2.0, 6.0), rtol=1e-5, atol=1e-7
    )
    assert clipped.min() == 2.0 and clipped.max() == 6.0


@pytest.mark.parametrize("name", TRUE)
def test_d_star_increases_with_budget(name):
    model, params = TRUE[name]
    ds = model.d_star(np.geomspace(10, 1e8, 50), params)
    assert np.all(np.diff(ds) > 0)


def test_exponential_log_slope():
    model, p = TRUE["exponential"]
    ds = model.d_star(np.array([1e3, 1e3 * np.e]), p)
    assert ds[1] - ds[0] == pytest.approx(1 / (2 * p["b"] + p["k"]), rel=1e-12)


def test_pacbayes_root_solves_the_quartic():
    model, p = TRUE["pacbayes"]
    n = np.geomspace(1, 1e7, 15)
    ds = model.d_star(n, p)
    L = np.log(2 * np.sqrt(n) / model.delta)
    h = p["c"] ** 2 * ds**4 - 8 * p["a"] ** 2 * n * (p["c"] * ds + L)
    np.testing.assert_allclose(h / (p["c"] ** 2 * ds**4), 0, atol=1e-12)


@pytest.mark.parametrize("name", TRUE)
def test_fit_recovers_params_from_noiseless_data(name):
    model, params = TRUE[name]
    res = fit(model, DIFFICULTIES, BUDGETS, grid(model, params))
    for k, v in params.items():
        assert res.params[k] == pytest.approx(v, rel=1e-5), k
    assert res.rss < 1e-12 and res.n_obs == DIFFICULTIES.size * BUDGETS.size
    assert np.nanmax(np.abs(res.residuals)) < 1e-6


@pytest.mark.parametrize("name", TRUE)
def test_fit_with_mild_noise_predicts_unseen_budgets(name):
    model, params = TRUE[name]
    rng = np.random.default_rng(0)
    y = grid(model, params) + rng.normal(0, 0.005, (DIFFICULTIES.size, BUDGETS.size))
    res = fit(model, DIFFICULTIES, BUDGETS, y)
    unseen = np.array([600.0, 3000.0, 15000.0])
    np.testing.assert_allclose(
        res.predict_d_star(unseen), model.d_star(unseen, params, 1.0, 8.0), rtol=0.1
    )
    assert np.all(np.diff(res.predict_d_star(np.geomspace(100, 1e6, 20), clip=False)) > 0)
    assert res.residuals.shape == (DIFFICULTIES.size, BUDGETS.size)
    assert np.sqrt(res.rss / res.n_obs) == pytest.approx(0.005, rel=0.3)


def test_fit_with_offset_and_weights_and_missing_cells():
    model = PowerTradeoff(offset=True)
    params = {"c": 40.0, "a": 0.4, "r0": -0.05}
    y = model.risk(DIFFICULTIES[:, None], BUDGETS[None, :], params)
    y[0, 0] = np.nan
    w = np.ones_like(y)
    w[1, 1] = 0.0
    y[1, 1] = 5.0  # ignored: zero weight
    res = fit(model, DIFFICULTIES, BUDGETS, y, weights=w)
    assert res.n_obs == y.size - 2
    for k, v in params.items():
        assert res.params[k] == pytest.approx(v, rel=1e-5, abs=1e-8)
    # the offset does not move d*
    np.testing.assert_allclose(
        res.predict_d_star(BUDGETS), PowerTradeoff().d_star(BUDGETS, params, 1, 8), rtol=1e-5
    )


def test_compare_models_prefers_the_true_family():
    for name, (model, params) in TRUE.items():
        y = grid(model, params) + np.random.default_rng(1).normal(
            0, 0.002, (DIFFICULTIES.size, BUDGETS.size)
        )
        ranked = compare_models(DIFFICULTIES, BUDGETS, y, n_starts=4)
        assert ranked[0].fit.model.name == name
        assert ranked[0].delta == 0 and sum(r.weight for r in ranked) == pytest.approx(1)


def test_fit_is_deterministic():
    model, params = TRUE["exponential"]
    y = grid(model, params) + np.random.default_rng(2).normal(
        0, 0.01, (DIFFICULTIES.size, BUDGETS.size)
    )
    assert (
        fit(model, DIFFICULTIES, BUDGETS, y, seed=3).params
        == fit(model, DIFFICULTIES, BUDGETS, y, seed=3).params
    )


def test_validation_errors():
    model = PowerTradeoff()
    with pytest.raises(ValueError, match="missing"):
        model.risk(1.0, 100.0, {"c": 1.0})
    with pytest.raises(ValueError, match="> 0"):
        model.risk(1.0, 100.0, {"c": -1.0, "a": 1.0})
    with pytest.raises(ValueError, match="target_risk has shape"):
        fit(model, DIFFICULTIES, BUDGETS, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="budgets"):
        fit(model, DIFFICULTIES, -BUDGETS, np.zeros((8, 7)))
    with pytest.raises(ValueError, match="delta"):
        PacBayesTradeoff(delta=1.5)


# ---- empirical d*(n) --------------------------------------------------------------------------
def test_empirical_d_star_hand_made():
    # [D=3, N=3, S=2]; budget 0: level 2 best; budget 1: tie 1/3 -> easiest; budget 2: only NaN
    r = np.array(
        [
            [[0.5, 0.7], [0.2, 0.2], [np.nan, np.nan]],
            [[0.1, 0.3], [0.5, np.nan], [np.nan, np.nan]],
            [[0.9, 0.9], [0.1, 0.3], [np.nan, np.nan]],
        ]
    )
    out = d_star(r, [1, 2, 3])
    np.testing.assert_array_equal(out[:2], [2.0, 1.0])
    assert np.isnan(out[2])
    # unsorted difficulty labels are handled
    np.testing.assert_array_equal(d_star(r[::-1], [3, 2, 1])[:2], [2.0, 1.0])


def test_certified_d_star_set():
    # d=1 is ruled out by d=3 (0.3 < 0.35); d=2's interval overlaps d=3's: both stay
    upper, lower = np.array([0.9, 0.5, 0.3]), np.array([0.35, 0.1, 0.05])
    np.testing.assert_array_equal(certified_d_star_set(upper, lower), [False, True, True])
    # disjoint intervals: one difficulty; NaN upper rules nothing out, NaN lower is never ruled out
    np.testing.assert_array_equal(
        certified_d_star_set([0.2, 0.9, np.nan], [0.1, 0.8, 0.95]), [True, False, False]
    )
    np.testing.assert_array_equal(certified_d_star_set([np.nan, 0.9], [0.0, 0.5]), [True, True])
    np.testing.assert_array_equal(certified_d_star_set([0.2, 0.9], [0.1, np.nan]), [True, True])
    # per (budget, seed): axis 0 is the difficulty
    both = certified_d_star_set(
        np.stack([upper, upper[::-1]], -1), np.stack([lower, lower[::-1]], -1)
    )
    np.testing.assert_array_equal(both, [[False, True], [True, True], [True, False]])
    with pytest.raises(ValueError, match="upper has shape"):
        certified_d_star_set([0.1, 0.2], [0.1])
    # whenever every interval holds, every true minimiser is in the set
    rng = np.random.default_rng(0)
    for _ in range(2000):
        truth = rng.uniform(size=5)
        lo, up = truth - rng.exponential(0.1, 5), truth + rng.exponential(0.1, 5)
        assert certified_d_star_set(up, lo)[np.argmin(truth)]


def test_d_star_from_bound():
    bound = np.array([[0.9, 0.8], [0.5, 0.7], [0.6, 0.4]])
    np.testing.assert_array_equal(d_star_from_bound(bound, [2, 4, 6]), [4.0, 6.0])
    # all-vacuous columns name no difficulty (a tie at 1 would otherwise pick the easiest level)
    vac = np.array([[1.0, 0.8], [1.0, 0.999], [1.0, np.nan]])
    np.testing.assert_array_equal(d_star_from_bound(vac, [2, 4, 6]), [2.0, 2.0])
    np.testing.assert_array_equal(d_star_from_bound(vac, [2, 4, 6], vacuous=0.999), [np.nan, 2.0])
    np.testing.assert_array_equal(d_star_from_bound(vac, [2, 4, 6], vacuous=0.8), [np.nan, np.nan])
    # per seed: [D, N, S] -> [N, S]
    per_seed = np.stack([bound, bound[::-1]], axis=-1)
    np.testing.assert_array_equal(d_star_from_bound(per_seed, [2, 4, 6]), [[4.0, 4.0], [6.0, 2.0]])


def synthetic_seeds(noise=0.01, seeds=10, rng_seed=0):
    model, params = TRUE["power"]
    clean = grid(model, params)
    rng = np.random.default_rng(rng_seed)
    return clean, clean[:, :, None] + rng.normal(0, noise, clean.shape + (seeds,))


def test_bootstrap_contains_true_d_star_and_is_deterministic():
    clean, noisy = synthetic_seeds()
    true = DIFFICULTIES[np.argmin(clean, axis=0)]
    boot = bootstrap_d_star(noisy, DIFFICULTIES, n_boot=500, seed=7)
    assert np.all(boot.low <= true) and np.all(true <= boot.high)
    assert np.all(boot.low <= boot.d_star) and np.all(boot.d_star <= boot.high)
    assert boot.samples.shape == (500, BUDGETS.size)
    again = bootstrap_d_star(noisy, DIFFICULTIES, n_boot=500, seed=7)
    np.testing.assert_array_equal(boot.samples, again.samples)
    other = bootstrap_d_star(noisy, DIFFICULTIES, n_boot=500, seed=np.random.default_rng(8))
    assert other.samples.shape == boot.samples.shape
    assert np.all(np.diff(true) >= 0) and true[-1] > true[0]


def test_bootstrap_interval_narrows_with_less_noise():
    _, noisy = synthetic_seeds(noise=0.05)
    _, quiet = synthetic_seeds(noise=0.001)
    wide = bootstrap_d_star(noisy, DIFFICULTIES, n_boot=300, seed=0)
    narrow = bootstrap_d_star(quiet, DIFFICULTIES, n_boot=300, seed=0)
    assert np.sum(narrow.high - narrow.low) < np.sum(wide.high - wide.low)


# ---- xarray adapter ---------------------------------------------------------------------------
def make_dataset(noise=0.003, seeds=4):
    xr = pytest.importorskip("xarray")
    _clean, noisy = synthetic_seeds(noise=noise, seeds=seeds, rng_seed=5)
    noisy = np.clip(noisy, 0, 1)
    ds = xr.Dataset(
        {"target_risk": (("difficulty", "budget", "seed"), noisy)},
        coords={
            "difficulty": DIFFICULTIES.astype(int),
            "budget": BUDGETS.astype(int),
            "seed": np.arange(seeds),
        },
    )
    return ds


def test_fit_dataset():
    ds = make_dataset()
    # dims in another order, one failed run
    ds = ds.transpose("seed", "budget", "difficulty")
    ds["target_risk"][0, 0, 0] = np.nan
    res = fit_dataset(ds, PowerTradeoff())
    _, params = TRUE["power"]
    assert res.params["c"] == pytest.approx(params["c"], rel=0.1)
    assert res.params["a"] == pytest.approx(params["a"], rel=0.1)
    assert res.residuals.shape == (DIFFICULTIES.size, BUDGETS.size)
    assert np.all(np.diff(res.predict_d_star([500, 1000, 5000, 20000])) > 0)


def test_fit_dataset_errors():
    ds = make_dataset()
    with pytest.raises(ValueError, match="variable"):
        fit_dataset(ds, variable="accuracy")
    with pytest.raises(ValueError, match="risks in"):
        fit_dataset(ds.assign(target_risk=ds.target_risk * 3))
    with pytest.raises(ValueError, match="difficulty"):
        fit_dataset(ds.rename({"difficulty": "level"}))


def test_families_are_listed():
    assert [m.name for m in FAMILIES] == ["power", "exponential", "pacbayes"]
