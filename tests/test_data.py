"""Data layer: difficulty distributions, addressable streams, budgets, overlap counts."""

from __future__ import annotations

import functools
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from difftrade.config import level_weights
from difftrade.tasks import data, make_task, split_prompt_answer

REPO = pathlib.Path(__file__).resolve().parents[1]


# ---- distributions ------------------------------------------------------------------------
@st.composite
def task_and_levels(draw):
    """A task with random d_min..d_max, a level d, a window lo <= hi and a mixture weight."""
    d_min = draw(st.integers(1, 5))
    d_max = draw(st.integers(d_min, d_min + 12))
    task = make_task("sorting", d_min=d_min, d_max=d_max)
    d = draw(st.integers(d_min, d_max))
    lo = draw(st.integers(d_min, d_max))
    hi = draw(st.integers(lo, d_max))
    main = draw(st.floats(0.0, 1.0, allow_nan=False))
    return task, d, lo, hi, main


def _is_distribution(w: np.ndarray, num_levels: int) -> None:
    assert w.shape == (num_levels,)
    assert np.all(w >= 0)
    assert abs(w.sum() - 1.0) < 1e-12
    np.testing.assert_array_equal(level_weights.validate_weights(w, num_levels), w)


@settings(max_examples=200, deadline=None)
@given(task_and_levels())
def test_distributions_are_probability_vectors(args):
    task, d, lo, hi, main = args
    levels = np.array(task.levels)
    for w in (
        level_weights.point(task, d),
        level_weights.window(task, lo, hi),
        level_weights.uniform(task),
        level_weights.mixture(task, d, main),
        level_weights.distribution(task, "point", d),
        level_weights.distribution(task, "mixture", d, main),
        level_weights.distribution(task, "up_to", d),
    ):
        _is_distribution(w, task.num_levels)
    np.testing.assert_array_equal(level_weights.point(task, d) > 0, levels == d)
    np.testing.assert_array_equal(
        level_weights.window(task, lo, hi) > 0, (levels >= lo) & (levels <= hi)
    )
    np.testing.assert_array_equal(level_weights.distribution(task, "up_to", d) > 0, levels <= d)
    mix = level_weights.mixture(task, d, main)
    assert np.all(mix >= (1.0 - main) / task.num_levels - 1e-12)
    assert mix[d - task.d_min] >= main - 1e-12
    np.testing.assert_allclose(level_weights.mixture(task, d, 1.0), level_weights.point(task, d))


def test_distribution_arguments_out_of_range_raise_naming_the_field():
    task = make_task("sorting", d_min=2, d_max=6)
    with pytest.raises(ValueError, match="difficulty=7"):
        level_weights.point(task, 7)
    with pytest.raises(ValueError, match="window.lo=1"):
        level_weights.window(task, 1, 3)
    with pytest.raises(ValueError, match="window.hi=2"):
        level_weights.window(task, 4, 2)
    with pytest.raises(ValueError, match="mixture.main"):
        level_weights.mixture(task, 3, 1.5)
    with pytest.raises(ValueError, match="train_distribution='pointt'"):
        level_weights.distribution(task, "pointt", 3)


@st.composite
def valid_weights(draw):
    n = draw(st.integers(1, 12))
    raw = draw(st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=n, max_size=n))
    w = np.array(raw) + 1e-3
    return w / w.sum()


@settings(max_examples=200, deadline=None)
@given(
    w=valid_weights(),
    which=st.integers(0, 100),
    amount=st.floats(1e-3, 5.0),
    scale=st.floats(1.001, 3.0),
)
def test_validate_weights_rejects_bad_vectors_naming_the_field(w, which, amount, scale):
    n = len(w)
    np.testing.assert_allclose(level_weights.validate_weights(w, n, "train_weights"), w)
    negative = w.copy()
    negative[which % n] = -amount
    with pytest.raises(ValueError, match="train_weights=.*negative"):
        level_weights.validate_weights(negative, n, "train_weights")
    for off in (w * scale, w / scale):
        with pytest.raises(ValueError, match="train_weights sums to"):
            level_weights.validate_weights(off, n, "train_weights")
    for length in (n - 1, n + 1):
        with pytest.raises(ValueError, match="train_weights has shape"):
            level_weights.validate_weights(np.resize(w, length), n, "train_weights")
    with pytest.raises(ValueError, match="train_weights has shape"):
        level_weights.validate_weights(w[None, :], n, "train_weights")
    nan = w.copy()
    nan[which % n] = np.nan
    with pytest.raises(ValueError, match="train_weights"):
        level_weights.validate_weights(nan, n, "train_weights")


# ---- streams ------------------------------------------------------------------------------
_examples = jax.jit(data.examples, static_argnums=(0, 2))
_examples_at_level = jax.jit(data.examples_at_level, static_argnums=(0, 2))

# Run in this process and in a fresh one: the same batch must hash the same.
HASH_SNIPPET = """
import hashlib
import jax, jax.numpy as jnp, numpy as np
from difftrade.config import level_weights
from difftrade.tasks import data
from difftrade.tasks import make_task

def batch_hash():
    task = make_task("chain")
    weights = jnp.asarray(level_weights.mixture(task, 5, 0.6), jnp.float32)
    examples = jax.jit(data.examples, static_argnums=(0, 2))
    tokens, mask, levels = examples(task, jax.random.key(20260), 0, weights, jnp.arange(512))
    digest = hashlib.sha256()
    for array in (tokens, mask, levels):
        digest.update(np.asarray(array).tobytes())
    return digest.hexdigest()
"""


def _batch_hash_here() -> str:
    namespace: dict = {}
    exec(HASH_SNIPPET, namespace)  # noqa: S102 - the very code the subprocess runs
    return namespace["batch_hash"]()


def test_streams_are_deterministic_within_a_process():
    task = make_task("pointer")
    weights = jnp.asarray(level_weights.uniform(task), jnp.float32)
    first = _examples(task, jax.random.key(1), 0, weights, jnp.arange(300))
    again = _examples(task, jax.random.key(1), 0, weights, jnp.arange(300))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert _batch_hash_here() == _batch_hash_here()


def test_streams_are_deterministic_across_processes():
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # same backend as this process
    out = subprocess.run(
        [sys.executable, "-c", HASH_SNIPPET + "\nprint(batch_hash())"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == _batch_hash_here()


def test_example_i_of_split_s_at_level_d_has_the_documented_key():
    task = make_task("addition")
    root = jax.random.key(11)
    tokens, mask = _examples_at_level(task, root, data.SPLITS["test"], 4, jnp.arange(5))
    t, m = _addressed_examples(task, root, 1, 4, jnp.arange(5))
    np.testing.assert_array_equal(tokens, t)
    np.testing.assert_array_equal(mask, m)
    # a point distribution gives the same stream as examples_at_level
    weights = jnp.asarray(level_weights.point(task, 4), jnp.float32)
    t, m, levels = _examples(task, root, data.SPLITS["test"], weights, jnp.arange(5))
    np.testing.assert_array_equal(t, tokens)
    assert np.all(np.asarray(levels) == 4)


def test_splits_share_no_key():
    task = make_task("addition")
    root = jax.random.key(0)
    indices = jnp.arange(2000)

    def key_set(split: int) -> set[bytes]:
        keys = jax.vmap(lambda d: jax.vmap(lambda i: data.example_key(root, split, d, i))(indices))(
            jnp.array(task.levels)
        )
        raw = np.asarray(jax.random.key_data(keys)).reshape(-1, 2)
        rows = {r.tobytes() for r in raw}
        assert len(rows) == len(raw)  # no two (level, index) pairs share a key either
        return rows

    sets = [key_set(s) for s in data.SPLITS.values()]
    for a in range(len(sets)):
        for b in range(a + 1, len(sets)):
            assert not sets[a] & sets[b]


def test_splits_produce_different_examples():
    task = make_task("addition")
    root = jax.random.key(5)
    weights = jnp.asarray(level_weights.uniform(task), jnp.float32)
    train = np.asarray(_examples(task, root, 0, weights, jnp.arange(1000))[0])
    test = np.asarray(_examples(task, root, 1, weights, jnp.arange(1000))[0])
    assert (train != test).any(axis=1).mean() > 0.9  # low levels have tiny spaces: rare repeats
    hard = data.overlap_report(task, root, task.d_max, 500, 500)
    assert hard.test_in_train == 0 and hard.duplicate_train == 0


@pytest.mark.parametrize("kind", ["point", "mixture", "up_to"])
def test_budgets_are_nested(kind):
    task = make_task("sorting")
    root = jax.random.key(9)
    weights = jnp.asarray(level_weights.distribution(task, kind, 5, 0.7), jnp.float32)
    big = _examples(task, root, 0, weights, jnp.arange(400))
    for n in (1, 37, 400):
        small = _examples(task, root, 0, weights, jnp.arange(n)) if n != 400 else big
        for a, b in zip(small, big):
            np.testing.assert_array_equal(a, np.asarray(b)[:n])


@pytest.mark.parametrize(
    "weights",
    [
        [0.1, 0.0, 0.3, 0.05, 0.25, 0.0, 0.2, 0.1],
        [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5],
        [1 / 8] * 8,
        list(np.arange(1, 9) / 36),
    ],
)
def test_example_levels_frequencies_match_weights(weights):
    task = make_task("addition")
    n = 40_000
    w = np.array(weights)
    levels = np.asarray(
        jax.jit(data.example_levels, static_argnums=(0, 2))(
            task, jax.random.key(2), 0, jnp.asarray(w, jnp.float32), jnp.arange(n)
        )
    )
    counts = np.bincount(levels - task.d_min, minlength=task.num_levels)
    assert counts.sum() == n
    assert np.all(counts[w == 0] == 0)  # zero weight: never chosen
    live = w > 0
    if live.sum() > 1:
        expected = n * w[live]
        chi2 = ((counts[live] - expected) ** 2 / expected).sum()
        assert chi2 < stats.chi2.ppf(1 - 1e-6, df=live.sum() - 1), (counts, expected)


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _addressed_examples(task, root, split: int, level: int, indices):
    """Examples built from the documented key formula, without the data layer's samplers."""
    keys = jax.vmap(
        lambda i: jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, split), level), i)
    )(indices)
    return jax.vmap(task.sample, in_axes=(0, None))(keys, level)


def _operand_pairs(task, root, split: int, level: int, n: int) -> list[tuple[int, int]]:
    """(a, b) of examples [0, n), read off the prompt text the reference solver uses."""
    tokens, mask = _addressed_examples(task, root, split, level, jnp.arange(n))
    pairs = []
    for row, row_mask in zip(np.asarray(tokens), np.asarray(mask)):
        prompt, _ = split_prompt_answer(row, row_mask)
        a, b = prompt.split("+")
        pairs.append((int(a), int(b)))
    return pairs


@pytest.mark.parametrize("n_train, n_test", [(1, 1), (300, 200), (2000, 200)])
def test_overlap_report_is_exact_on_one_digit_addition(n_train, n_test):
    task = make_task("addition")
    root = jax.random.key(77)
    report = data.overlap_report(task, root, 1, n_train, n_test)
    train = _operand_pairs(task, root, data.SPLITS["train"], 1, n_train)
    test = _operand_pairs(task, root, data.SPLITS["test"], 1, n_test)
    distinct = set(train)
    assert all(0 <= a < 10 and 0 <= b < 10 for a, b in train + test)
    assert report.sample_space == 100
    assert report.level == 1 and report.n_train == n_train and report.n_test == n_test
    assert report.distinct_train == len(distinct)
    assert report.duplicate_train == n_train - len(distinct)
    assert report.test_in_train == sum(pair in distinct for pair in test)
    if n_train == 2000:
        assert report.distinct_train == 100 and report.test_in_train == n_test  # space exhausted
    assert f"{report.test_in_train}/{n_test}" in str(report)


def test_overlap_report_rejects_bad_arguments():
    task = make_task("addition")
    with pytest.raises(ValueError, match="n_train=0"):
        data.overlap_report(task, jax.random.key(0), 1, 0, 5)
    with pytest.raises(ValueError, match="n_test=-2"):
        data.overlap_report(task, jax.random.key(0), 1, 5, -2)
    with pytest.raises(ValueError, match="level=9"):
        data.overlap_report(task, jax.random.key(0), 9, 5, 5)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, False, "3", None, np.float64(2.0)])
def test_check_budget_rejects_non_positive_integers(bad):
    with pytest.raises(ValueError, match="n_train="):
        data.check_budget(bad, "n_train")


@pytest.mark.parametrize("good", [1, 7, np.int64(12), 10**9])
def test_check_budget_accepts_positive_integers(good):
    assert data.check_budget(good) == int(good) and type(data.check_budget(good)) is int


def test_unknown_split_raises():
    with pytest.raises(ValueError, match="split='valid'"):
        data.split_id("valid")
    assert data.split_id("test") == 1 and data.split_id(2) == 2


@pytest.mark.slow
def test_overlap_table_agrees_with_overlap_report():
    """The nested one-pass table equals the per-budget exact report on every cell."""
    task = make_task("addition", d_max=2)
    root = jax.random.key(3)
    budgets = [50, 10, 400]
    dup, hit = data.overlap_table(task, root, [1, 2], budgets, 60)
    for i, level in enumerate([1, 2]):
        for j, n in enumerate(budgets):
            rep = data.overlap_report(task, root, level, n, 60)
            assert dup[i, j] == rep.duplicate_train / n
            assert hit[i, j] == rep.test_in_train / 60
    assert np.all(np.isnan(data.overlap_table(task, root, [2], [10], 5, max_space=100)[0]))
