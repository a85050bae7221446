"""Map a per-member computation over a population: chunks, padding to the devices, and finished
chunks kept on disk so an interrupted computation resumes by member id.

Members are identified by their flat grid index (``RunConfig.population`` order). Every long
computation over a run goes through the same three steps:

* :func:`plan_chunks` splits the members still to do into chunks of a fixed padded width
  (one compiled program per width), never mixing members of different groups (budgets, when
  the computation's shapes depend on the budget);
* :func:`difftrade.mesh.on_member_mesh` runs a member-stacked call with the member axis padded
  to a multiple of the device count and split over every device;
* :class:`PartialStore` keeps each finished chunk as one atomic ``.npz`` holding its member ids,
  and :func:`map_chunks` loads the members found there instead of computing them again.

Training (:func:`difftrade.experiment.run`) plans its chunks with :func:`plan_chunks` and stores
them as the run's chunk files (:mod:`difftrade.chunks`); certification
(:func:`difftrade.certify.certify_run`) and compression (:func:`difftrade.compress.compress_run`)
store them in a :class:`PartialStore` until their results file is written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from difftrade import results
from difftrade.chunks import read_npz
from difftrade.logs import log
from difftrade.mesh import round_up
from difftrade.progress import Progress

Chunk = tuple[np.ndarray, int]  # (member ids int [m], padded width >= m)


def plan_chunks(todo: np.ndarray, size: int, groups: np.ndarray | None = None) -> list[Chunk]:
    """Chunks of the members ``todo`` (int ``[T]``, ascending), each ``(ids, padded width)``.

    Without ``groups``: consecutive runs of ``size`` members, every chunk of width ``size`` (a
    short last chunk is padded to it, so all chunks share one compiled shape). With ``groups``
    (``[M]`` by member id, e.g. each member's budget): members of one group only, groups in
    ascending order, each group's chunks ``min(size, its size rounded up to the device count)``
    wide. ``size`` should be a multiple of the device count.
    """
    if groups is None:
        return [(todo[i : i + size], size) for i in range(0, len(todo), size)]
    chunks: list[Chunk] = []
    for g in np.unique(groups[todo]):
        group = todo[groups[todo] == g]
        width = min(size, round_up(len(group), jax.device_count()))
        chunks += [(group[i : i + width], width) for i in range(0, len(group), width)]
    return chunks


def keyed_folder(parent: Path, **identity: str) -> Path:
    """``parent/<16 hex digits>``: a folder named by the sha256 of ``identity`` (e.g. the config
    hash and the settings' JSON), so a computation with another identity never reads its chunks."""
    text = json.dumps(identity, sort_keys=True)
    return Path(parent) / hashlib.sha256(text.encode()).hexdigest()[:16]


class PartialStore:
    """Finished chunks of one computation as ``members_{first}_{last}.npz`` files in ``folder``,
    each with its member ids under ``member`` (int ``[m]``) and one array per field (leading
    axis ``m``), written atomically. A file that cannot be read is removed, with a line on the
    log naming it, and its members are computed again."""

    def __init__(self, folder: Path, noun: str):
        self.folder, self.noun = Path(folder), noun

    def path(self, ids: np.ndarray) -> Path:
        return self.folder / f"members_{int(ids[0])}_{int(ids[-1])}.npz"

    def load(self) -> list[dict[str, np.ndarray]]:
        """Every readable stored chunk (name order), each a dict with ``member``."""
        parts = []
        for path in sorted(self.folder.glob("members_*.npz")) if self.folder.exists() else []:
            try:
                arrays = read_npz(path)
                if "member" not in arrays:
                    raise ValueError(f"{path} lacks the member ids")
            except ValueError as err:
                path.unlink(missing_ok=True)
                log.warning("difftrade: discarded %s; its members are %s again", err, self.noun)
                continue
            parts.append(arrays)
        return parts

    def save(self, ids: np.ndarray, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Store one finished chunk; returns it with its ``member`` ids."""
        self.folder.mkdir(parents=True, exist_ok=True)
        part = {**arrays, "member": np.asarray(ids)}
        results.atomic_save_npz(part, self.path(ids))
        return part

    def remove(self) -> None:
        """Delete the folder, and its parent when that is left empty (called once the results are written)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.folder.parent.exists() and not any(self.folder.parent.iterdir()):
            self.folder.parent.rmdir()


def map_chunks(
    members: np.ndarray,
    plan: Callable[[np.ndarray], list[Chunk]],
    compute: Callable[[np.ndarray, int], dict[str, np.ndarray] | None],
    store: PartialStore,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Compute ``members`` (int ``[T]``) chunk by chunk; returns every field concatenated over
    the members computed, ordered by member id, with their ids under ``member``.

    Members found in ``store`` are loaded; the rest are split by ``plan`` and each chunk
    ``(ids, width)`` is computed by ``compute`` and stored before the next one starts.
    ``compute`` may return None: those members are left out (and computed again on a rerun).
    ``progress``: a progress line with rate and ETA on stderr (:class:`~difftrade.progress.Progress`).
    """
    parts = [p for p in store.load() if np.isin(p["member"], members).all()]
    done = np.concatenate([p["member"] for p in parts]) if parts else np.zeros(0, np.int64)
    todo = members[~np.isin(members, done)]
    bar = Progress(max(len(members), 1), progress)
    bar.update(len(done), f"(resumed from {store.folder})" if parts else "")
    for ids, width in plan(todo):
        arrays = compute(ids, width)
        if arrays is not None:
            parts.append(store.save(ids, arrays))
        bar.update(len(ids), f"{store.noun}" if arrays is not None else "(left out)")
    if not parts:
        return {}
    order = np.argsort(np.concatenate([p["member"] for p in parts]), kind="stable")
    return {k: np.concatenate([p[k] for p in parts])[order] for k in parts[0]}
