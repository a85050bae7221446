"""difftrade.analysis.optimum and difftrade.theory.grid_values: seed means, the argmin over
difficulty, d*(n), the seed bootstrap, paired tests with Holm, notes.

Every reference here is computed independently of the module: Python loops over cells, all 2^S
sign vectors and all S^S bootstrap index tuples enumerated with itertools, scipy.stats on the
two paired samples, and Holm's correction as the sequential step-down rule.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from difftrade.analysis import optimum as A
from difftrade.analysis import paired_comparison as P
from difftrade.theory import grid_values as G

pytestmark = pytest.mark.filterwarnings("error")  # every function here must be warning-free


# ---- independent references -------------------------------------------------------------------
def ref_mean(values) -> float:
    finite = [float(v) for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def ref_d_star(
    risk: np.ndarray, difficulties, tol: float = 0.0
) -> tuple[list[float], list[set[float]]]:
    """Per budget: the easiest difficulty whose seed mean is within ``tol`` of the lowest, and
    the tie set."""
    best, ties = [], []
    for j in range(risk.shape[1]):
        means = {float(difficulties[i]): ref_mean(risk[i, j]) for i in range(risk.shape[0])}
        finite = {d: m for d, m in means.items() if math.isfinite(m)}
        if not finite:
            best.append(float("nan"))
            ties.append(set())
            continue
        low = min(finite.values())
        tied = {d for d, m in finite.items() if m <= low + tol}
        best.append(min(tied))
        ties.append(tied)
    return best, ties


def brute_sign_flip(units: list[int]) -> float:
    """Share of the 2^S sign vectors whose signed sum is >= the observed sum (integer units)."""
    observed = sum(units)
    flips = list(itertools.product((1, -1), repeat=len(units)))
    return sum(sum(s * u for s, u in zip(signs, units)) >= observed for signs in flips) / len(flips)


def brute_signed_rank(diffs: list[float]) -> float:
    """Exact one-sided Wilcoxon p-value for distinct non-zero |differences|: the share of the
    2^S sign assignments of the ranks whose positive-rank sum is >= the observed one."""
    ranks = {abs(x): r + 1 for r, x in enumerate(sorted(abs(x) for x in diffs))}
    observed = sum(ranks[abs(x)] for x in diffs if x > 0)
    flips = list(itertools.product((0, 1), repeat=len(diffs)))
    hits = sum(
        sum(r for r, keep in zip(ranks.values(), signs) if keep) >= observed for signs in flips
    )
    return hits / len(flips)


def step_down_holm(p: list[float], alpha: float) -> list[bool]:
    """Holm's rule as stated: sort, reject H_(i) while p_(i) <= alpha / (m - i + 1), then stop."""
    tests = sorted((v, k) for k, v in enumerate(p) if math.isfinite(v))
    reject = [False] * len(p)
    for i, (value, k) in enumerate(tests):
        if value > alpha / (len(tests) - i):
            break
        reject[k] = True
    return reject


def grids(max_d: int = 4, max_n: int = 3, max_s: int = 6):
    """Random risk grids [D, N, S] on a 1/16 lattice (exact sums, frequent ties), NaN for -1."""
    shape = st.tuples(st.integers(1, max_d), st.integers(1, max_n), st.integers(1, max_s))

    def build(dims):
        cells = st.lists(st.integers(-1, 16), min_size=math.prod(dims), max_size=math.prod(dims))
        return cells.map(
            lambda v: np.where(np.array(v) < 0, np.nan, np.array(v) / 16.0).reshape(dims)
        )

    return shape.flatmap(build)


# ---- seed means -------------------------------------------------------------------------------
def test_seed_mean_skips_non_finite_and_leaves_empty_cells_nan():
    r = np.array(
        [[[0.2, np.nan, 0.4], [np.nan, np.nan, np.nan]], [[np.inf, 0.1, 0.3], [1.0, 0.0, 0.5]]]
    )
    out = A.seed_mean(r)
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out[0, 0], 0.3)
    assert np.isnan(out[0, 1])
    np.testing.assert_allclose(out[1], [0.2, 0.5])
    with pytest.raises(ValueError, match="risk has shape"):
        A.seed_mean(np.float64(0.3))


@settings(max_examples=60, deadline=None)
@given(grids())
def test_seed_mean_matches_a_loop(risk):
    out = A.seed_mean(risk)
    ref = np.array(
        [[ref_mean(risk[i, j]) for j in range(risk.shape[1])] for i in range(risk.shape[0])]
    )
    np.testing.assert_array_equal(out, ref)


# ---- d*(n) ------------------------------------------------------------------------------------
def test_d_star_ties_go_to_the_easiest_level_and_return_the_tie_set():
    # budget 0: d=3 and d=1 tie exactly (0.2); budget 1: d=2 alone; difficulties unsorted
    r = np.array([[[0.1, 0.3], [0.5, 0.5]], [[0.5, 0.5], [0.2, 0.2]], [[0.2, 0.2], [0.4, 0.6]]])
    best, ties = A.d_star(r, [3, 2, 1], return_ties=True)
    np.testing.assert_array_equal(best, [1.0, 2.0])
    np.testing.assert_array_equal(ties, [[True, False], [False, True], [True, False]])
    np.testing.assert_array_equal(
        A.d_star(r, [1, 2, 3]), [1.0, 2.0]
    )  # the tie now resolves to label 1


def test_d_star_tolerance_widens_the_tie():
    means = np.array([[0.31], [0.30], [0.40]])  # seed means [D=3, N=1]
    assert A.d_star(means, [1, 2, 3])[0] == 2.0
    best, ties = A.d_star(means, [1, 2, 3], tol=0.02, return_ties=True)
    assert best[0] == 1.0
    np.testing.assert_array_equal(ties[:, 0], [True, True, False])
    assert A.d_star(means, [1, 2, 3], tol=0.005)[0] == 2.0


def test_d_star_never_chooses_an_all_nan_cell_and_an_all_nan_budget_is_nan():
    nan = np.nan
    # budget 0: d=1 has one finite seed at 0.0, d=2 is all NaN (diverged); budget 1: nothing
    r = np.array([[[0.0, nan], [nan, nan]], [[nan, nan], [nan, nan]], [[0.4, 0.2], [nan, nan]]])
    best, ties = A.d_star(r, [1, 2, 3], return_ties=True)
    assert best[0] == 1.0 and np.isnan(best[1])
    assert not ties[:, 1].any() and not ties[1, 0]
    r[0, 0, 0] = nan  # now d=1 is all NaN too: d=3 must win, never the all-NaN cells
    assert A.d_star(r, [1, 2, 3])[0] == 3.0


@settings(max_examples=80, deadline=None)
@given(grids(), st.sampled_from([0.0, 1 / 16, 0.2]), st.randoms(use_true_random=False))
def test_d_star_matches_a_loop(risk, tol, rnd):
    difficulties = [float(v) for v in rnd.sample(range(1, 20), risk.shape[0])]
    best, ties = A.d_star(risk, difficulties, tol=tol, return_ties=True)
    ref_best, ref_ties = ref_d_star(risk, difficulties, tol)
    np.testing.assert_array_equal(best, ref_best)
    for j in range(risk.shape[1]):
        assert {difficulties[i] for i in np.flatnonzero(ties[:, j])} == ref_ties[j]


def test_argmin_index_marks_empty_columns():
    v = np.array([[0.3, np.nan], [0.1, np.nan], [0.1, np.nan]])
    np.testing.assert_array_equal(
        G.argmin_index(v, [5, 9, 2]), [2, -1]
    )  # label 2 is the easiest of the tie
    np.testing.assert_array_equal(G.argmin_difficulty(v, [5, 9, 2]), [2.0, np.nan])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: A.d_star(np.zeros(3), [1, 2, 3]), "target_risk has shape"),
        (lambda: A.d_star(np.zeros((3, 2, 2)), [1, 2]), "difficulties has shape"),
        (lambda: A.d_star(np.zeros((2, 2, 2)), [1, np.nan]), "difficulties="),
        (lambda: A.d_star(np.zeros((2, 2, 2)), [1, 2], tol=-0.1), "tol=-0.1"),
        (lambda: A.d_star(np.zeros((2, 2, 2)), [1, 2], tol=float("nan")), "tol=nan"),
    ],
)
def test_d_star_rejects_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- seed bootstrap ---------------------------------------------------------------------------
BOOT_RISK = np.array(
    [
        [[0.10, 0.50, 0.30], [0.40, 0.45, 0.50]],
        [[0.30, 0.20, 0.35], [0.30, 0.60, 0.20]],
        [[0.60, 0.15, 0.60], [0.35, 0.35, 0.35]],
    ]
)  # [D=3, N=2, S=3]


def exact_bootstrap(risk: np.ndarray, difficulties) -> list[dict[float, float]]:
    """Per budget: the probability of each d* over all S^S equally likely index tuples."""
    S = risk.shape[2]
    out = [{} for _ in range(risk.shape[1])]
    tuples = list(itertools.product(range(S), repeat=S))
    for t in tuples:
        best, _ = ref_d_star(risk[:, :, list(t)], difficulties)
        for j, b in enumerate(best):
            out[j][b] = out[j].get(b, 0.0) + 1 / len(tuples)
    return out


def exact_quantile(dist: dict[float, float], q: float, side: str) -> float:
    cdf = 0.0
    for value in sorted(dist):
        cdf += dist[value]
        if cdf >= q if side == "lower" else cdf > q:
            return value
    return max(dist)


def test_bootstrap_distribution_matches_every_resample_enumerated():
    exact = exact_bootstrap(BOOT_RISK, [1, 2, 3])
    assert exact[0] == pytest.approx({1.0: 11 / 27, 2.0: 15 / 27, 3.0: 1 / 27})
    boot = A.bootstrap_d_star(BOOT_RISK, [1, 2, 3], n_boot=20000, seed=3, level=0.9)
    for j, dist in enumerate(exact):
        values, counts = np.unique(boot.samples[:, j], return_counts=True)
        assert set(values.tolist()) <= set(dist), "a resample outside the enumerated support"
        for v, c in zip(values.tolist(), counts, strict=True):
            assert c / 20000 == pytest.approx(dist[v], abs=0.015)
        # no cumulative probability sits within 0.005 of a cut, so the sample quantiles are the exact ones
        cdf = np.cumsum([dist[v] for v in sorted(dist)])
        assert np.all(np.abs(cdf - 0.05) > 0.005) and np.all(np.abs(cdf - 0.95) > 0.005)
        assert boot.low[j] == exact_quantile(dist, 0.05, "lower")
        assert boot.high[j] == exact_quantile(dist, 0.95, "higher")
    np.testing.assert_array_equal(boot.low, [1.0, 2.0])
    np.testing.assert_array_equal(boot.high, [2.0, 3.0])  # d=3 at budget 0 has 1/27 < 5%


def test_bootstrap_resamples_are_the_documented_draws():
    boot = A.bootstrap_d_star(BOOT_RISK, [1, 2, 3], n_boot=50, seed=11)
    idx = np.random.default_rng(11).integers(0, 3, size=(50, 3))
    for b in range(50):
        assert boot.samples[b].tolist() == ref_d_star(BOOT_RISK[:, :, idx[b]], [1, 2, 3])[0]
    for j in range(2):  # the conservative order statistics: lower at 2.5%, higher at 97.5%
        ordered = sorted(boot.samples[:, j])
        assert (
            boot.low[j] == ordered[math.floor(0.025 * 49)]
            and boot.high[j] == ordered[math.ceil(0.975 * 49)]
        )
    again = A.bootstrap_d_star(BOOT_RISK, [1, 2, 3], n_boot=50, seed=np.random.default_rng(11))
    np.testing.assert_array_equal(again.samples, boot.samples)
    np.testing.assert_array_equal(boot.d_star, A.d_star(BOOT_RISK, [1, 2, 3]))
    means = A.resample_seed_means(BOOT_RISK, 50, seed=11)
    assert means.shape == (3, 2, 50)
    np.testing.assert_allclose(means[:, :, 7], BOOT_RISK[:, :, idx[7]].mean(axis=2))


def test_bootstrap_interval_ends_are_levels_never_interpolated():
    boot = A.bootstrap_d_star(BOOT_RISK, [1, 2, 3], n_boot=2, seed=0, level=0.9)
    for j in range(2):
        assert sorted(boot.samples[:, j]) == [boot.low[j], boot.high[j]]  # two different draws
    assert boot.low[0] < boot.high[0]


def test_bootstrap_skips_diverged_cells_and_empty_budgets():
    r = BOOT_RISK.copy()
    r[0, 0] = np.nan  # d=1 diverged on every seed at budget 0
    r[:, 1] = np.nan  # budget 1 has no finite cell
    boot = A.bootstrap_d_star(r, [1, 2, 3], n_boot=300, seed=0)
    assert 1.0 not in boot.samples[:, 0]
    assert np.all(np.isnan(boot.samples[:, 1])) and np.isnan(boot.low[1]) and np.isnan(boot.high[1])
    with pytest.raises(ValueError, match="level=1.5"):
        A.bootstrap_d_star(r, [1, 2, 3], level=1.5)
    with pytest.raises(ValueError, match="n_boot=0"):
        A.bootstrap_d_star(r, [1, 2, 3], n_boot=0)


@pytest.mark.parametrize("S", [1, 2, 3, 4, 5, 6])
def test_distinct_resamples_counts_the_multisets(S):
    multisets = {tuple(sorted(t)) for t in itertools.product(range(S), repeat=S)}
    assert A.distinct_resamples(S) == len(multisets)


def test_distinct_resamples_rejects_bad_counts():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="num_seeds="):
            A.distinct_resamples(bad)


# ---- paired p-values --------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-20, 20), min_size=1, max_size=10))
def test_sign_flip_is_the_full_enumeration(units):
    assert P.sign_flip_p_value(np.array(units) / 64.0) == brute_sign_flip(units)


@pytest.mark.parametrize(
    "units",
    [
        [3, -1, 4, 1, -5, 9, 2, 6, -5, 3, 5, 8, -9, 7, 9, 3, 2],  # p = 0.036
        [3, -4, 4, 1, -5, 9, -2, 6, -5, 3, -5, 8, -9, 7, -9, 3, 2],  # p = 0.40
    ],
)
def test_sign_flip_beyond_exact_range_draws_flips(units):
    # S = 17 > 16: 2^16 random flips; their standard error is below 0.002
    p = P.sign_flip_p_value(np.array(units) / 10.0)
    assert p == pytest.approx(brute_sign_flip(units), abs=0.01)
    assert p == P.sign_flip_p_value(np.array(units) / 10.0)  # deterministic


def test_sign_flip_edge_cases():
    assert P.sign_flip_p_value([0.0, 0.0, 0.0]) == 1.0
    assert np.isnan(P.sign_flip_p_value([np.nan, np.nan]))
    assert (
        P.sign_flip_p_value([0.1, np.nan, 0.2]) == 0.25
    )  # NaN dropped: two differences, one of 4 flips
    assert P.sign_flip_p_value([0.3] * 4) == 1 / 16  # 4 seeds: never below 0.05


def _pairs(rng: np.random.Generator, S: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    best = rng.uniform(0.2, 0.6, S)
    return best + rng.normal(shift, 0.05, S), best


@pytest.mark.parametrize("seed", range(5))
def test_t_test_matches_scipy_and_the_formula(seed):
    rng = np.random.default_rng(seed)
    worse, best = _pairs(rng, 8, 0.03)
    worse[2] = np.nan  # an unpaired seed is dropped from both samples
    p = P.paired_p_value(worse - best, "t")
    keep = np.isfinite(worse)
    assert p == pytest.approx(
        stats.ttest_rel(worse[keep], best[keep], alternative="greater").pvalue, rel=1e-12
    )
    diff = worse[keep] - best[keep]
    t = diff.mean() / (diff.std(ddof=1) / np.sqrt(diff.size))
    assert p == pytest.approx(stats.t.sf(t, diff.size - 1), rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_wilcoxon_matches_scipy_and_exact_rank_enumeration(seed):
    rng = np.random.default_rng(seed)
    worse, best = _pairs(rng, 9, 0.02)
    p = P.paired_p_value(worse - best, "wilcoxon")
    assert p == pytest.approx(stats.wilcoxon(worse, best, alternative="greater").pvalue, rel=1e-12)
    assert p == pytest.approx(brute_signed_rank((worse - best).tolist()), rel=1e-12)


def test_paired_p_value_degenerate_inputs():
    for method in P.PAIRED_METHODS:
        assert P.paired_p_value([0.0, 0.0, 0.0], method) == 1.0
        assert np.isnan(P.paired_p_value([np.nan], method))
    assert np.isnan(P.paired_p_value([0.2], "t"))  # one pair: no spread
    assert P.paired_p_value([0.2], "sign_flip") == 0.5
    with pytest.raises(ValueError, match="method='z'"):
        P.paired_p_value([0.1, 0.2], "z")


# ---- Holm ---------------------------------------------------------------------------------------
def test_holm_hand_computed():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    adjusted, reject = P.holm([0.01, 0.04, 0.03, 0.005], alpha=0.05)
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_array_equal(reject, [True, False, False, True])
    adjusted, reject = P.holm([0.01, np.nan, 0.04], alpha=0.05)  # NaN: no test, m = 2
    np.testing.assert_allclose(adjusted, [0.02, np.nan, 0.04])
    np.testing.assert_array_equal(reject, [True, False, True])
    np.testing.assert_allclose(P.holm([0.6, 0.9])[0], [1.0, 1.0])  # capped at 1
    with pytest.raises(ValueError, match="alpha=0"):
        P.holm([0.1], alpha=0)
    with pytest.raises(ValueError, match="p_values="):
        P.holm([0.1, 1.2])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(st.floats(0, 1), st.just(float("nan"))), min_size=1, max_size=8),
    st.sampled_from([0.01, 0.05, 0.1]),
)
def test_holm_equals_the_step_down_rule(p, alpha):
    adjusted, reject = P.holm(p, alpha)
    assert reject.tolist() == step_down_holm(p, alpha)
    finite = np.isfinite(p)
    assert np.all(adjusted[finite] >= np.asarray(p)[finite]) and np.all(np.isnan(adjusted[~finite]))


# ---- comparisons against d* ---------------------------------------------------------------------
def make_paired_grid() -> np.ndarray:
    """[D=4, N=2, S=6]: budget 0: d=2 best, d=1 worse on every seed, d=3 close (mixed signs),
    d=4 all diverged; budget 1: no finite cell."""
    best = np.array([0.20, 0.25, 0.30, 0.22, 0.28, 0.24])
    r = np.full((4, 2, 6), np.nan)
    r[1, 0] = best
    r[0, 0] = best + np.array([0.10, 0.12, 0.08, 0.11, 0.09, 0.10])
    r[2, 0] = best + np.array([0.02, -0.01, 0.03, -0.02, 0.01, 0.00])
    r[2, 0, 5] = np.nan  # one diverged seed: five pairs
    return r


def test_compare_to_d_star_on_a_hand_made_grid():
    r = make_paired_grid()
    c = P.compare_to_d_star(r, [1, 2, 3, 4])
    assert c.d_star[0] == 2.0 and np.isnan(c.d_star[1])
    np.testing.assert_allclose(c.margin[:3, 0], [0.10, 0.0, 0.006], atol=1e-12)
    np.testing.assert_array_equal(c.num_seeds[:, 0], [6, 6, 5, 0])
    assert c.p_value[0, 0] == 1 / 64 and c.p_value[2, 0] == brute_sign_flip([2, -1, 3, -2, 1])
    assert np.isnan(c.p_value[1, 0]) and np.isnan(c.p_value[3, 0])  # d* itself; no pairs
    np.testing.assert_allclose(c.p_adjusted[[0, 2], 0], P.holm(c.p_value[[0, 2], 0])[0])
    assert c.not_worse_set(0) == (2.0, 3.0)  # d=1 rejected (Holm p 1/32), d=4 has no finite seed
    assert c.runner_up[0] == 3.0 and c.runner_up_margin[0] == pytest.approx(0.006)
    assert (
        c.not_worse_set(1) == () and np.isnan(c.runner_up[1]) and np.all(np.isnan(c.p_value[:, 1]))
    )
    d = P.paired_differences(r, [1, 2, 3, 4])
    np.testing.assert_allclose(d[0, 0], [0.10, 0.12, 0.08, 0.11, 0.09, 0.10])
    assert np.isnan(d[2, 0, 5]) and np.all(np.isnan(d[:, 1]))


def test_compare_to_d_star_methods_match_their_p_values():
    r = make_paired_grid()
    for method in P.PAIRED_METHODS:
        c = P.compare_to_d_star(r, [1, 2, 3, 4], method=method)
        for i in (0, 2):
            pair = np.isfinite(r[i, 0]) & np.isfinite(r[1, 0])
            assert c.p_value[i, 0] == P.paired_p_value(r[i, 0, pair] - r[1, 0, pair], method)
    t = P.compare_to_d_star(r, [1, 2, 3, 4], method="t")
    pair = np.isfinite(r[2, 0])
    ref = stats.ttest_rel(r[2, 0, pair], r[1, 0, pair], alternative="greater").pvalue
    assert t.p_value[2, 0] == pytest.approx(ref, rel=1e-12)


def test_four_seeds_cannot_reject_at_five_percent():
    r = make_paired_grid()[:, :, :4]
    assert P.compare_to_d_star(r, [1, 2, 3, 4]).not_worse_set(0) == (1.0, 2.0, 3.0)
    # Holm over two comparisons: d=1's p 1/16 adjusts to 1/8
    assert P.compare_to_d_star(r, [1, 2, 3, 4], alpha=0.15).not_worse_set(0) == (2.0, 3.0)


@settings(max_examples=60, deadline=None)
@given(grids(max_d=4, max_n=2, max_s=6))
def test_compare_to_d_star_matches_a_brute_force_procedure(risk):
    D, N, _ = risk.shape
    difficulties = list(range(1, D + 1))
    c = P.compare_to_d_star(risk, difficulties, alpha=0.1)
    ref_best, _ = ref_d_star(risk, difficulties)
    np.testing.assert_array_equal(c.d_star, ref_best)
    for j in range(N):
        if not math.isfinite(ref_best[j]):
            assert c.not_worse_set(j) == ()
            continue
        k = difficulties.index(ref_best[j])
        p = [float("nan")] * D
        for i in range(D):
            pair = [
                s
                for s in range(risk.shape[2])
                if math.isfinite(risk[i, j, s]) and math.isfinite(risk[k, j, s])
            ]
            if i != k and pair:
                p[i] = brute_sign_flip([round(16 * (risk[i, j, s] - risk[k, j, s])) for s in pair])
                assert c.num_seeds[i, j] == len(pair)
        np.testing.assert_array_equal(c.p_value[:, j], p)
        reject = step_down_holm(p, 0.1)
        keep = {
            difficulties[i]
            for i in range(D)
            if i == k or (math.isfinite(ref_mean(risk[i, j])) and not reject[i])
        }
        assert set(c.not_worse_set(j)) == keep


def test_compare_to_d_star_rejects_bad_input():
    r = make_paired_grid()
    with pytest.raises(ValueError, match="method='anova'"):
        P.compare_to_d_star(r, [1, 2, 3, 4], method="anova")
    with pytest.raises(ValueError, match="alpha=1.0"):
        P.compare_to_d_star(r, [1, 2, 3, 4], alpha=1.0)
    with pytest.raises(ValueError, match="target_risk has shape"):
        P.compare_to_d_star(r[:, :, 0], [1, 2, 3, 4])


# ---- notes and trends ---------------------------------------------------------------------------
def test_support_note():
    for S in range(1, 5):
        note = A.support_note(S)
        assert note and f"{S} seed" in note and "cannot support a claim" in note
        assert f"{A.distinct_resamples(S)} distinct" in note
    assert "35 distinct" in A.support_note(4) and "0.0625" in A.support_note(4)
    assert A.support_note(0) != ""
    assert A.support_note(5) == "" and A.support_note(40) == ""
    for bad in (-1, 2.5, "3"):
        with pytest.raises(ValueError, match="num_seeds="):
            A.support_note(bad)


def test_trend():
    assert A.trend([0.1, 0.2, 0.3]) == 1.0
    assert A.trend([0.3, 0.2, 0.1]) == 0.0
    assert A.trend([0.1, 0.3, 0.2]) == pytest.approx(2 / 3)
    assert np.isnan(A.trend([0.5, 0.505, 0.5]))  # every pair within tol
    assert A.trend([0.5, 0.505, 0.5], tol=0.001) == 0.5


def test_quiet_nan_warnings_silences_all_nan_slices():
    with G.quiet_nan_warnings():
        assert np.isnan(np.nanmean(np.array([np.nan, np.nan])))
    with pytest.raises(RuntimeWarning), warnings.catch_warnings():
        warnings.simplefilter("error")
        np.nanmean(np.array([np.nan, np.nan]))


def test_d_star_takes_the_results_dataset_and_returns_integer_difficulties():
    """difftrade.d_star(ds): the same argmin as on the hand-transposed [D, N, S] array, diverged
    members skipped, as integers over the budget coordinate."""
    from pathlib import Path

    import xarray as xr

    import difftrade

    ds = xr.load_dataset(Path(__file__).resolve().parents[1] / "docs/runs/study/sorting.nc")
    got = difftrade.d_star(ds)
    assert got.dtype.kind == "i" and list(got.dims) == ["budget"]
    grid = ds["target_risk"].transpose("difficulty", "budget", "seed").values
    np.testing.assert_array_equal(got.values, difftrade.d_star(grid, ds["difficulty"].values))
    ds["diverged"][{"difficulty": 3, "budget": -1}] = True  # d = 5 at n = 2,048 diverged: 4 wins
    assert int(difftrade.d_star(ds).values[-1]) == 4
