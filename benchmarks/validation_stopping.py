"""What validation stopping costs against fixed steps, for the same members.

Trains a small chain grid (difficulties 1 and 4, budgets 512 and 2,048, seeds 0 and 1: 8 members,
one chunk) from ``experiments/study/chain.toml`` with the step count and stopping rule given, in a
temporary directory, and prints its wall time. Timed as a whole process, A against B:

    python -m benchmarks.validation_stopping --stopping fixed --steps 600
    python -m benchmarks.validation_stopping --stopping validation --steps 600 --patience 12   # never stops: the validation passes alone
    python -m benchmarks.validation_stopping --stopping validation --steps 1800 --patience 6   # the study protocol: 3x cap, stops
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stopping", choices=("fixed", "validation"), required=True)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument(
        "--checkpoint-every", type=int, default=50, help="steps per checkpoint segment"
    )
    parser.add_argument("--patience", type=int, default=6)
    args = parser.parse_args()

    from difftrade.runner import experiment
    from difftrade.tasks import configs

    raw = configs.load(ROOT / "experiments" / "study" / "chain.toml").to_dict()
    raw["grid"] = {**raw["grid"], "difficulties": [1, 4], "budgets": [512, 2048], "seeds": [0, 1]}
    raw["train"] = {
        **raw["train"],
        "steps": args.steps,
        "num_checkpoints": args.steps // args.checkpoint_every,
    }
    if args.stopping == "validation":
        raw["train"].update(stopping="validation", patience=args.patience, val_examples=256)
    raw["run"] = {**raw["run"], "chunk_size": 8}
    cfg = configs.from_dict(raw)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        ds = experiment.run(cfg, Path(out) / "run", progress=False)
    stopped = ds["stopped_step"].values.ravel().tolist() if "stopped_step" in ds else None
    print(
        f"{args.stopping} steps={args.steps}: {time.perf_counter() - start:.1f} s in process; stopped at {stopped}"
    )


if __name__ == "__main__":
    main()
