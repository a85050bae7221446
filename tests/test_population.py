"""The population runner: chunk plans, the member mesh, and finished chunks stored and resumed by member id."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from difftrade.runner.population import PartialStore, map_chunks, plan_chunks
from difftrade.train.mesh import on_member_mesh, round_up


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=1, max_size=40),
    st.integers(1, 9),
    st.booleans(),
    st.data(),
)
def test_plan_covers_each_member_once_and_never_mixes_groups(groups, size, grouped, data):
    groups = np.asarray(groups)
    todo = np.flatnonzero(
        data.draw(st.lists(st.booleans(), min_size=len(groups), max_size=len(groups)))
    )
    chunks = plan_chunks(todo, size, groups if grouped else None)
    got = np.concatenate([ids for ids, _ in chunks]) if chunks else np.zeros(0, int)
    assert sorted(got.tolist()) == todo.tolist()  # every member to do, once
    for ids, width in chunks:
        assert 1 <= len(ids) <= width <= size
        if grouped:
            assert len(set(groups[ids].tolist())) == 1
            # a group narrower than size gets chunks of its own size, not of size
            assert width == min(size, round_up(int(np.sum(groups[todo] == groups[ids[0]])), 1))
        else:
            assert width == size
    if grouped:  # groups in ascending order
        order = [groups[ids[0]] for ids, _ in chunks]
        assert order == sorted(order)


def _square(ids: np.ndarray, width: int) -> dict[str, np.ndarray]:
    return {"square": ids.astype(np.float64) ** 2, "pair": np.stack([ids, -ids], axis=1)}


def test_map_chunks_resumes_by_member_id(tmp_path):
    """A computation that fails part way keeps its finished chunks; the rerun computes only the
    other members (even with another chunk size) and returns what an uninterrupted run returns."""
    members = np.array([0, 2, 3, 5, 7, 8, 9])
    whole = map_chunks(
        members,
        lambda t: plan_chunks(t, 2),
        _square,
        PartialStore(tmp_path / "a", "done"),
        progress=False,
    )
    np.testing.assert_array_equal(whole["member"], members)
    np.testing.assert_array_equal(whole["square"], members**2)

    store, calls = PartialStore(tmp_path / "b" / "key", "done"), []

    def failing(ids, width):
        calls.append(ids.tolist())
        if len(calls) == 3:
            raise RuntimeError("simulated failure")
        return _square(ids, width)

    with pytest.raises(RuntimeError, match="simulated"):
        map_chunks(members, lambda t: plan_chunks(t, 2), failing, store, progress=False)
    assert len(list(store.folder.glob("members_*.npz"))) == 2
    calls.clear()
    got = map_chunks(members, lambda t: plan_chunks(t, 3), failing, store, progress=False)
    assert sorted(m for chunk in calls for m in chunk) == [7, 8, 9]  # only the members not stored
    for k in whole:
        np.testing.assert_array_equal(got[k], whole[k])
    store.remove()
    assert not (tmp_path / "b").exists()  # the folder and its emptied parent


def test_damaged_chunk_is_discarded_and_recomputed(tmp_path, capsys):
    store = PartialStore(tmp_path / "p", "certified")
    map_chunks(np.arange(4), lambda t: plan_chunks(t, 2), _square, store, progress=False)
    damaged = store.path(np.array([2, 3]))
    damaged.write_bytes(damaged.read_bytes()[:40])
    calls = []
    got = map_chunks(
        np.arange(4),
        lambda t: plan_chunks(t, 2),
        lambda i, w: (calls.append(i.tolist()), _square(i, w))[1],
        store,
        progress=False,
    )
    assert calls == [[2, 3]]
    np.testing.assert_array_equal(got["square"], np.arange(4) ** 2)
    err = capsys.readouterr().err
    assert f"discarded {damaged}" in err and "its members are certified again" in err, err


def test_members_without_a_result_are_left_out(tmp_path):
    got = map_chunks(
        np.arange(6),
        lambda t: plan_chunks(t, 2),
        lambda i, w: None if i[0] == 2 else _square(i, w),
        PartialStore(tmp_path, "done"),
        progress=False,
    )
    np.testing.assert_array_equal(got["member"], [0, 1, 4, 5])


def test_on_member_mesh_refuses_a_bad_width():
    with pytest.raises(ValueError, match="width=2 for 3 members"):
        on_member_mesh(lambda x: x, np.zeros((3, 2)), width=2)


def test_on_member_mesh_splits_members_over_devices_and_cuts_the_padding():
    """With 4 CPU devices (a fresh process), 5 members are padded to 8, split 2 per device, and
    the per-member results equal the unsharded call's."""
    code = textwrap.dedent("""
        import jax, jax.numpy as jnp, numpy as np
        from difftrade.train.mesh import on_member_mesh
        assert jax.device_count() == 4
        x = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
        seen = []
        def fn(a, b):
            seen.append((a.shape, len(a.sharding.device_set)))
            return {"s": jax.jit(jax.vmap(lambda u, v: jnp.sum(u * v)))(a, b)}
        got = on_member_mesh(fn, x, x + 1)
        assert seen == [((8, 3), 4)], seen
        np.testing.assert_allclose(got["s"], np.sum(x * (x + 1), axis=1))
        print("ok")
    """)
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
