"""The member mesh: every device holds a slice of the population's member axis.

Populations are padded with copies of their last member to a multiple of the device count
(:func:`pad_tree`), split over a 1-D mesh of all devices (:func:`shard_members`), and cut
back after the call; :func:`on_member_mesh` does all three around one member-stacked call.
:func:`to_host` gathers a result, sharded over the mesh (across hosts too), back to numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def round_up(m: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is ``>= m``."""
    return -(-m // multiple) * multiple


def member_mesh() -> Mesh:
    """A 1-D mesh over all devices (all hosts' devices under ``jax.distributed``)."""
    return Mesh(np.asarray(jax.devices()), ("members",))


def member_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (member) axis split over the mesh, other axes whole."""
    return NamedSharding(mesh, PartitionSpec("members"))


def to_host(tree: Any) -> Any:
    """Every leaf as a numpy array holding its *whole* value, on every process.

    Leaves sharded across hosts are gathered (a collective: every process must call this);
    process-local leaves are copied as they are (``process_allgather`` alone would concatenate
    every process's copy of them).
    """

    def one(x: Any) -> np.ndarray:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return multihost_utils.process_allgather(x, tiled=True)
        return np.asarray(x)

    return jax.tree.map(one, tree)


def shard_members(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf's leading (member) axis across the mesh.

    Leaves already placed that way are kept. On one process the rest move with
    ``device_put``; when the mesh spans hosts, every process gathers the full value and hands
    each of its devices its slice (a collective: all processes call this). The leading axis
    must divide by ``mesh.size``.
    """
    sharding = member_sharding(mesh)

    def put(x: Any) -> jax.Array:
        if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim):
            return x
        if sharding.is_fully_addressable:
            return jax.device_put(x, sharding)
        host = to_host(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)


def padded_index(m: int, size: int) -> np.ndarray:
    """Member indices ``0..m-1`` then ``m-1`` repeated up to ``size``: padding by copies of the
    last member, whose results the caller drops. int ``[size]``."""
    return np.concatenate([np.arange(m), np.full(size - m, m - 1)])


def pad_tree(tree: Any, m: int, size: int) -> Any:
    """A pytree with leading member axis ``m`` padded to ``size`` by copies of its last member."""
    if size == m:
        return tree
    idx = padded_index(m, size)
    return jax.tree.map(lambda x: x[idx], tree)


def replicate(x: jax.Array, mesh: Mesh) -> jax.Array:
    """``x`` (a key or a small array, the same on every process) ready for a jitted call over the
    mesh. On one process it is placed whole on every device. When the mesh spans hosts it stays
    process-local and uncommitted, and ``jit`` copies it to each process's devices
    (``device_put`` cannot spread a typed key over hosts; a committed process-local value would
    be refused as on the wrong devices, so it is copied off its device first)."""
    sharding = NamedSharding(mesh, PartitionSpec())
    if sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
    if isinstance(x, jax.Array) and x.committed and x.is_fully_addressable:
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(
                np.asarray(jax.random.key_data(x)), impl=jax.random.key_impl(x)
            )
        return np.asarray(x)
    return x


def on_member_mesh(fn: Callable[..., Any], *trees: Any, width: int | None = None) -> Any:
    """``fn(*trees)`` with every leaf's leading (member) axis ``m`` padded by copies of the last
    member to ``width`` (default: ``m`` rounded up to the device count; it must divide by the
    device count) and split over every device; returns the output on the host, cut back to ``m``.

    ``trees``: pytrees whose leaves all have leading axis ``m`` (None allowed). ``fn`` sees the
    padded members; what it computes for one member must not depend on the others (a vmapped
    per-member function), so the padding changes nothing.
    """
    mesh = member_mesh()
    m = int(jax.tree.leaves(trees)[0].shape[0])
    size = round_up(m, mesh.size) if width is None else width
    if size % mesh.size or size < m:
        raise ValueError(
            f"width={size} for {m} members; allowed: a multiple of the device count {mesh.size}, >= {m}"
        )
    placed = [None if t is None else shard_members(pad_tree(t, m, size), mesh) for t in trees]
    return jax.tree.map(lambda x: np.asarray(x)[:m], to_host(fn(*placed)))


def cpu_device_count(cores: int, members: int | None) -> int:
    """The CPU devices a grid of ``members`` is split over: the largest divisor of ``members`` that
    is at most ``cores`` (``cores`` if members is unknown), so no member is padded."""
    return max(d for d in range(1, cores + 1) if members is None or members % d == 0)
