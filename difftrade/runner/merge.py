"""Merge result grids that differ along one axis: more budgets, difficulties or seeds for a finished run.

A member's training and evaluation depend on the run key, its difficulty's training
distribution, its budget, its seed and the static configuration, never on which other members
share its grid. Two runs whose configs differ only in one of ``grid.budgets``,
``grid.difficulties`` or ``grid.seeds`` (with no value in common) therefore hold members of one
larger grid, and their results concatenate along that axis into the result file that grid would
have produced (up to its session attributes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from difftrade.model.checkpoint import BASE_HASH
from difftrade.tasks import configs

AXES = {"budgets": "budget", "difficulties": "difficulty", "seeds": "seed"}


def _config(ds: xr.Dataset, name: str) -> dict[str, Any]:
    """The canonical form of a result file's config (validated, defaults resolved)."""
    return configs.stored(ds, name).to_dict()


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """``section.key`` (or ``[section]``) for every entry in which two config dicts differ."""
    out = []
    for section in sorted(set(a) | set(b)):
        x, y = a.get(section), b.get(section)
        if isinstance(x, dict) and isinstance(y, dict):
            out += [f"{section}.{k}" for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)]
        elif x != y:
            out.append(f"[{section}]")
    return out


def merge_axis(configs: Sequence[dict[str, Any]], names: Sequence[str]) -> str:
    """The one ``[grid]`` list (``budgets``, ``difficulties`` or ``seeds``) in which ``configs``
    differ; ``ValueError`` naming the files when they differ elsewhere, in several lists, or
    share a value of that list."""
    first = configs[0]
    differ = sorted({k for c in configs[1:] for k in AXES if c["grid"][k] != first["grid"][k]})
    rest = [
        {
            **c,
            "grid": {k: v for k, v in c["grid"].items() if k not in AXES},
            "run": {k: v for k, v in c["run"].items() if k != "chunk_size"},
        }
        for c in configs
    ]
    for c, name in zip(rest[1:], names[1:]):
        if c != rest[0]:
            raise ValueError(
                f"{name} differs from {names[0]} in {', '.join(_differences(rest[0], c))}; allowed: "
                "configs that differ only in grid.budgets, grid.difficulties or grid.seeds"
            )
    if len(differ) != 1:
        raise ValueError(
            f"{', '.join(names)} differ in grid lists {differ or 'none'}; allowed: exactly one of "
            f"{', '.join(AXES)}"
        )
    values = [v for c in configs for v in c["grid"][differ[0]]]
    if len(set(values)) != len(values):
        raise ValueError(
            f"{', '.join(names)} share grid.{differ[0]} values {sorted({v for v in values if values.count(v) > 1})}; "
            "allowed: disjoint lists"
        )
    return differ[0]


def check_one_base(datasets: Sequence[xr.Dataset], names: Sequence[str]) -> None:
    """``ValueError`` when the inputs were fine-tuned from different bases (their
    ``base_config_hash`` attributes differ; an input trained from scratch records none)."""
    bases = [d.attrs.get(BASE_HASH) for d in datasets]
    if len(set(bases)) > 1:
        found = ", ".join(f"{n}: {b or 'none'}" for n, b in zip(names, bases))
        raise ValueError(
            f"inputs start from different bases ({BASE_HASH} {found}); allowed: runs fine-tuned "
            "from one base"
        )


# [difficulty, budget] counts a run makes on its grid's first seed only (experiment.add_overlap)
FIRST_SEED_VARIABLES = ("duplicate_fraction", "test_in_train_fraction")


def merge(datasets: Sequence[xr.Dataset], names: Sequence[str]) -> xr.Dataset:
    """One grid from result datasets that differ along one grid axis (sorted along it).

    Variables without that axis (training and target weights, ...) must be equal in every input,
    except the overlap counts of a seed merge (:data:`FIRST_SEED_VARIABLES`), which a run counts
    on its first seed: they come from the input holding the merged grid's first seed, as the
    larger grid would have counted them. Attributes: the merged config and its hash,
    ``wall_seconds`` summed, ``merged_from`` (the inputs' names and config hashes); the rest from
    the first input.
    """
    if len(datasets) < 2:
        raise ValueError(f"{len(datasets)} result file(s) given; allowed: two or more to merge")
    stored_forms = [_config(ds, name) for ds, name in zip(datasets, names)]
    key = merge_axis(stored_forms, names)
    check_one_base(datasets, names)
    dim = AXES[key]
    first_seed: dict[str, xr.DataArray] = {}
    if dim == "seed":
        holder = min(datasets, key=lambda d: int(d["seed"].min()))
        first_seed = {v: holder[v] for v in FIRST_SEED_VARIABLES if v in holder}
        datasets = [d.drop_vars(list(first_seed), errors="ignore") for d in datasets]
    try:
        ds = xr.concat(
            datasets,
            dim=dim,
            data_vars="minimal",
            coords="minimal",
            compat="equals",
            combine_attrs="override",
        )
    except ValueError as err:
        raise ValueError(
            f"{', '.join(names)} cannot be merged along {dim}: {str(err).splitlines()[0]}"
        ) from None
    ds = ds.sortby(dim).assign(first_seed)
    merged = {
        **stored_forms[0],
        "grid": {**stored_forms[0]["grid"], key: [int(v) for v in ds[dim].values]},
    }
    cfg = configs.from_dict(merged)
    ds.attrs.update(
        {  # the rest: the first input's (combine_attrs="override")
            "config": cfg.to_json(),
            "config_hash": cfg.hash(),
            "wall_seconds": float(
                np.sum([float(d.attrs.get("wall_seconds", np.nan)) for d in datasets])
            ),
            "merged_from": json.dumps(
                [
                    {"file": n, "config_hash": d.attrs.get("config_hash")}
                    for n, d in zip(names, datasets)
                ]
            ),
        }
    )
    return ds
