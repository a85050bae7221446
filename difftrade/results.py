"""Results as labelled arrays: the xarray schema, netCDF store, chunk files and resume.

A run directory holds::

    config.json           the validated config (JSON) and its hash
    .lock                 flock'ed by the one process writing the directory (holds its pid)
    sessions.json         one entry per session that trained members (UTC times, wall seconds, chunk size, devices)
    chunks/chunk_m000000-000003.nc  per-chunk member results (dim ``member``; named by its
                          first and last member), written atomically
    chunks/chunk_m000000-000003.params.npz  trained weights of the chunk's members (for certificates)
    results.nc            the assembled grid dataset

Schema of ``results.nc`` (dims ``difficulty, budget, seed, level, checkpoint``):

    train_exact, train_ce                  [difficulty, budget, seed]
    level_exact, level_ce                  [difficulty, budget, seed, level]
    loss_curve, accuracy_curve             [difficulty, budget, seed, checkpoint]
    nonfinite_steps                        [difficulty, budget, seed]   (0 = healthy)
    diverged                               [difficulty, budget, seed]   bool: nonfinite_steps > 0
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
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np
import xarray as xr

from difftrade import data
from difftrade.evaluate import risks
from difftrade.tasks import make_task

ENGINE = "scipy"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("difftrade", "jax", "jaxlib", "flax", "optax", "numpy", "xarray"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


@functools.cache
def source_revision() -> str:
    """``git rev-parse HEAD`` of the checkout the package runs from (``+dirty`` when the package's
    tracked files differ from it), else ``"difftrade <version>"`` (an installed package)."""
    pkg = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=pkg, capture_output=True, text=True, timeout=20, check=True).stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "__init__.py")  # the package is tracked by this checkout
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".")
        return git("rev-parse", "HEAD") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return f"difftrade {versions()['difftrade']}"


def device_kind() -> str:
    d = jax.devices()
    return f"{len(d)}x {d[0].platform}:{d[0].device_kind}"


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
RESULTS_VARIABLES = ("train_exact", "level_exact", "train_risk", "test_risk", "target_risk",
                     "generalization_gap", "extrapolation_gap", "train_weights", "target_weights")
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
        raise ValueError(f"{path} is not a difftrade results file (not a readable netCDF3 file: "
                         f"{_first_line(err)}); {ALLOWED_RESULTS}") from None


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
        raise ValueError(f"{source} is not a difftrade results file (lacks the variables {missing} that {purpose} "
                         f"reads); {ALLOWED_RESULTS}")


def load(path: str | Path) -> xr.Dataset:
    """Open a results file (or a run directory's ``results.nc``), a chunk file or a bounds.nc fully
    into memory; the file is closed afterwards.

    ``ValueError`` naming the file when it is missing, not netCDF3, or netCDF from another tool
    (naming the dims and variables of a difftrade results file it lacks).
    """
    path = results_path(path)
    ds = open_netcdf(path)
    if file_kind(ds) is None:
        dims = [d for d in GRID_DIMS if d not in ds.dims]
        variables = [v for v in RESULTS_VARIABLES if v not in ds.variables]
        raise ValueError(f"{path} is not a difftrade results file (lacks the dims {dims} and the variables {variables}; "
                         f"it holds {sorted(map(str, ds.data_vars))[:10]}); {ALLOWED_RESULTS}")
    return ds


def chunk_dataset(member_index: np.ndarray, train_out: dict[str, np.ndarray], eval_out: dict[str, np.ndarray]) -> xr.Dataset:
    """Per-member results of one chunk (dim ``member`` = flat grid index)."""
    m = ("member",)
    return xr.Dataset(
        {
            "train_exact": (m, eval_out["train_exact"].astype(np.float64)),
            "train_ce": (m, eval_out["train_ce"].astype(np.float64)),
            "level_exact": (("member", "level"), eval_out["level_exact"].astype(np.float64)),
            "level_ce": (("member", "level"), eval_out["level_ce"].astype(np.float64)),
            "loss_curve": (("member", "checkpoint"), np.asarray(train_out["loss_curve"], np.float64)),
            "accuracy_curve": (("member", "checkpoint"), np.asarray(train_out["accuracy_curve"], np.float64)),
            "nonfinite_steps": (m, np.asarray(train_out["nonfinite_steps"], np.int32)),
        },
        coords={"member": member_index.astype(np.int32)},
    )


def checkpoints(train: Any) -> np.ndarray:
    """The ``checkpoint`` coordinate, int32 ``[K]``: the step at the end of each curve segment, or,
    with ``train.epochs`` (steps differ by budget; ``train_steps [budget]`` holds them), the
    segment's number 1..K."""
    k = np.arange(1, train.num_checkpoints + 1)
    return (k if train.epochs else k * (train.steps // train.num_checkpoints)).astype(np.int32)


def assemble(cfg: Any, chunks: list[xr.Dataset], extra_attrs: dict[str, Any] | None = None) -> xr.Dataset:
    """Stack chunk datasets into the labelled grid and add risks and gaps.

    ``cfg`` is a ``RunConfig``. Members are in grid order (difficulty, budget, seed). A member
    with any NaN/inf training step is ``diverged [difficulty, budget, seed]``: its risks and gaps
    are NaN (its raw ``level_exact``/``train_exact`` are kept), so seed means skip it.
    """
    flat = xr.concat(chunks, dim="member").sortby("member")
    num = int(np.prod(cfg.grid_shape))
    if flat.sizes["member"] != num or not np.array_equal(flat["member"].values, np.arange(num)):
        raise ValueError(f"chunks cover {flat.sizes['member']} of {num} members: the run is incomplete")
    task = cfg.task
    shape = cfg.grid_shape
    g = cfg.grid
    coords = {
        "difficulty": np.asarray(g.difficulties, np.int32),
        "budget": np.asarray(g.budgets, np.int32),
        "seed": np.asarray(g.seeds, np.int32),
        "level": np.asarray(task.levels, np.int32),
        "checkpoint": checkpoints(cfg.train),
    }
    grid_dims = ("difficulty", "budget", "seed")
    variables: dict[str, Any] = {}
    for name, var in flat.data_vars.items():
        extra = var.dims[1:]
        variables[name] = (grid_dims + extra, var.values.reshape(shape + var.shape[1:]))
    train_w = cfg.train_weights()
    target_w = cfg.target_weights()
    r = risks(
        variables["train_exact"][1], variables["level_exact"][1], train_w[:, None, None, :], target_w
    )
    diverged = variables["nonfinite_steps"][1] > 0
    variables["diverged"] = (grid_dims, diverged)
    for name, value in r.items():
        variables[name] = (grid_dims, np.where(diverged, np.nan, value))
    variables["train_weights"] = (("difficulty", "level"), train_w)
    variables["target_weights"] = (("level",), target_w)
    if cfg.train.epochs:
        steps = [cfg.train.for_budget(int(n)).steps for n in g.budgets]
        variables["train_steps"] = (("budget",), np.asarray(steps, np.int32))
    attrs = {
        "config": json.dumps(cfg.to_dict(), sort_keys=True),
        "config_hash": cfg.hash(),
        "task": task.name,
        "device": device_kind(),
        **{f"version_{k}": v for k, v in versions().items()},
        **(extra_attrs or {}),
    }
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def with_target(ds: xr.Dataset, target_weights: np.ndarray) -> xr.Dataset:
    """The same members against another target distribution over levels, ``target_weights [L]``.

    ``target_risk`` and ``extrapolation_gap`` ``[difficulty, budget, seed]`` are recomputed from
    ``level_exact`` (diverged members stay NaN); train risk, test risk and the generalization gap
    do not depend on the target. The target needs no retraining: it only weights the levels.
    """
    t = data.validate_weights(target_weights, ds.sizes["level"], "target_weights")
    dims = ("difficulty", "budget", "seed")
    level_exact = ds["level_exact"].transpose(*dims, "level").values
    train_w = ds["train_weights"].transpose("difficulty", "level").values
    r = risks(ds["train_exact"].transpose(*dims).values, level_exact, train_w[:, None, None, :], t)
    bad = diverged_mask(ds)
    bad = np.zeros(level_exact.shape[:3], bool) if bad is None else bad.transpose(*dims).values
    out = ds.copy()
    for name in ("target_risk", "extrapolation_gap"):
        out[name] = (dims, np.where(bad, np.nan, r[name]))
    out["target_weights"] = (("level",), t)
    return out


def level_structure(ds: xr.Dataset) -> str:
    """The ``level_structure`` of the run's task, rebuilt from the config stored in the file."""
    source = ds.encoding.get("source", "this results dataset")
    if "config" not in ds.attrs:
        raise ValueError(f"{source} has no 'config' attribute; allowed: a file written by difftrade run")
    try:
        task = dict(json.loads(ds.attrs["config"])["task"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{source}: its 'config' attribute is not a difftrade config ({_first_line(err)}); "
                         "allowed: a file written by difftrade run") from None
    return make_task(task.pop("name"), **task).level_structure


def diverged_mask(ds: xr.Dataset) -> xr.DataArray | None:
    """Bool ``[difficulty, budget, seed]``: members with NaN/inf training steps (``diverged``, or
    ``nonfinite_steps > 0`` for results files without it); None when neither is stored."""
    if "diverged" in ds:
        return ds["diverged"].astype(bool)
    if "nonfinite_steps" in ds:
        return ds["nonfinite_steps"] > 0
    return None


def describe_diverged(ds: xr.Dataset, limit: int = 10) -> str:
    """``"N diverged member(s) (d, n, seed): (1, 32, 0), ..."`` (the first ``limit``), or ``""`` if none."""
    bad = diverged_mask(ds)
    if bad is None or not bool(bad.any()):
        return ""
    bad = bad.transpose("difficulty", "budget", "seed")
    cells = [
        f"({int(bad['difficulty'][i])}, {int(bad['budget'][j])}, {int(bad['seed'][k])})"
        for i, j, k in np.argwhere(bad.values)
    ]
    more = f", ... and {len(cells) - limit} more" if len(cells) > limit else ""
    return (f"{len(cells)} diverged member(s) (NaN/inf training steps; their risks are NaN and excluded), "
            f"(d, n, seed): {', '.join(cells[:limit])}{more}")


def flatten_params(params: Any) -> dict[str, np.ndarray]:
    """Parameter pytree -> {'leaf_000': array, ...} in tree order (for npz)."""
    return {f"leaf_{i:03d}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(params))}


def unflatten_params(treedef_like: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of ``flatten_params`` given a pytree with the same structure."""
    leaves = [arrays[f"leaf_{i:03d}"] for i in range(len(arrays))]
    return jax.tree.unflatten(jax.tree.structure(treedef_like), leaves)
