"""The results dataset built from training: one chunk's per-member dataset, the labelled grid
with risks and gaps assembled from the chunks, and the grid against another target distribution.

The schema of what it builds is in :mod:`difftrade.results.schema`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from difftrade.config import level_weights
from difftrade.results.divergence import diverged_mask
from difftrade.results.provenance import device_kind, versions
from difftrade.tasks import VOCAB
from difftrade.train.evaluate import MEMBER_METRICS, risks
from difftrade.train.run_task import run_task

STOPPING_VARIABLES = (
    "selected_step",
    "stopped_step",
)  # per member, with train.stopping = "validation"


def chunk_dataset(
    member_index: np.ndarray, train_out: dict[str, np.ndarray], eval_out: dict[str, np.ndarray]
) -> xr.Dataset:
    """Per-member results of one chunk (dim ``member`` = flat grid index): every
    :data:`~difftrade.train.evaluate.MEMBER_METRICS` entry of ``eval_out`` and the training curves."""
    m = ("member",)
    return xr.Dataset(
        {
            **{
                k: (m + dims, np.asarray(eval_out[k], np.float64))
                for k, dims in MEMBER_METRICS.items()
            },
            "loss_curve": (
                ("member", "checkpoint"),
                np.asarray(train_out["loss_curve"], np.float64),
            ),
            "accuracy_curve": (
                ("member", "checkpoint"),
                np.asarray(train_out["accuracy_curve"], np.float64),
            ),
            "nonfinite_steps": (m, np.asarray(train_out["nonfinite_steps"], np.int32)),
            **{
                k: (m, np.asarray(train_out[k], np.int32))
                for k in STOPPING_VARIABLES
                if train_out.get(k) is not None
            },
        },
        coords={"member": member_index.astype(np.int32)},
    )


def checkpoints(train: Any) -> np.ndarray:
    """The ``checkpoint`` coordinate, int32 ``[K]``: the step at the end of each curve segment, or,
    with ``train.epochs`` (steps differ by budget; ``train_steps [budget]`` holds them), the
    segment's number 1..K."""
    k = np.arange(1, train.num_checkpoints + 1)
    return (k if train.epochs else k * (train.steps // train.num_checkpoints)).astype(np.int32)


EXPLOSION_FACTOR = 10.0  # a training loss this many times a uniform guess's is a divergence


def exploded(loss_curve: np.ndarray) -> np.ndarray:
    """Bool ``[...]`` from ``loss_curve [..., K]``: members whose training loss at some checkpoint
    exceeds ``EXPLOSION_FACTOR`` times ``ln |vocabulary|`` (the loss of a uniform guess), a finite
    explosion that is as much a divergence as a NaN step. NaN curves (scored models) are not."""
    finite = np.where(np.isfinite(loss_curve), loss_curve, -np.inf)
    return np.max(finite, axis=-1, initial=-np.inf) > EXPLOSION_FACTOR * np.log(len(VOCAB))


def assemble(
    cfg: Any, chunks: list[xr.Dataset], extra_attrs: dict[str, Any] | None = None
) -> xr.Dataset:
    """Stack chunk datasets into the labelled grid and add risks and gaps.

    ``cfg`` is a ``RunConfig``. Members are in grid order (difficulty, budget, seed). A member
    with any NaN/inf training step, or whose loss :func:`exploded`, is ``diverged [difficulty,
    budget, seed]``: its risks and gaps are NaN (its raw ``level_exact``/``train_exact`` are kept),
    so seed means skip it.
    """
    flat = xr.concat(chunks, dim="member").sortby("member")
    num = int(np.prod(cfg.grid_shape))
    if flat.sizes["member"] != num or not np.array_equal(flat["member"].values, np.arange(num)):
        raise ValueError(
            f"chunks cover {flat.sizes['member']} of {num} members: the run is incomplete"
        )
    task = run_task(cfg)
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
        variables["train_exact"][1],
        variables["level_exact"][1],
        train_w[:, None, None, :],
        target_w,
    )
    diverged = (variables["nonfinite_steps"][1] > 0) | exploded(variables["loss_curve"][1])
    variables["diverged"] = (grid_dims, diverged)
    for name, value in r.items():
        variables[name] = (grid_dims, np.where(diverged, np.nan, value))
    variables["train_weights"] = (("difficulty", "level"), train_w)
    variables["target_weights"] = (("level",), target_w)
    if cfg.train.epochs:
        steps = [cfg.train.for_budget(int(n)).steps for n in g.budgets]
        variables["train_steps"] = (("budget",), np.asarray(steps, np.int32))
    attrs = {
        "config": cfg.to_json(),
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
    t = level_weights.validate_weights(target_weights, ds.sizes["level"], "target_weights")
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
