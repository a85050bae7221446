"""Codebook quantization: nearest-value assignment, Lloyd refinement, the straight-through gradient
and the half-precision codebook a certificate pays for."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difftrade.train.quantize import (
    assign,
    initial_codebook,
    quantized,
    stored_codebook,
    straight_through,
)


def test_assign_is_the_nearest_value_by_brute_force():
    rng = np.random.default_rng(0)
    z, c = rng.normal(size=500).astype(np.float32), np.sort(rng.normal(size=7)).astype(np.float32)
    expected = np.array([int(np.argmin(np.abs(x - c))) for x in z])
    assert np.array_equal(np.asarray(assign(jnp.asarray(z), jnp.asarray(c))), expected)


def test_lloyd_recovers_separated_cluster_means():
    rng = np.random.default_rng(1)
    centres = np.array([-3.0, -1.0, 0.5, 4.0])
    z = np.concatenate([m + 0.05 * rng.normal(size=n) for m, n in zip(centres, (50, 300, 20, 130))])
    groups = [z[np.abs(z - m) < 0.5] for m in centres]
    got = np.asarray(initial_codebook(jnp.asarray(z, jnp.float32), 4))
    np.testing.assert_allclose(got, [g.mean() for g in groups], atol=1e-4)


@pytest.mark.parametrize("levels", [1, 2, 5, 16])
def test_codebook_is_ascending_and_quantizes_within_range(levels):
    z = jax.random.normal(jax.random.key(levels), (300,))
    c = initial_codebook(z, levels)
    assert c.shape == (levels,) and bool(jnp.all(jnp.diff(c) >= 0))
    s, stored, zhat = quantized(z, c)
    assert int(s.min()) >= 0 and int(s.max()) < levels
    np.testing.assert_array_equal(np.asarray(zhat), np.asarray(stored)[np.asarray(s)])


def test_stored_codebook_is_exactly_half_precision():
    c = jnp.asarray([0.1, -2.3456789, 1e-3, 7.77], jnp.float32)
    stored = np.asarray(stored_codebook(c))
    np.testing.assert_array_equal(
        stored, np.sort(np.float16([0.1, -2.3456789, 1e-3, 7.77]).astype(np.float32))
    )


def test_straight_through_gradients():
    z = jnp.asarray([0.1, 0.9, 2.2, -0.4, 1.1])
    c = jnp.asarray([0.0, 1.0, 2.0])
    a = jnp.asarray([1.0, 2.0, 3.0, 4.0, 5.0])
    f = lambda z, c: jnp.sum(a * straight_through(z, c) ** 2)
    value = f(z, c)
    s = np.array([0, 1, 2, 0, 1])
    np.testing.assert_allclose(
        float(value), float(np.sum(np.asarray(a) * np.asarray(c)[s] ** 2)), rtol=1e-6
    )
    gz, gc = jax.grad(f, argnums=(0, 1))(z, c)
    # d/dz: straight through the rounding, so the derivative at the quantized value
    np.testing.assert_allclose(np.asarray(gz), 2 * np.asarray(a) * np.asarray(c)[s], rtol=1e-6)
    # d/dc_k: the sum over the values assigned to k
    expected = np.zeros(3)
    np.add.at(expected, s, 2 * np.asarray(a) * np.asarray(c)[s])
    np.testing.assert_allclose(np.asarray(gc), expected, rtol=1e-6)
