"""The experiment identity that binds the files of a run to each other.

A run's identity is its config hash (:meth:`difftrade.config.run_config.RunConfig.hash`, over every
field that changes results), recomputed from the config a file holds: ``config.json`` and
``results.nc`` hold the config itself (the hash string stored beside it may come from an older
canonical form); every chunk file
(``.nc``: attribute ``config_hash``; weights ``.npz``: array ``experiment``), ``results.nc``,
``bounds.nc`` and ``compression.nc`` carry it. A chunk file also records the SHA-256 of each of its
weights files (attribute ``weights_sha256``, JSON ``{kind: hex}``), so weights swapped for other
weights are found before anything is computed from them.

Every reader checks what it opens: a file of another experiment raises :class:`ForeignFile`
naming the file and both identities, and nothing is recomputed from it. Files written before
identities were recorded carry none and are read as before.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

ATTR = "config_hash"  # netCDF attribute of chunk files, results.nc, bounds.nc, compression.nc
NPZ_KEY = "experiment"  # the 0-d string array of a weights .npz that holds the identity
DIGESTS_ATTR = "weights_sha256"  # chunk .nc attribute: JSON {kind: sha256 hex of its weights file}


class ForeignFile(ValueError):
    """A file that belongs to another experiment: refused, never repaired."""


def require(path: str | Path, found: Any, expected: str, how: str = "") -> None:
    """:class:`ForeignFile` when ``found`` (the identity a file records; None for a file written
    before identities were recorded, which passes) is not ``expected`` (the run's). ``how`` says
    what the reader should do instead."""
    if found is not None and str(found) != expected:
        raise ForeignFile(
            f"{path} belongs to experiment {found}, not to this run's {expected}; allowed: files "
            f"written for experiment {expected}{how}"
        )


def stamped(arrays: dict[str, np.ndarray], identity: str) -> dict[str, np.ndarray]:
    """``arrays`` plus the identity under :data:`NPZ_KEY`, to save as a weights ``.npz``."""
    return {**arrays, NPZ_KEY: np.asarray(identity)}


def of_npz(arrays: dict[str, np.ndarray]) -> str | None:
    """The identity a weights ``.npz`` records (its :data:`NPZ_KEY` array), None when absent."""
    return str(arrays[NPZ_KEY]) if NPZ_KEY in arrays else None


def file_digest(path: str | Path) -> str:
    """SHA-256 hex of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def recorded_digests(attrs: dict[str, Any], path: str | Path) -> dict[str, str] | None:
    """The ``{kind: sha256}`` a chunk file records (:data:`DIGESTS_ATTR`), None for a chunk that
    records no identity (written before identities were); ``ValueError`` naming ``path`` when a
    chunk with an identity lacks them or they are not such a JSON object."""
    if ATTR not in attrs and DIGESTS_ATTR not in attrs:
        return None
    try:
        digests = json.loads(attrs[DIGESTS_ATTR])
        if not isinstance(digests, dict):
            raise TypeError(type(digests).__name__)
    except (KeyError, TypeError, json.JSONDecodeError):
        raise ValueError(
            f"{path} records no digests of its weights files ({DIGESTS_ATTR}); allowed: a chunk "
            "written by `difftrade run`"
        ) from None
    return {str(k): str(v) for k, v in digests.items()}


def check_digest(weights: Path, chunk: Path, digests: dict[str, str] | None, kind: str) -> None:
    """``ValueError`` unless the weights file ``weights`` hashes to what ``chunk`` recorded for
    ``kind`` (nothing to check when ``digests`` is None: a chunk from before identities)."""
    if digests is None:
        return
    if kind not in digests:
        raise ValueError(f"{chunk} records no digest of its {kind} weights ({weights.name})")
    if file_digest(weights) != digests[kind]:
        raise ValueError(
            f"{weights} is not the weights file its chunk {chunk.name} was written with (SHA-256 differs)"
        )
