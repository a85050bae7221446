"""Member weights files: each parameter keyed by its tree path, readable without the model.

A chunk's ``.params.npz`` holds ``member [m]`` and one array per leaf under ``params/<tree path>``
(``params`` alone for a bare array, as in ``.coords.npz``); :func:`weights_format.unflatten_params` places
leaves by path, and still by position for files with the older ``leaf_NNN`` keys;
:func:`weights_format.load_weights` reads a file as nested dicts with no model or config.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_raw

import difftrade
from difftrade.config import run_config as config
from difftrade.config.model_config import ModelConfig
from difftrade.model.transformer import init_params
from difftrade.results import schema as results
from difftrade.results import weights_format
from difftrade.runner import chunks, rundir
from difftrade.tasks import configs

MODEL = ModelConfig(vocab_size=16, seq_len=8, d_model=16, num_layers=2, num_heads=2, mlp_ratio=2)


@pytest.fixture(scope="module")
def params():
    return init_params(MODEL, jax.random.key(0))


def _stacked(tree, m: int):
    """``tree`` with a leading member axis of ``m`` distinct copies (member i adds i)."""
    return jax.tree.map(lambda x: np.stack([np.asarray(x) + i for i in range(m)]), tree)


def _old_format(tree) -> dict[str, np.ndarray]:
    """What weights files held before keys were tree paths: ``leaf_000``, ... in tree order."""
    return {f"leaf_{i:03d}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(tree))}


def _assert_same_tree(got, want) -> None:
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_keys_are_tree_paths_and_round_trip_exactly(params, tmp_path):
    flat = weights_format.flatten_params(params)
    assert len(flat) == len(jax.tree.leaves(params))
    assert all(k.startswith("params/") for k in flat)
    for key in (
        "params/blocks/0/qkv/kernel",
        "params/blocks/1/down/bias",
        "params/blocks/1/ln2/scale",
        "params/embed/embedding",
        "params/head/kernel",
        "params/ln_f/scale",
        "params/pos",
    ):
        assert key in flat, sorted(flat)
    assert flat["params/blocks/0/qkv/kernel"].shape == (16, 48)
    _assert_same_tree(weights_format.unflatten_params(params, flat), params)
    # placed by path, not by order: a reversed dict and an .npz round trip give the same tree
    _assert_same_tree(weights_format.unflatten_params(params, dict(reversed(flat.items()))), params)
    path = tmp_path / "w.npz"
    results.atomic_save_npz(
        {"member": np.arange(1), **weights_format.flatten_params(_stacked(params, 1))}, path
    )
    with np.load(path, allow_pickle=False) as z:
        stored = {k: z[k] for k in z.files}
    _assert_same_tree(weights_format.unflatten_params(params, stored), _stacked(params, 1))


def test_a_bare_array_has_one_fixed_key():
    z = jnp.arange(6, dtype=jnp.float32).reshape(2, 3)
    flat = weights_format.flatten_params(z)
    assert list(flat) == ["params"]
    _assert_same_tree(weights_format.unflatten_params(jnp.zeros((3,)), flat), z)


def test_load_weights_needs_no_model(params, tmp_path):
    chunk = tmp_path / "chunk_m000004-000006.params.npz"
    ids = np.array([4, 5, 6])
    stacked = _stacked(params, 3)
    results.atomic_save_npz({"member": ids, **weights_format.flatten_params(stacked)}, chunk)
    got_ids, w = difftrade.load_weights(chunk)
    np.testing.assert_array_equal(got_ids, ids)
    assert set(w) == {"blocks", "embed", "head", "ln_f", "pos"}
    assert set(w["blocks"]) == {"0", "1"}
    assert set(w["blocks"]["0"]) == {"qkv", "out", "ln1", "ln2", "up", "down"}
    assert w["blocks"]["0"]["qkv"]["kernel"].shape == (3, 16, 48)
    assert w["embed"]["embedding"].shape == (3, 16, 16)
    np.testing.assert_array_equal(
        w["blocks"]["1"]["up"]["kernel"], stacked["blocks"][1]["up"]["kernel"][...]
    )
    np.testing.assert_array_equal(w["pos"], stacked["pos"][...])

    coords = tmp_path / "chunk_m000004-000006.coords.npz"
    results.atomic_save_npz(
        {"member": ids, **weights_format.flatten_params(np.ones((3, 5), np.float32))}, coords
    )
    got_ids, z = weights_format.load_weights(coords)
    np.testing.assert_array_equal(got_ids, ids)
    assert isinstance(z, np.ndarray) and z.shape == (3, 5)

    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "absent.npz"))):
        weights_format.load_weights(tmp_path / "absent.npz")


def _run_dir(tmp_path: Path) -> tuple[config.RunConfig, Path]:
    """A run directory of the tiny config (8 members) with two chunk names and no weights yet."""
    cfg = configs.from_dict(tiny_raw())
    out = tmp_path / "run"
    (out / "chunks").mkdir(parents=True)
    (out / rundir.META).write_text(json.dumps({"config_hash": cfg.hash(), "config": cfg.to_dict()}))
    for stem in ("chunk_m000000-000003", "chunk_m000004-000007"):
        (out / "chunks" / f"{stem}.nc").write_bytes(b"")  # load_params reads only the names
    return cfg, out


def test_old_leaf_files_still_load_alone_and_beside_new_ones(tmp_path):
    cfg, out = _run_dir(tmp_path)
    like = init_params(cfg.model, jax.random.key(0))
    stacked = _stacked(like, 8)
    first, last = (jax.tree.map(lambda x, s=s: x[s], stacked) for s in (slice(0, 4), slice(4, 8)))
    _assert_same_tree(weights_format.unflatten_params(like, _old_format(stacked)), stacked)
    for name, ids, tree in (
        ("chunk_m000000-000003", np.arange(4), first),
        ("chunk_m000004-000007", np.arange(4, 8), last),
    ):
        np.savez(out / "chunks" / f"{name}.params.npz", member=ids, **_old_format(tree))
    members, loaded = chunks.load_params(out, like)
    np.testing.assert_array_equal(members, np.arange(8))
    _assert_same_tree(loaded, stacked)
    # an old run resumed with this version: new chunk files beside old ones
    results.atomic_save_npz(
        {"member": np.arange(4, 8), **weights_format.flatten_params(last)},
        out / "chunks" / "chunk_m000004-000007.params.npz",
    )
    members, loaded = chunks.load_params(out, like)
    np.testing.assert_array_equal(members, np.arange(8))
    _assert_same_tree(loaded, stacked)


def test_a_file_unlike_the_tree_is_named_in_one_line(params, tmp_path):
    flat = weights_format.flatten_params(params)
    lacking = {k: v for k, v in flat.items() if k != "params/blocks/0/qkv/kernel"}
    with pytest.raises(
        ValueError, match=r"^the weights lack 'params/blocks/0/qkv/kernel'; allowed: "
    ) as err:
        weights_format.unflatten_params(params, lacking)
    assert "\n" not in str(err.value)
    with pytest.raises(
        ValueError, match=r"^the weights hold 'params/blocks/9/qkv/kernel', not a leaf"
    ) as err:
        weights_format.unflatten_params(params, {**flat, "params/blocks/9/qkv/kernel": np.zeros(3)})
    assert "\n" not in str(err.value)
    old = _old_format(params)
    n = len(old)
    with pytest.raises(ValueError, match=rf"^the weights lack 'leaf_{n - 1:03d}'; allowed: "):
        weights_format.unflatten_params(
            params, {k: v for k, v in old.items() if k != f"leaf_{n - 1:03d}"}
        )

    cfg, out = _run_dir(tmp_path)
    like = init_params(cfg.model, jax.random.key(0))
    stacked = _stacked(like, 4)
    good = weights_format.flatten_params(stacked)
    results.atomic_save_npz(
        {"member": np.arange(4), **good}, out / "chunks" / "chunk_m000000-000003.params.npz"
    )
    bad = out / "chunks" / "chunk_m000004-000007.params.npz"
    results.atomic_save_npz(
        {"member": np.arange(4, 8), **{k: v for k, v in good.items() if k != "params/head/bias"}},
        bad,
    )
    with pytest.raises(
        ValueError, match=rf"^{re.escape(str(bad))}: the weights lack 'params/head/bias'; allowed"
    ) as err:
        chunks.load_params(out, like)
    assert "\n" not in str(err.value)
