"""The chunk files of a run directory: names, checks, discarding, temporaries, and loading the
stored weights by member id.

A chunk is named by the members it holds, ``chunks/chunk_m{first:06d}-{last:06d}.nc`` with its
weights beside it (``.params.npz``; ``.prior.npz`` for runs with ``train.prefix_steps > 0``;
``.coords.npz``, each member's subspace coordinates, for runs with ``[subspace]``), so no chunk's
name can be another's (a chunk's members need not be contiguous: a fixed-epochs run groups
them by budget). The member ids stored inside the files are what counts: a resume opens
and checks every chunk, moves a chunk that fails a check aside (``*.discarded``, with a line on
stderr naming it and why) and retrains its members, and removes the temporary
files (``.NAME.tmpPID``) of writes that a kill interrupted. Count-named chunks
(``chunk_00000.nc``) are read by their stored ids.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from difftrade.config.files import META, grid_members, one_line, read_meta
from difftrade.config.logs import log
from difftrade.config.run_config import RunConfig
from difftrade.model.checkpoint import pid_alive
from difftrade.results import identity, weights_format
from difftrade.results import schema as results
from difftrade.results.weights_format import npz_members, read_npz
from difftrade.runner.rundir import read_config
from difftrade.train.evaluate import MEMBER_METRICS

CHUNK_NAME = re.compile(r"chunk_m(\d+)-(\d+)\.nc")
TRAINING_VARIABLES = ("loss_curve", "accuracy_curve", "nonfinite_steps")


def chunk_variables() -> tuple[str, ...]:
    """The per-member variables every chunk file holds: the evaluator's metrics
    (:data:`~difftrade.train.evaluate.MEMBER_METRICS`) and the training curves."""
    return (*MEMBER_METRICS, *TRAINING_VARIABLES)


def chunk_stem(chunks_dir: Path, members: np.ndarray) -> Path:
    """``chunks_dir/chunk_m{first:06d}-{last:06d}`` for a chunk holding ``members [m]`` (ascending ids)."""
    return chunks_dir / f"chunk_m{int(members[0]):06d}-{int(members[-1]):06d}"


def chunk_files(out_dir: Path) -> list[Path]:
    """The chunk result files of a run directory, sorted by name (``chunk_*.nc``, any naming)."""
    return sorted((Path(out_dir) / "chunks").glob("chunk_*.nc"))


WEIGHT_KINDS = ("params", "prior", "coords")


def weight_kinds(cfg: RunConfig) -> tuple[str, ...]:
    """The weights files each chunk of ``cfg`` has: ``params``, ``prior`` (``train.prefix_steps > 0``),
    ``coords`` (``[subspace]`` on: each member's coordinates ``z [D]``)."""
    return (
        ("params",) + ("prior",) * bool(cfg.train.prefix_steps) + ("coords",) * cfg.subspace.enabled
    )


def weights_file(chunk: Path, kind: str) -> Path:
    """The weights file of a chunk file ``chunk_X.nc``: ``chunk_X.{kind}.npz`` (kind one of ``WEIGHT_KINDS``)."""
    return chunk.with_name(f"{chunk.name.removesuffix('.nc')}.{kind}.npz")


FOREIGN_HOW = (
    " (a chunk copied from another run, or a config.json edited after training: "
    "train the edited config into a new --out)"
)


def check_chunk(
    path: Path, num_members: int, kinds: tuple[str, ...], experiment: str
) -> xr.Dataset:
    """Open one chunk file and check it; returns its dataset (dim ``member [m]``).

    Checks: readable with every per-member variable; written for ``experiment`` (the run's config
    hash), as is each weights file; ``member`` ids distinct, in ``[0, num_members)`` and (for a
    ``chunk_m{first}-{last}.nc`` name) spanning exactly ``first..last``; each weights file of
    ``kinds`` present, readable, the one the chunk recorded (SHA-256) and holding the same ids.
    Raises :class:`~difftrade.results.identity.ForeignFile` for a file of another experiment,
    ``ValueError`` saying what failed otherwise.
    """
    try:
        ds = results.load(path)
    except Exception as err:  # noqa: BLE001 - scipy's netCDF reader raises many types on a damaged file
        raise ValueError(f"unreadable ({one_line(err)})") from None
    identity.require(path, ds.attrs.get(identity.ATTR), experiment, FOREIGN_HOW)
    missing = [
        v
        for v in ("member", *chunk_variables())
        if v not in ds.variables or ds[v].dims[:1] != ("member",)
    ]
    if missing:
        raise ValueError(f"lacks the per-member variables {missing}")
    ids = np.asarray(ds["member"].values).astype(np.int64)
    if ids.size == 0 or len(np.unique(ids)) != ids.size:
        raise ValueError(f"member ids {ids.tolist()} are empty or repeated")
    if ids.min() < 0 or ids.max() >= num_members:
        raise ValueError(f"member ids {ids.tolist()} are outside the grid's 0..{num_members - 1}")
    named = CHUNK_NAME.fullmatch(path.name)
    if named and (int(named[1]), int(named[2])) != (int(ids.min()), int(ids.max())):
        raise ValueError(
            f"its name says members {int(named[1])}..{int(named[2])} but it holds {ids.tolist()}"
        )
    digests = identity.recorded_digests(ds.attrs, path)
    for kind in kinds:
        arrays = read_npz(weights_file(path, kind))
        identity.require(weights_file(path, kind), identity.of_npz(arrays), experiment, FOREIGN_HOW)
        identity.check_digest(weights_file(path, kind), path, digests, kind)
        stored = npz_members(arrays, weights_file(path, kind))
        if not np.array_equal(stored, ids):
            raise ValueError(
                f"{weights_file(path, kind).name} holds members {stored.tolist()}, the chunk {ids.tolist()}"
            )
    return ds


def discard(path: Path, reason: str) -> None:
    """Move a chunk file and its weights files aside (``*.discarded``) with one line on stderr naming it and why."""
    moved = [path] + [weights_file(path, k) for k in WEIGHT_KINDS if path.suffix == ".nc"]
    for p in moved:
        if p.exists():
            target, k = p.with_name(p.name + ".discarded"), 1
            while target.exists():
                target, k = p.with_name(f"{p.name}.discarded{k}"), k + 1
            os.replace(p, target)
    log.warning(
        f"difftrade: discarded {path} ({reason}); moved aside as *.discarded, its members are retrained"
    )


def finished_members(
    out_dir: Path, num_members: int, experiment: str, kinds: tuple[str, ...] = ("params",)
) -> tuple[list[xr.Dataset], set[int]]:
    """Chunk datasets on disk that pass :func:`check_chunk`, and the member indices they cover.

    A chunk that fails a check, or repeats a member of a chunk kept before it (name order), and
    a weights file with no chunk file beside it, are moved aside by :func:`discard`. A file of
    another experiment than ``experiment`` is refused
    (:class:`~difftrade.results.identity.ForeignFile`), never moved or retrained.
    """
    chunks, done, owner = [], set(), {}
    for path in chunk_files(out_dir):
        try:
            ds = check_chunk(path, num_members, kinds, experiment)
        except identity.ForeignFile:
            raise
        except ValueError as err:
            discard(path, str(err))
            continue
        ids = [int(m) for m in ds["member"].values]
        shared = sorted(set(ids) & done)
        if shared:
            discard(path, f"members {shared} are also in {owner[shared[0]]}, which is kept")
            continue
        chunks.append(ds)
        done.update(ids)
        owner.update({m: path.name for m in ids})
    for kind in WEIGHT_KINDS:
        for path in sorted((Path(out_dir) / "chunks").glob(f"chunk_*.{kind}.npz")):
            if not path.with_name(path.name.removesuffix(f".{kind}.npz") + ".nc").exists():
                discard(path, "no chunk .nc beside it: its chunk did not finish")
    return chunks, done


class RunChunks:
    """A run directory's chunk files as the store of its training
    (:func:`difftrade.runner.population.run_chunks`); a part is one chunk's results Dataset (dim ``member``).

    ``finished``: the chunk datasets on disk (:func:`finished_members`, read by process 0);
    ``done``: int ``[d]``, every member they hold (known to every process); ``writes``: whether
    this process writes the files (process 0 of a multi-host run); ``experiment``: the run's
    identity, stamped into every file. A chunk's weights files are written before its ``.nc``,
    which marks the chunk as done and records their SHA-256.
    """

    def __init__(
        self,
        out_dir: Path,
        finished: list[xr.Dataset],
        done: np.ndarray,
        writes: bool,
        experiment: str,
    ):
        self.folder, self.finished, self.done, self.writes = (
            Path(out_dir) / "chunks",
            finished,
            done,
            writes,
        )
        self.experiment = experiment

    def stored(self, members: np.ndarray) -> tuple[list[xr.Dataset], np.ndarray]:
        return list(self.finished), self.done[np.isin(self.done, members)]

    def save(self, ids: np.ndarray, arrays: dict[str, Any]) -> xr.Dataset:
        """Write a trained chunk: ``arrays["results"]`` (its Dataset) and the weight trees
        ``params``, ``prior_params``, ``coords`` (each ``[m, ...]`` leaves, or None when off)."""
        ds = arrays["results"]
        if self.writes:
            chunk = chunk_stem(self.folder, ids).with_suffix(".nc")
            digests = {}
            for kind, field in (
                ("params", "params"),
                ("prior", "prior_params"),
                ("coords", "coords"),
            ):
                if arrays[field] is not None:
                    flat = {"member": ids, **weights_format.flatten_params(arrays[field])}
                    results.atomic_save_npz(
                        identity.stamped(flat, self.experiment), weights_file(chunk, kind)
                    )
                    digests[kind] = identity.file_digest(weights_file(chunk, kind))
            ds = ds.assign_attrs(
                {identity.ATTR: self.experiment, identity.DIGESTS_ATTR: json.dumps(digests)}
            )
            results.atomic_write_netcdf(ds, chunk)
        return ds

    def label(self, ds: xr.Dataset) -> str:
        bad = int(np.sum(ds["nonfinite_steps"].values > 0))
        return f"(chunk of {ds.sizes['member']}{f', {bad} with NaN/inf steps' if bad else ''})"


TEMPORARY = re.compile(
    r"\..+\.tmp(\d+)(\.npz)?"
)  # the atomic writers' temporary files: .NAME.tmpPID[.npz]


def clear_temporaries(out_dir: Path) -> None:
    """Remove the temporary files that killed writers left in ``out_dir`` and its ``chunks/`` (a chunk's
    weights can be large), those of processes that no longer run, with a line on stderr naming each."""
    for folder in (Path(out_dir), Path(out_dir) / "chunks"):
        for path in sorted(folder.glob(".*.tmp*")):
            named = TEMPORARY.fullmatch(path.name)
            if named and path.is_file() and not pid_alive(int(named[1])):
                path.unlink()
                log.warning(
                    f"difftrade: removed {path} (the temporary file of an interrupted write)"
                )


def grid_size(out_dir: Path) -> int:
    """Members of a run directory's grid (difficulties x budgets x seeds of its ``config.json``)."""
    meta = Path(out_dir) / META
    if not meta.exists():
        raise ValueError(
            f"{str(out_dir)!r} has no {META}; allowed: a directory written by difftrade run"
        )
    try:
        return grid_members(read_meta(out_dir)["config"])
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"{meta}: its config has no grid of difficulties, budgets and seeds ({one_line(err)}); "
            "allowed: the config.json that difftrade run wrote"
        ) from None


def _check_cover(stored: list[tuple[Path, np.ndarray]], num_members: int, kind: str) -> None:
    """``ValueError`` unless the ``(file, member ids [m])`` pairs hold each of ``0..num_members-1`` exactly once."""
    owners: dict[int, list[str]] = {}
    for path, ids in stored:
        for m in ids.tolist():
            owners.setdefault(int(m), []).append(path.name)
    repeated = [m for m, names in owners.items() if len(names) > 1]
    if repeated:
        m = min(repeated)
        raise ValueError(
            f"member {m} is in {' and '.join(owners[m])}; allowed: each member in one chunk "
            "(`difftrade run CONFIG --out DIR --resume` checks the chunks and retrains)"
        )
    lost = sorted(set(range(num_members)) - set(owners))
    extra = sorted(set(owners) - set(range(num_members)))
    if lost or extra:
        wrong = "; ".join(
            part
            for part in (
                f"lack members {lost[:10]}" if lost else "",
                f"hold members {extra[:10]} outside the grid" if extra else "",
            )
            if part
        )
        raise ValueError(
            f"the chunk_*.{kind}.npz files of {str(stored[0][0].parent)!r} {wrong}; "
            f"allowed: exactly the members 0..{num_members - 1}"
        )


def _check_weights(path: Path, arrays: dict[str, np.ndarray], experiment: str, kind: str) -> None:
    """A weights file's identity is ``experiment`` and its bytes are those its chunk file recorded
    (:mod:`difftrade.results.identity`; files from before identities are not checked)."""
    found = identity.of_npz(arrays)
    identity.require(path, found, experiment, FOREIGN_HOW)
    if found is not None:
        chunk = path.with_name(path.name.removesuffix(f".{kind}.npz") + ".nc")
        attrs = results.open_netcdf(chunk).attrs
        identity.require(chunk, attrs.get(identity.ATTR), experiment, FOREIGN_HOW)
        identity.check_digest(path, chunk, identity.recorded_digests(attrs, chunk), kind)


def load_params(
    out_dir: str | Path, like: object, kind: str = "params"
) -> tuple[np.ndarray, object]:
    """All trained weights of a run: (member indices ``[M]`` = ``0..M-1``, params pytree with leading ``M``).

    ``like`` is a params pytree of one member (for the tree structure). ``kind="coords"``: the
    subspace coordinates (``like`` a ``[D]`` array; runs with ``[subspace]``). ``kind="prior"``: the
    weights after each member's prefix phase (runs with ``train.prefix_steps > 0``). Each chunk
    file's weights are placed by the member ids stored in them and each leaf by its tree path
    (:func:`difftrade.results.weights_format.keyed_params`). ``ValueError`` naming the file when a weights file is
    absent or unreadable or does not match ``like``'s tree, or when a member is repeated or missing;
    :class:`~difftrade.results.identity.ForeignFile` for weights of another experiment than the
    run's ``config.json``, ``ValueError`` for weights that are not the ones their chunk recorded.
    """
    out_dir = Path(out_dir)
    paths = [weights_file(c, kind) for c in chunk_files(out_dir)]
    if not any(p.exists() for p in paths):
        raise ValueError(
            f"{str(out_dir)!r} holds no chunk_*.{kind}.npz files"
            + (
                " (prior weights are saved only by runs with train.prefix_steps > 0)"
                if kind == "prior"
                else ""
            )
        )
    experiment = read_config(out_dir).hash()
    stored, leaves = [], []
    for path in paths:
        try:
            arrays = read_npz(path)
        except ValueError as err:
            raise ValueError(
                f"{err}; allowed: each chunk_*.nc with a complete .{kind}.npz beside it (`difftrade run "
                "CONFIG --out DIR --resume` moves a damaged chunk aside and retrains it)"
            ) from None
        _check_weights(path, arrays, experiment, kind)
        stored.append((path, npz_members(arrays, path)))
        try:  # keyed by tree path (older files: leaf_NNN in tree order), so files of both kinds mix
            leaves.append(weights_format.keyed_params(like, arrays))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    _check_cover(stored, grid_size(out_dir), kind)
    members = np.concatenate([ids for _, ids in stored])
    order = np.argsort(members)
    stacked = {k: np.concatenate([leaf[k] for leaf in leaves])[order] for k in leaves[0]}
    return members[order], weights_format.unflatten_params(like, stacked)
