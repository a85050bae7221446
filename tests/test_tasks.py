"""Task families: generated answers match the reference solvers, one compile for all levels,
validation and clamping of difficulty, fixed shapes, exact loss masks, exact sample spaces."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from difftrade.tasks import REGISTRY, make_task, split_prompt_answer, task_options
from difftrade.tasks.base import ANSWER, BOS, EOS, PAD, VOCAB, Task

# (family, options): every family, and every option that changes the format.
CONFIGS: list[tuple[str, dict]] = [
    ("addition", {}),
    ("addition", {"levels_kind": "exact"}),
    ("addition", {"scratchpad": True}),
    ("addition", {"levels_kind": "exact", "scratchpad": True, "d_max": 5}),
    ("chain", {}),
    ("chain", {"cot": False}),
    ("chain", {"modulus": 7, "ops": "*-", "d_min": 2, "d_max": 10}),
    ("pointer", {}),
    ("pointer", {"cot": False}),
    ("pointer", {"num_nodes": 5, "shuffle_edges": False, "d_max": 9}),
    ("parity", {}),
    ("parity", {"cot": True}),
    ("parity", {"n_bits": 8, "d_min": 3, "d_max": 8}),
    ("sorting", {}),
    ("sorting", {"num_values": 3, "d_max": 12}),
]
IDS = [name + "".join(f"-{k}={v}" for k, v in opts.items()) for name, opts in CONFIGS]
PER_LEVEL = 1000


def test_every_registered_family_is_covered():
    assert {name for name, _ in CONFIGS} == set(REGISTRY)


@functools.cache
def _task(index: int) -> Task:
    name, opts = CONFIGS[index]
    return make_task(name, **opts)


# Compiled samplers are shared between tests so that each task compiles a handful of times in
# the whole file; every call passes an int32 array difficulty (a Python int would be weakly
# typed: a second cache entry).
TRACES: dict[int, int] = {}


@functools.cache
def _single(index: int):
    """jit(sample)(key, d) for one example, counting how often it is traced."""

    def sample(key, d):
        TRACES[index] = TRACES.get(index, 0) + 1  # runs only while tracing
        return _task(index).sample(key, d)

    return jax.jit(sample)


@functools.cache
def _batched(index: int):
    """jit(vmap(sample)) over (keys [B], levels [B]); compiled once per batch shape, for all levels."""
    return jax.jit(jax.vmap(_task(index).sample))


def _batch_size(index: int) -> int:
    return PER_LEVEL * _task(index).num_levels


def _batch(index: int, seed: int, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keys = jax.random.split(jax.random.key(seed), len(levels))
    tokens, mask = _batched(index)(keys, jnp.asarray(levels, jnp.int32))
    return np.asarray(tokens), np.asarray(mask)


@functools.cache
def _level_batch(index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PER_LEVEL examples at every level (levels ascending): levels, tokens, mask."""
    levels = np.repeat(np.array(_task(index).levels), PER_LEVEL)
    return (levels, *_batch(index, 1000 + index, levels))


def _prompt_level(name: str, task: Task, prompt: str) -> int | None:
    """The difficulty a prompt is at, read off the text (None where it is not determined)."""
    if name == "addition":
        a, b = prompt.split("+")
        if task.levels_kind == "exact":
            assert len(str(int(a))) == len(str(int(b))), prompt
            return len(str(int(a)))
        return None  # nested: only an upper bound, checked below
    if name == "chain":
        return (len(prompt) - 1) // 2
    if name == "pointer":
        return int(prompt.split(":")[1])
    if name == "parity":
        return prompt.split("|")[1].count("1")
    if name == "sorting":
        return len(prompt)
    raise AssertionError(name)


def _check_masks(tokens: np.ndarray, mask: np.ndarray) -> None:
    """The mask is one contiguous run: from right after the first '=' up to the only <eos>."""
    length = tokens.shape[1]
    pos = np.arange(length)[None, :]
    assert np.all(tokens[:, 0] == BOS)
    assert np.all((tokens == BOS).sum(1) == 1)
    assert np.all((tokens == EOS).sum(1) == 1)
    eos = np.argmax(tokens == EOS, axis=1)[:, None]
    first_marker = np.argmax(tokens == ANSWER, axis=1)[:, None]
    assert np.all((tokens == ANSWER).any(1))
    expected = (pos > first_marker) & (pos <= eos)
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(tokens == PAD, pos > eos)  # pads only (and all) after <eos>


@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=IDS)
def test_answers_match_reference_solver_at_every_level(index):
    name, _ = CONFIGS[index]
    task = _task(index)
    levels, tokens, mask = _level_batch(index)
    assert tokens.shape == mask.shape == (len(levels), task.seq_len)
    _check_masks(tokens, mask)
    for row, row_mask, d in zip(tokens, mask, levels.tolist()):
        prompt, answer = split_prompt_answer(row, row_mask)
        assert answer == task.solve(prompt), (d, task.render(row, row_mask))
        assert int(row_mask.sum()) == len(answer) + 1
        level = _prompt_level(name, task, prompt)
        if level is not None:
            assert level == d, (d, prompt)
        if name == "addition":
            a, b = prompt.split("+")
            assert len(a) == len(b) == task.d_max and max(int(a), int(b)) < 10**d


@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=IDS)
def test_declared_level_structure_holds(index):
    """'exact': every generated problem's level is read off its text (disjoint supports);
    'nested': level d's problems lie in level d's support and include easier levels' problems."""
    name, _ = CONFIGS[index]
    task = _task(index)
    levels, tokens, mask = _level_batch(index)
    prompts = [split_prompt_answer(row, row_mask)[0] for row, row_mask in zip(tokens, mask)]
    if task.level_structure == "exact":
        read = [_prompt_level(name, task, p) for p in prompts]
        assert read == levels.tolist()
        return
    assert (name, task.level_structure) == ("addition", "nested")
    top = np.array([max(int(x) for x in p.split("+")) for p in prompts])
    for d in task.levels[1:]:
        at = top[levels == d]
        assert np.all(at < 10**d) and np.any(at < 10 ** (d - 1))


def test_level_structure_is_declared_by_every_task():
    """No default: a task class without ``level_structure`` cannot be built; a bad value is refused."""
    from difftrade.tasks.base import LEVEL_STRUCTURES
    from difftrade.tasks.sorting import Sorting

    for name, cls in REGISTRY.items():
        assert "level_structure" in {
            k for c in cls.__mro__[:-1] if c is not Task for k in vars(c)
        }, name
        assert make_task(name).level_structure in LEVEL_STRUCTURES

    class Undeclared(Task):  # everything a task needs but the level structure
        seq_len = property(lambda self: 8)

        def _sample(self, key, d):
            raise AssertionError("never sampled")

        def solve(self, prompt: str) -> str:
            return prompt

    with pytest.raises(TypeError, match="level_structure"):
        Undeclared()

    class Unknown(Sorting):
        @property
        def level_structure(self) -> str:
            return "overlapping"

    with pytest.raises(ValueError, match="level_structure='overlapping'.*allowed: exact, nested"):
        Unknown()


def test_default_sequence_lengths_are_modest():
    for name in REGISTRY:
        assert make_task(name).seq_len <= 64, name


@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=IDS)
def test_one_compile_for_all_levels(index):
    task = _task(index)
    f = _single(index)
    outputs = [
        f(jax.random.key(d), jnp.int32(d)) for d in (*task.levels, task.d_max + 3, task.d_min - 1)
    ]
    assert TRACES[index] == 1 and f._cache_size() == 1
    assert len({out[0].shape for out in outputs}) == 1
    levels, _, _ = _level_batch(index)  # the big batch: all levels, one program
    assert _batched(index)._cache_size() == 1 and len(set(levels.tolist())) == task.num_levels


@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=IDS)
def test_vmapped_sampling_equals_example_by_example(index):
    levels, tokens, mask = _level_batch(index)
    keys = jax.random.split(jax.random.key(1000 + index), len(levels))
    for i in range(0, len(levels), PER_LEVEL // 2):  # two examples per level
        t, m = _single(index)(keys[i], jnp.int32(levels[i]))
        np.testing.assert_array_equal(tokens[i], t)
        np.testing.assert_array_equal(mask[i], m)


def test_eager_sampling_equals_vmapped():
    index = IDS.index("chain")
    levels, tokens, mask = _level_batch(index)
    keys = jax.random.split(jax.random.key(1000 + index), len(levels))
    t, m = _task(index).sample(keys[-1], int(levels[-1]))  # no jit, Python-int difficulty
    np.testing.assert_array_equal(tokens[-1], t)
    np.testing.assert_array_equal(mask[-1], m)


@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=IDS)
def test_shapes_do_not_depend_on_difficulty(index):
    task = _task(index)
    key = jax.random.key(0)
    shapes = {jax.eval_shape(task.sample, key, jnp.int32(d)) for d in task.levels} | {
        jax.eval_shape(task.sample, key, d) for d in task.levels
    }
    ((tokens, mask),) = shapes
    assert tokens.shape == mask.shape == (task.seq_len,)
    assert tokens.dtype == jnp.int32 and mask.dtype == jnp.bool_


@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=IDS)
def test_python_int_difficulty_out_of_range_raises_naming_the_field(index):
    task = _task(index)
    key = jax.random.key(0)
    for bad in (task.d_min - 1, task.d_max + 1, -3, np.int64(task.d_max + 5)):
        with pytest.raises(
            ValueError, match=rf"difficulty={int(bad)} .*{task.d_min}\.\.{task.d_max}"
        ):
            task.sample(key, bad)
    with pytest.raises(ValueError, match="level="):
        task.check_difficulty(task.d_max + 1, field="level")


@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=IDS)
def test_traced_difficulty_out_of_range_is_clamped(index):
    task = _task(index)
    f = _single(index)
    key = jax.random.key(3)
    for bad, edge in (
        (task.d_max + 1, task.d_max),
        (99, task.d_max),
        (task.d_min - 1, task.d_min),
        (-5, task.d_min),
    ):
        for got, want in zip(f(key, jnp.int32(bad)), f(key, jnp.int32(edge))):
            np.testing.assert_array_equal(got, want)
    # also under vmap with a traced level vector (same batch shape as the big batch: no recompile)
    levels = np.resize(np.array([-1, 0, task.d_min - 1, task.d_max + 1, 99]), _batch_size(index))
    tokens, _ = _batch(index, 5, levels)
    clamped, _ = _batch(index, 5, np.clip(levels, task.d_min, task.d_max))
    np.testing.assert_array_equal(tokens, clamped)


def test_unknown_task_and_options_raise_with_did_you_mean():
    with pytest.raises(
        ValueError, match=r"task='additon' is unknown \(did you mean 'addition'\?\)"
    ):
        make_task("additon")
    with pytest.raises(ValueError, match=r"did you mean 'pointer'"):
        make_task("pointr")
    with pytest.raises(
        ValueError, match=r"option 'cott' is unknown for task 'chain' \(did you mean 'cot'\?\)"
    ):
        make_task("chain", cott=False)
    with pytest.raises(ValueError, match=r"did you mean 'n_bits'"):
        make_task("parity", nbits=8)
    with pytest.raises(ValueError, match=r"'hops' is unknown for task 'pointer'"):
        make_task("pointer", hops=3)


@pytest.mark.parametrize(
    "name, options, field",
    [
        ("chain", {"modulus": 11}, "modulus"),
        ("chain", {"modulus": 1}, "modulus"),
        ("chain", {"ops": "+/"}, "ops"),
        ("chain", {"ops": ""}, "ops"),
        ("chain", {"ops": "++"}, "ops"),
        ("chain", {"cot": "yes"}, "cot"),
        ("pointer", {"d_max": 10}, "d_max"),
        ("pointer", {"num_nodes": 27}, "num_nodes"),
        ("pointer", {"num_nodes": 1}, "num_nodes"),
        ("pointer", {"shuffle_edges": 1}, "shuffle_edges"),
        ("parity", {"n_bits": 8, "d_max": 9}, "d_max"),
        ("parity", {"n_bits": 0}, "n_bits"),
        ("sorting", {"num_values": 11}, "num_values"),
        ("sorting", {"d_min": 0}, "d_min"),
        ("sorting", {"d_min": 5, "d_max": 4}, "d_max"),
        ("addition", {"levels_kind": "nestd"}, "levels_kind"),
    ],
)
def test_bad_option_values_raise_naming_the_field(name, options, field):
    with pytest.raises(ValueError, match=field):
        make_task(name, **options)


def test_task_options_list_defaults():
    assert task_options("chain") == {
        "d_min": 1,
        "d_max": 8,
        "modulus": 10,
        "ops": "+-*",
        "cot": True,
    }
    assert (
        task_options("pointer")["cot"] is True and task_options("pointer")["shuffle_edges"] is True
    )
    assert task_options("parity")["n_bits"] == 16
    assert task_options("sorting")["num_values"] == 10


@pytest.mark.parametrize("name", ["chain", "pointer"])
def test_chain_of_thought_answer_of_a_hard_example_contains_the_easy_ones(name):
    """Same key at two levels: same start and steps, so the easy answer is a prefix of the hard one."""
    task = make_task(name)
    f = jax.jit(task.sample)
    for seed in range(20):
        key = jax.random.key(seed)
        hard = split_prompt_answer(*f(key, task.d_max))[1]
        for d in task.levels:
            assert hard.startswith(split_prompt_answer(*f(key, d))[1])


# (options, levels) whose whole sample space 40 x its size draws cover with certainty in practice;
# the sample spaces are uniform, so the counts are also tested against the uniform distribution
SMALL_SPACES = [
    ("addition", {"d_max": 3}, (1,)),
    ("addition", {"d_max": 3, "levels_kind": "exact"}, (1,)),
    ("chain", {"modulus": 3, "ops": "+"}, (1, 2, 3)),
    ("chain", {"modulus": 2, "ops": "+-*", "cot": False}, (1, 2)),
    ("pointer", {"num_nodes": 3, "shuffle_edges": False}, (1, 2)),
    ("pointer", {"num_nodes": 3}, (1, 3)),
    ("parity", {"n_bits": 4, "d_max": 4}, (1, 2, 4)),
    ("sorting", {"num_values": 3}, (1, 3, 5)),
    ("sorting", {}, (1, 2)),
]


@pytest.mark.parametrize("name, options, levels", SMALL_SPACES)
def test_sample_space_size_is_exact(name, options, levels):
    task = make_task(name, **options)
    f = jax.jit(jax.vmap(task.sample))
    n = 40 * max(task.sample_space_size(d) for d in levels)  # one batch shape: one compile
    for d in levels:
        size = task.sample_space_size(d)
        tokens, _ = f(jax.random.split(jax.random.key(d), n), jnp.full((n,), d, jnp.int32))
        # the answer is a function of the prompt, so distinct rows = distinct problems
        _, counts = np.unique(np.asarray(tokens), axis=0, return_counts=True)
        assert len(counts) == size, (name, options, d)
        # ... and every problem is equally likely (chi-square against uniform)
        chi2 = ((counts - n / size) ** 2 / (n / size)).sum()
        assert chi2 < stats.chi2.ppf(1 - 1e-6, df=size - 1), (name, options, d, chi2)


def test_sample_space_sizes_of_defaults():
    assert make_task("addition").sample_space_size(1) == 100
    assert make_task("addition", levels_kind="exact").sample_space_size(2) == 90**2
    assert make_task("chain").sample_space_size(2) == 10 * 30**2
    assert make_task("pointer").sample_space_size(3) == 8**8 * 8 * 40320
    assert make_task("parity").sample_space_size(2) == 2**16 * 120
    assert make_task("sorting").sample_space_size(4) == 10**4


# ---- render -----------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(
    tokens=st.lists(st.integers(0, len(VOCAB) - 1), min_size=0, max_size=64),
    mask_bits=st.lists(st.booleans(), min_size=64, max_size=64),
    with_mask=st.booleans(),
)
def test_render_never_crashes_on_any_token_row(tokens, mask_bits, with_mask):
    task = make_task("chain")
    mask = np.array(mask_bits[: len(tokens)], bool) if with_mask else None
    text = task.render(np.array(tokens, np.int32), mask)
    assert isinstance(text, str)
    assert "<pad>" not in text
    if not with_mask:
        assert "[" not in text and "]" not in text


@settings(max_examples=60, deadline=None)
@given(
    index=st.integers(0, len(CONFIGS) - 1), seed=st.integers(0, 2**31 - 1), level=st.integers(0, 30)
)
def test_render_shows_prompt_and_bracketed_answer(index, seed, level):
    task = _task(index)
    d = task.d_min + level % task.num_levels
    tokens, mask = (np.asarray(x) for x in _single(index)(jax.random.key(seed), jnp.int32(d)))
    prompt, answer = split_prompt_answer(tokens, mask)
    text = task.render(tokens, mask)
    assert text.startswith("<bos>")
    assert text.count("[") == text.count("]") == 1
    assert f"{prompt}=[{answer} <eos> ]" in text
    plain = task.render(tokens)
    assert " ".join(text.replace("[", "").replace("]", "").split()) == " ".join(plain.split())
    assert plain.replace(" ", "") == f"<bos>{prompt}={answer}<eos>"


def test_register_refuses_a_taken_name():
    """A second class under an existing name would silently replace the family; it is refused.
    Registering the same class again is harmless."""
    from difftrade.tasks import register
    from difftrade.tasks.sorting import Sorting

    class Impostor(Sorting):
        name = "sorting"

    with pytest.raises(
        ValueError,
        match="task name 'sorting' is already registered by difftrade.tasks.sorting.Sorting",
    ):
        register(Impostor)
    assert register(Sorting) is Sorting and REGISTRY["sorting"] is Sorting
