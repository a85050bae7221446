"""How the training and test risk of subspace-trained members depend on the dimension D, per level.

Runs the grid of ``addition.toml`` at one budget (4,096) and two seeds once per D in DIMS (each a
``[subspace] dim = D`` run, so each is an ordinary run directory), then writes one row per
(D, difficulty) with seed means to ``docs/runs/compression/intrinsic_dim.csv``.

Run:  python experiments/compression/intrinsic_dim.py [--out runs/compression/intrinsic_dim]
"""

from __future__ import annotations

import argparse
import csv
import tomllib
from pathlib import Path

import numpy as np

from difftrade.config import run_config as config
from difftrade.runner import experiment
from difftrade.tasks import configs

HERE = Path(__file__).resolve().parent
DIMS = (250, 500, 1000, 2000, 4000)
BUDGET, SEEDS = 4096, [0, 1]
TABLE = HERE.parents[1] / "docs" / "runs" / "compression" / "intrinsic_dim.csv"


def config_for(dim: int) -> config.RunConfig:
    """``addition.toml`` at one budget, two seeds and subspace dimension ``dim``."""
    raw = tomllib.loads((HERE / "addition.toml").read_text())
    raw["grid"].update(budgets=[BUDGET], seeds=SEEDS)
    raw["subspace"]["dim"] = dim
    raw["run"]["chunk_size"] = 0
    return configs.from_dict(raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/compression/intrinsic_dim"),
        help="parent of the run directories",
    )
    args = parser.parse_args()
    rows = []
    for dim in DIMS:
        ds = experiment.run(config_for(dim), args.out / f"dim_{dim}", resume=True)
        mean = ds.mean("seed")
        for d in ds["difficulty"].values:
            cell = mean.sel(difficulty=d, budget=BUDGET)
            rows.append(
                {
                    "dim": dim,
                    "difficulty": int(d),
                    "train_risk": float(cell["train_risk"]),
                    "test_risk": float(cell["test_risk"]),
                    "target_risk": float(cell["target_risk"]),
                    "wall_seconds": float(ds.attrs.get("wall_seconds", np.nan)),
                }
            )
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    with TABLE.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(
            {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for row in rows
        )
    print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
