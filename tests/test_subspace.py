"""Subspace training: the structured projection against a dense Kronecker reference, the trainer's
subspace view, the [subspace] config section and the coordinates a run stores."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_raw

from difftrade.config.sections import SubspaceConfig
from difftrade.runner import chunks, experiment
from difftrade.tasks import configs
from difftrade.train.run_task import run_task
from difftrade.train.subspace import (
    Subspace,
    factor_shape,
    make_projection,
    project,
    projection_key,
)
from difftrade.train.trainer import FULL, member_init_params, train_population, view_of


def dense_projection(a: np.ndarray, b: np.ndarray, p: int, dim: int) -> np.ndarray:
    """The p x D matrix r^{-1/2} sum_k kron(A_k, B_k), rows cut to p and columns to D (numpy reference)."""
    full = sum(np.kron(a[k], b[k]) for k in range(a.shape[0])) / np.sqrt(a.shape[0])
    return full[:p, :dim]


@pytest.mark.parametrize(("p", "dim", "terms"), [(50, 7, 1), (64, 16, 2), (1000, 37, 3), (2, 1, 1)])
def test_projection_matches_dense_kronecker(p, dim, terms):
    proj = make_projection(jax.random.key(p + dim), p, SubspaceConfig(dim, terms))
    z = np.random.default_rng(0).normal(size=dim).astype(np.float32)
    dense = dense_projection(np.asarray(proj.a, np.float64), np.asarray(proj.b, np.float64), p, dim)
    np.testing.assert_allclose(
        np.asarray(project(proj, jnp.asarray(z), p)), dense @ z, rtol=1e-4, atol=1e-5
    )


def test_single_kronecker_columns_have_unit_norm():
    p, dim = 38 * 38, 30  # p = p1 * p2 exactly, so no row is cut
    assert factor_shape(p)[0] * factor_shape(p)[1] == p
    proj = make_projection(jax.random.key(1), p, SubspaceConfig(dim, 1))
    dense = dense_projection(np.asarray(proj.a, np.float64), np.asarray(proj.b, np.float64), p, dim)
    np.testing.assert_allclose(np.linalg.norm(dense, axis=0), 1.0, rtol=1e-5)


@pytest.mark.parametrize("size", [1, 2, 7, 16, 17, 109184])
def test_factor_shape_covers_size(size):
    s1, s2 = factor_shape(size)
    assert s1 * s2 >= size and (s1 - 1) * s2 < size and s1 >= s2


def test_subspace_weights_are_base_plus_projection(tiny_cfg):
    base = member_init_params(tiny_cfg.model, jax.random.key(0), jnp.int32(3))
    space = Subspace(SubspaceConfig(11, 2), base, jax.random.key(5))
    z = jnp.linspace(-1.0, 1.0, 11)
    flat0 = jax.flatten_util.ravel_pytree(base)[0]
    got = jax.flatten_util.ravel_pytree(space.weights(z))[0]
    np.testing.assert_allclose(
        np.asarray(got - flat0), np.asarray(project(space.proj, z, flat0.shape[0])), atol=1e-6
    )
    assert jax.tree.structure(space.weights(z)) == jax.tree.structure(base)


@pytest.mark.slow
def test_subspace_training_moves_only_along_the_projection(tiny_cfg):
    cfg = configs.from_dict(tiny_raw(subspace={"dim": 24}, grid={"learning_rate": 0.05}))
    pop = cfg.population().take(np.array([1, 3, 5, 7]))  # budget 32, seeds 0/1, both difficulties
    key = jax.random.key(cfg.run.seed)
    res = train_population(
        run_task(cfg), pop, cfg.model, cfg.train, key, view=view_of(cfg.subspace)
    )
    assert res.coords.shape == (4, 24) and np.all(np.isfinite(np.asarray(res.coords)))
    assert float(jnp.max(jnp.abs(res.coords))) > 0  # it trained
    for i in range(4):
        theta0 = member_init_params(cfg.model, key, jnp.int32(pop.seed[i]))
        rebuilt = Subspace(
            cfg.subspace, theta0, projection_key(key, jnp.int32(pop.seed[i]))
        ).weights(res.coords[i])
        for a, b in zip(
            jax.tree.leaves(rebuilt), jax.tree.leaves(jax.tree.map(lambda x, i=i: x[i], res.params))
        ):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    assert res.loss_curve[:, -1].mean() < res.loss_curve[:, 0].mean()


def test_members_sharing_a_seed_share_their_projection():
    a, b = (
        projection_key(jax.random.key(0), jnp.int32(1)),
        projection_key(jax.random.key(0), jnp.int32(2)),
    )
    pa = make_projection(a, 100, SubspaceConfig(9))
    assert np.array_equal(
        np.asarray(pa.a), np.asarray(make_projection(a, 100, SubspaceConfig(9)).a)
    )
    assert not np.allclose(
        np.asarray(pa.a), np.asarray(make_projection(b, 100, SubspaceConfig(9)).a)
    )


def test_view_of_is_full_when_off():
    assert view_of(SubspaceConfig()) is FULL
    assert view_of(SubspaceConfig(5)).cfg.dim == 5


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"dim": -1}, "subspace.dim"),
        ({"terms": 0}, "subspace.terms"),
        ({"dim": 1.5}, "subspace.dim"),
        ({"terms": 17}, "subspace.terms"),
        ({"dim": 10**7}, "subspace.dim"),
        ({"rank": 2}, "rank"),
    ],
)
def test_bad_subspace_settings_name_the_field(values, field):
    with pytest.raises(ValueError, match=field):
        configs.from_dict(tiny_raw(subspace=values))


def test_subspace_off_keeps_the_config_hash():
    plain = configs.from_dict(tiny_raw())
    assert configs.from_dict(tiny_raw(subspace={"dim": 0})).hash() == plain.hash()
    assert configs.from_dict(tiny_raw(subspace={"dim": 8})).hash() != plain.hash()


@pytest.mark.slow  # a whole run and its resume
def test_run_stores_coordinates_and_resume_requires_them(tmp_path):
    cfg = configs.from_dict(
        tiny_raw(subspace={"dim": 8}, grid={"budgets": [32], "seeds": [0]}, run={"chunk_size": 1})
    )
    ds = experiment.run(cfg, tmp_path, progress=False)
    members, z = chunks.load_params(tmp_path, jnp.zeros((8,), jnp.float32), kind="coords")
    assert members.tolist() == [0, 1] and z.shape == (2, 8)
    _, params = chunks.load_params(
        tmp_path, member_init_params(cfg.model, jax.random.key(0), jnp.int32(0))
    )
    key = jax.random.key(cfg.run.seed)
    rebuilt = Subspace(
        cfg.subspace,
        member_init_params(cfg.model, key, jnp.int32(0)),
        projection_key(key, jnp.int32(0)),
    ).weights(jnp.asarray(z[1]))
    for a, b in zip(jax.tree.leaves(rebuilt), jax.tree.leaves(params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b)[1], atol=1e-6)
    # a chunk whose coordinates are missing is retrained on resume
    first = chunks.chunk_files(tmp_path)[0]
    chunks.weights_file(first, "coords").unlink()
    (tmp_path / "results.nc").unlink()
    again = experiment.run(cfg, tmp_path, resume=True, progress=False)
    np.testing.assert_array_equal(again["train_risk"].values, ds["train_risk"].values)
    assert chunks.weights_file(first, "coords").exists()
