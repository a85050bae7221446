"""Results files on disk: the run directory's layout and the schema of ``results.nc``, atomic
writes, and reading and recognising the files difftrade writes.

A run directory holds::

    config.json           the validated config (JSON) and its hash
    .lock                 flock'ed by the one process writing the directory (holds its pid)
    sessions.json         one entry per session that trained members (UTC times, wall seconds, chunk size, devices)
    chunks/chunk_m000000-000003.nc  per-chunk member results (dim ``member``; named by its
                          first and last member), written atomically
    chunks/chunk_m000000-000003.params.npz  trained weights of the chunk's members (for certificates):
                          ``member [m]`` ids and one array per parameter, keyed by its tree path
                          (``params/blocks/0/qkv/kernel [m, ...]``; :func:`difftrade.results.weights_format.load_weights`
                          reads it without the model); ``.prior.npz`` and ``.coords.npz`` (a bare ``params
                          [m, D]``) alike
    results.nc            the assembled grid dataset

Schema of ``results.nc`` (dims ``difficulty, budget, seed, level, checkpoint``):

    train_exact, train_ce                  [difficulty, budget, seed]
    level_exact, level_ce                  [difficulty, budget, seed, level]
    loss_curve, accuracy_curve             [difficulty, budget, seed, checkpoint]
    nonfinite_steps                        [difficulty, budget, seed]   (0 = healthy)
    selected_step, stopped_step            [difficulty, budget, seed]   (train.stopping = "validation":
                                           steps at the checkpoint validation picked, and when the
                                           member stopped; stopped_step = train.steps: hit the cap)
    diverged                               [difficulty, budget, seed]   bool: nonfinite_steps > 0 or a loss explosion (assembly.exploded)
    train_risk, test_risk, target_risk,
    generalization_gap, extrapolation_gap  [difficulty, budget, seed]   NaN where diverged
    train_weights [difficulty, level], target_weights [level]
    train_steps [budget]                   steps per member, only with ``train.epochs`` (then
                                           ``checkpoint`` numbers the curve segments 1..K)

Attributes: ``config`` (JSON), ``config_hash``, library versions, device kind; from the sessions
that trained it: ``wall_seconds`` (summed), ``chunk_size`` and ``device_count`` (the last session's),
``started_utc``/``finished_utc`` (ISO 8601), ``source_revision`` and ``sessions`` (JSON list).
:func:`load` names the file when it is not netCDF or not difftrade's.
netCDF is written with the scipy engine (netCDF3; no HDF5 dependency).

Beside this module: :mod:`difftrade.results.assembly` builds the chunk datasets and ``results.nc``,
:mod:`difftrade.results.divergence` finds the diverged members, :mod:`difftrade.results.weights_format` is the weights
files' format and :mod:`difftrade.results.provenance` the versions, revision and device recorded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from difftrade.config.files import META, read_meta
from difftrade.results import identity

ENGINE = "scipy"


def _netcdf3_attr(value: Any) -> Any:
    """NetCDF3 (the scipy engine) stores integers as int32: larger ones become float64.

    A GPU run's ``peak_device_bytes`` (tens of GB) once made the final ``results.nc`` write fail
    after every chunk had trained; float64 holds such byte counts exactly up to 2^53.
    """
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if is_int and not np.iinfo(np.int32).min <= int(value) <= np.iinfo(np.int32).max:
        return float(value)
    return value


def atomic_write_netcdf(ds: xr.Dataset, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    ds = ds.copy()
    ds.attrs = {k: _netcdf3_attr(v) for k, v in ds.attrs.items()}
    for var in ds.variables.values():
        var.attrs = {k: _netcdf3_attr(v) for k, v in var.attrs.items()}
    try:
        ds.to_netcdf(tmp, engine=ENGINE)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def atomic_write_text(text: str, path: Path) -> None:
    """Write a text file through a temporary file in the same folder and a rename: never half-written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_save_npz(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Write an ``.npz`` through a temporary file in the same folder and a rename: never half-written;
    a failed write (a full disk) removes its temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def results_path(path: str | Path) -> Path:
    """The results file named by ``path``: the file itself, or ``results.nc`` in a run directory."""
    path = Path(path)
    if path.is_dir():
        if not (path / "results.nc").exists():
            raise ValueError(
                f"run directory {str(path)!r} has no results.nc; allowed: a finished run's directory or its "
                "results.nc (an unfinished run completes with `difftrade run CONFIG --out DIR --resume`)"
            )
        return path / "results.nc"
    if not path.exists():
        raise ValueError(f"results file {str(path)!r} does not exist")
    return path


GRID_DIMS = ("difficulty", "budget", "seed")
# what every results.nc written by difftrade run holds (docs/runs back to tradeoff_v1.nc)
RESULTS_VARIABLES = (
    "train_exact",
    "level_exact",
    "train_risk",
    "test_risk",
    "target_risk",
    "generalization_gap",
    "extrapolation_gap",
    "train_weights",
    "target_weights",
)
ALLOWED_RESULTS = "allowed: a results.nc written by `difftrade run`, or its run directory"


def _first_line(err: BaseException, limit: int = 200) -> str:
    """``"Type: first line of the message"`` (at most ``limit`` characters)."""
    text = (str(err).strip().splitlines() or [""])[0].strip()
    return f"{type(err).__name__}: {text[:limit]}"


def open_netcdf(path: str | Path) -> xr.Dataset:
    """Read a netCDF3 file fully into memory (closed afterwards), whatever it holds.

    ``ValueError`` naming the file when it cannot be read or is not netCDF3 (text, empty,
    truncated, HDF5/netCDF4).
    """
    path = Path(path)
    try:
        with xr.open_dataset(path, engine=ENGINE) as ds:
            return ds.load()
    except PermissionError as err:
        raise ValueError(f"{path} cannot be read ({err.strerror}); {ALLOWED_RESULTS}") from None
    except Exception as err:  # noqa: BLE001 - scipy's reader raises Type, Value, Index, OS or EOF errors
        raise ValueError(
            f"{path} is not a difftrade results file (not a readable netCDF3 file: "
            f"{_first_line(err)}); {ALLOWED_RESULTS}"
        ) from None


def file_kind(ds: xr.Dataset) -> str | None:
    """``"bounds"`` (bounds.nc), ``"chunk"`` (dim ``member``), ``"results"`` (dims difficulty,
    budget, seed and ``level_exact``), or None for a file difftrade did not write."""
    if "settings" in ds.attrs and "config_hash" in ds.attrs:
        return "bounds"
    if "member" in ds.dims and "level_exact" in ds:
        return "chunk"
    if set(GRID_DIMS) <= set(ds.dims) and "level_exact" in ds:
        return "results"
    return None


def require(ds: xr.Dataset, names: tuple[str, ...], purpose: str) -> None:
    """``ValueError`` naming the dataset's file and the variables of ``names`` it lacks, if any."""
    missing = [n for n in names if n not in ds.variables]
    if missing:
        source = ds.encoding.get("source", "the results dataset")
        raise ValueError(
            f"{source} is not a difftrade results file (lacks the variables {missing} that {purpose} "
            f"reads); {ALLOWED_RESULTS}"
        )


def _check_run_identity(path: Path, ds: xr.Dataset) -> None:
    """A run directory's ``results.nc`` belongs to the experiment its ``config.json`` records
    (:class:`~difftrade.results.identity.ForeignFile` otherwise); other files pass."""
    if path.name != "results.nc" or not (path.parent / META).exists():
        return
    try:
        recorded = read_meta(path.parent)["config_hash"]
    except ValueError:
        return  # an unreadable config.json is named by the reader that needs it
    identity.require(
        path, ds.attrs.get(identity.ATTR, "none"), str(recorded), f" (the one its {META} records)"
    )


def load(path: str | Path) -> xr.Dataset:
    """Open a results file (or a run directory's ``results.nc``), a chunk file or a bounds.nc fully
    into memory; the file is closed afterwards.

    ``ValueError`` naming the file when it is missing, not netCDF3, or netCDF from another tool
    (naming the dims and variables of a difftrade results file it lacks).
    """
    path = results_path(path)
    ds = open_netcdf(path)
    _check_run_identity(path, ds)
    if file_kind(ds) is None:
        dims = [d for d in GRID_DIMS if d not in ds.dims]
        variables = [v for v in RESULTS_VARIABLES if v not in ds.variables]
        raise ValueError(
            f"{path} is not a difftrade results file (lacks the dims {dims} and the variables {variables}; "
            f"it holds {sorted(map(str, ds.data_vars))[:10]}); {ALLOWED_RESULTS}"
        )
    return ds
