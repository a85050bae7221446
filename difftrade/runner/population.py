"""Map a per-member computation over a population: chunks, padding to the devices, and finished
chunks kept on disk so an interrupted computation resumes by member id.

Members are identified by their flat grid index (``RunConfig.population`` order). Every long
computation over a run goes through the same three steps:

* :func:`plan_chunks` splits the members still to do into chunks of a fixed padded width
  (one compiled program per width), never mixing members of different groups (budgets, when
  the computation's shapes depend on the budget);
* :func:`difftrade.train.mesh.on_member_mesh` runs a member-stacked call with the member axis padded
  to a multiple of the device count and split over every device;
* :class:`PartialStore` keeps each finished chunk as one atomic ``.npz`` holding its member ids,
  and :func:`map_chunks` loads the members found there instead of computing them again.

:func:`run_chunks` is the loop, over any :class:`ChunkStore`. Training
(:func:`difftrade.runner.experiment.run`) stores its chunks as the run's chunk files
(:class:`difftrade.runner.chunks.RunChunks`: results and weights, kept for good); certification
(:func:`difftrade.certify.certify_run`) and compression (:func:`difftrade.certify.compress.compress_run`)
store theirs in a :class:`PartialStore` until their results file is written (:func:`map_chunks`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np

from difftrade.config.logs import log
from difftrade.results import schema as results
from difftrade.results.weights_format import read_npz
from difftrade.runner.progress import Progress
from difftrade.train.mesh import round_up

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

    def stored(self, members: np.ndarray) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
        """The stored chunks that hold only ``members``, and their member ids."""
        parts = [p for p in self.load() if np.isin(p["member"], members).all()]
        return parts, np.concatenate([p["member"] for p in parts]) if parts else np.zeros(
            0, np.int64
        )

    def label(self, part: dict[str, np.ndarray]) -> str:
        return self.noun

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


class ChunkStore(Protocol):
    """Where finished chunks of a computation are kept (:class:`PartialStore`, or the run
    directory's chunk files for training: :class:`difftrade.runner.chunks.RunChunks`)."""

    folder: Path

    def stored(self, members: np.ndarray) -> tuple[list[Any], np.ndarray]:
        """The stored parts that hold only ``members``, and every member id already done (int ``[d]``)."""
        ...

    def save(self, ids: np.ndarray, arrays: dict[str, Any]) -> Any:
        """Store one finished chunk; returns its part (what :func:`run_chunks` collects)."""
        ...

    def label(self, part: Any) -> str:
        """What the progress line says of a finished part."""
        ...


def run_chunks(
    members: np.ndarray,
    plan: Callable[[np.ndarray], list[Chunk]],
    compute: Callable[[np.ndarray, int], dict[str, Any] | None],
    store: ChunkStore,
    progress: bool | Progress = True,
    after: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """Compute ``members`` (int ``[T]``) chunk by chunk; returns the stored parts and those computed.

    Members the store already holds are not computed again; the rest are split by ``plan`` and
    each chunk ``(ids, width)`` is computed by ``compute`` and stored (``store.save``) before
    the next one starts, then ``after(c, part)`` is called (c = 0, 1, ... in this call).
    ``compute`` may return None: those members are left out (and computed again on a rerun).
    ``progress``: a progress line with rate and ETA on stderr (a :class:`~difftrade.runner.progress.Progress`
    or whether to show one).
    """
    parts, done = store.stored(members)
    todo = members[~np.isin(members, done)]
    own = not isinstance(progress, Progress)
    bar = Progress(max(len(members), 1), bool(progress), verb="computing") if own else progress
    bar.update(
        int(np.isin(members, done).sum()), f"(resumed from {store.folder})" if len(done) else ""
    )
    if own:
        bar.start()
    try:
        for c, (ids, width) in enumerate(plan(todo)):
            bar.begin_chunk(len(ids))
            arrays = compute(ids, width)
            if arrays is None:
                bar.update(len(ids), "(left out)")
                continue
            parts.append(store.save(ids, arrays))
            bar.update(len(ids), store.label(parts[-1]))
            if after is not None:
                after(c, parts[-1])
    finally:
        if own:
            bar.close()
    return parts


def map_chunks(
    members: np.ndarray,
    plan: Callable[[np.ndarray], list[Chunk]],
    compute: Callable[[np.ndarray, int], dict[str, np.ndarray] | None],
    store: PartialStore,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """:func:`run_chunks` with a :class:`PartialStore`: every field concatenated over the members
    computed, ordered by member id, with their ids under ``member`` ({} when none was)."""
    parts = run_chunks(members, plan, compute, store, progress)
    if not parts:
        return {}
    order = np.argsort(np.concatenate([p["member"] for p in parts]), kind="stable")
    return {k: np.concatenate([p[k] for p in parts])[order] for k in parts[0]}
