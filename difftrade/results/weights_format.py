"""The format of a run's weights files (``chunks/*.params.npz``, ``.prior.npz``, ``.coords.npz``).

A parameter pytree is stored as one array per leaf, keyed by its tree path
(``params/blocks/0/qkv/kernel``; :func:`flatten_params`), beside the ``member`` ids. The model's
tree reads it back (:func:`unflatten_params`, checked by :func:`keyed_params`); without the model,
:func:`load_weights` nests the arrays by their keys. Older files keyed ``leaf_000``, ... in tree
order are read too. :func:`read_npz` reads any ``.npz`` in full and :func:`npz_members` checks its
``member [m]`` ids against every array's leading axis; the run directory's chunk files
(:mod:`difftrade.runner.chunks`) read their weights with them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jax
import numpy as np

from difftrade.config.files import one_line
from difftrade.results import identity

WEIGHTS_PREFIX = (
    "params"  # the weight arrays' keys in an .npz: "params/<tree path>" (beside "member")
)
LEGACY_KEY = re.compile(r"leaf_\d{3,}")  # older weights files: "leaf_000", ... in tree order


def _path_part(entry: Any) -> str:
    """One entry of a jax key path as text: a dict key, an attribute name or an index."""
    for field in ("key", "name", "idx"):  # DictKey / FlattenedIndexKey, GetAttrKey, SequenceKey
        if hasattr(entry, field):
            return str(getattr(entry, field))
    return str(entry)


def weight_key(path: tuple[Any, ...]) -> str:
    """The ``.npz`` key of a leaf at a jax key ``path``: ``"params/blocks/0/qkv/kernel"`` (the path's
    parts joined by ``/``; a flax ``Variable``'s trailing ``.value`` left out); ``"params"`` for a bare array."""
    if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == "value":
        path = path[:-1]
    parts = [_path_part(entry) for entry in path]
    for part in parts:
        if not part or "/" in part:
            raise ValueError(
                f"parameter tree path {'/'.join(parts)!r} has the part {part!r}; "
                "allowed: non-empty names without '/' (they make the weights' keys)"
            )
    return "/".join((WEIGHTS_PREFIX, *parts))


def weight_keys(tree: Any) -> list[str]:
    """The keys of ``tree``'s leaves in tree order (:func:`weight_key`); ``ValueError`` when two coincide."""
    keys = [weight_key(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    if len(set(keys)) < len(keys):
        twice = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise ValueError(
            f"two leaves of the parameter tree have the key {twice!r}; allowed: leaf paths that differ"
        )
    return keys


def flatten_params(params: Any) -> dict[str, np.ndarray]:
    """Parameter pytree -> ``{"params/blocks/0/qkv/kernel": array, ...}``, each leaf keyed by its tree
    path (:func:`weight_key`), for an ``.npz``; a bare array -> ``{"params": array}``."""
    return dict(
        zip(weight_keys(params), (np.asarray(x) for x in jax.tree.leaves(params)), strict=True)
    )


def keyed_params(like: Any, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of ``like``'s leaves, keyed and ordered as :func:`flatten_params` keys them.

    ``arrays`` are keyed by tree path, or (older files) ``leaf_000``, ... in tree order; the
    ``member`` and ``experiment`` arrays are ignored. One-line ``ValueError`` naming the first missing and unexpected key otherwise.
    """
    keys = weight_keys(like)
    stored = {k: v for k, v in arrays.items() if k not in ("member", identity.NPZ_KEY)}
    legacy = bool(stored) and all(LEGACY_KEY.fullmatch(k) for k in stored)
    wanted = [f"leaf_{i:03d}" for i in range(len(keys))] if legacy else keys
    missing = [k for k in wanted if k not in stored]
    unexpected = [k for k in stored if k not in set(wanted)]
    if missing or unexpected:

        def first(found: list[str]) -> str:
            return repr(found[0]) + (f" (and {len(found) - 1} more)" if len(found) > 1 else "")

        problems = ([f"lack {first(missing)}"] if missing else []) + (
            [f"hold {first(unexpected)}, not a leaf of the parameter tree"] if unexpected else []
        )
        raise ValueError(
            f"the weights {' and '.join(problems)}; allowed: one array per leaf of the "
            f"{len(keys)}-leaf tree, keyed by its path (e.g. {keys[0] if keys else WEIGHTS_PREFIX!r})"
        )
    return {key: stored[name] for key, name in zip(keys, wanted, strict=True)}


def unflatten_params(like: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`flatten_params`: the pytree of ``like``'s structure, each leaf found by its path
    (or, in older files, its ``leaf_NNN`` tree position); see :func:`keyed_params` for the checks."""
    return jax.tree.unflatten(jax.tree.structure(like), list(keyed_params(like, arrays).values()))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read in full; ``ValueError`` naming the file if it is absent or unreadable."""
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except Exception as err:  # noqa: BLE001 - a damaged zip raises zipfile, zlib, OS, Value or EOF errors
        raise ValueError(f"{path} is unreadable ({one_line(err)})") from None


def npz_members(arrays: dict[str, np.ndarray], path: Path) -> np.ndarray:
    """The ``member [m]`` ids of a weights file and a check that every leaf has leading axis ``m``."""
    if "member" not in arrays:
        raise ValueError(
            f"{path} has no 'member' array; allowed: a chunk weights file written by difftrade run"
        )
    ids = np.asarray(arrays["member"]).astype(np.int64).ravel()
    for key, leaf in arrays.items():
        if key not in ("member", identity.NPZ_KEY) and (
            leaf.ndim == 0 or leaf.shape[0] != ids.shape[0]
        ):
            raise ValueError(
                f"{path}: {key} has shape {leaf.shape} for {ids.shape[0]} members; allowed: leading axis {ids.shape[0]}"
            )
    return ids


def load_weights(path: str | Path) -> tuple[np.ndarray, Any]:
    """One chunk's weights file on its own (no model or config needed): ``(member ids int64 [M], weights)``.

    ``weights`` nests dicts by the stored keys' paths (all parts strings), numpy arrays with the
    member axis first; for ``chunks/chunk_m000000-000003.params.npz`` (M = 4)::

        ids, w = load_weights("run/chunks/chunk_m000000-000003.params.npz")
        ids                                 # [4]  = [0, 1, 2, 3]
        w["embed"]["embedding"]             # [4, vocab_size, d_model]
        w["blocks"]["0"]["qkv"]["kernel"]   # [4, d_model, 3 * d_model]
        w["blocks"]["0"]["ln1"]["scale"]    # [4, d_model]

    A file of one bare array (``.coords.npz``) gives that array, ``[M, D]``. Files written with
    ``leaf_NNN`` keys (tree order, no paths) give ``{"leaf_000": ..., ...}``: :func:`unflatten_params`
    with a ``like`` tree places those. ``ValueError`` naming the file when it is absent, unreadable or
    not a weights file.
    """
    path = Path(path)
    arrays = read_npz(path)
    ids = npz_members(arrays, path)
    stored = {k: v for k, v in arrays.items() if k not in ("member", identity.NPZ_KEY)}
    if WEIGHTS_PREFIX in stored:
        if len(stored) > 1:
            raise ValueError(
                f"{path} holds {WEIGHTS_PREFIX!r} and other arrays; allowed: a weights file written by difftrade run"
            )
        return ids, stored[WEIGHTS_PREFIX]
    folders = {
        "/".join(parts[:i])
        for parts in (k.split("/") for k in stored)
        for i in range(2, len(parts))
    }
    for key in stored:
        if (
            not (LEGACY_KEY.fullmatch(key) or key.startswith(f"{WEIGHTS_PREFIX}/"))
            or key in folders
        ):
            raise ValueError(
                f"{path} holds the array {key!r}; allowed: a weights file written by difftrade run "
                f"(keys {WEIGHTS_PREFIX}/<tree path>, none the folder of another, and member)"
            )
    nested: dict[str, Any] = {}
    for key, value in stored.items():
        *folder, name = key.split("/")[1:] if "/" in key else [key]
        node = nested
        for part in folder:
            node = node.setdefault(part, {})
        node[name] = value
    return ids, nested
