"""Certification throughput on one device and on every device, side by side.

``difftrade bound`` splits each chunk's members over the member mesh (one device per core on a
CPU, as the command line sets it up). This trains one small grid, then certifies it in fresh
processes with 1 and with ``--devices`` CPU devices, alternating, ``--repeats`` times each. Each
process certifies twice and times the second call (compiled programs cached; the run directory's
``bounds.nc`` and partial chunks removed in between). It prints the median seconds, member-examples
per second (members × bound-set examples, S and T sets) and the ratio to one device. For scale it
also prints the forward-pass FLOP rate of certification (2·P FLOPs per token per weight draw,
P = parameters; every example is evaluated once per σ and draw plus once deterministically)
next to the rate of ``difftrade run`` on the same grid in the same processes (its training
FLOPs, 6·P per token per step, over its whole time, evaluation included).

    python -m benchmarks.certify_devices --devices 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

RAW = {
    "task": {"name": "addition", "d_min": 1, "d_max": 2},
    "grid": {"difficulties": [1, 2], "budgets": [64], "seeds": [0, 1, 2, 3], "learning_rate": 3e-3},
    "model": {"d_model": 32, "num_layers": 2, "num_heads": 2},
    "train": {"steps": 200, "batch_size": 16, "warmup_steps": 10, "num_checkpoints": 4},
    "eval": {"n_test": 64, "n_train_eval": 64, "batch_size": 64},
    "run": {"seed": 0, "chunk_size": 8},
}
SETTINGS = {
    "n_bound": 256,
    "num_draws": 1,
    "sigmas": [0.003, 0.01, 0.03],
    "prior_sigmas": [0.03, 0.1],
    "member_chunk": 8,
}

CHILD = textwrap.dedent("""
    import json, shutil, sys, time
    from pathlib import Path
    import jax
    from difftrade.runner import experiment
    from difftrade.tasks import configs
    from difftrade.certify import BoundSettings, certify_run
    run, raw, settings = Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
    settings = BoundSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})
    cfg = configs.from_dict(raw)
    train = []
    for k in range(2):  # the trainer's rate: the second run (compiled program cached)
        out = run.parent / f"train{k}"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter(); experiment.run(cfg, out, progress=False); train.append(time.perf_counter() - t)
    times = []
    for _ in range(2):
        (run / "bounds.nc").unlink(missing_ok=True)
        t = time.perf_counter(); certify_run(run, settings, progress=False); times.append(time.perf_counter() - t)
    print(json.dumps({"devices": jax.device_count(), "certify_s": times[1], "train_s": train[1]}))
""")


def parameters(raw: dict) -> int:
    import jax

    from difftrade.model.transformer import init_params
    from difftrade.tasks import configs

    cfg = configs.from_dict(raw)
    return sum(int(x.size) for x in jax.tree.leaves(init_params(cfg.model, jax.random.key(0))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from difftrade.runner import experiment
    from difftrade.tasks import configs
    from difftrade.tasks.configs import source_task

    work = Path(tempfile.mkdtemp(prefix="certify_devices_"))
    run = work / "run"
    experiment.run(configs.from_dict(RAW), run, progress=False)
    rows: dict[int, list[dict]] = {1: [], args.devices: []}
    for _ in range(args.repeats):
        for devices, measured in rows.items():
            env = {
                **os.environ,
                "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
                "JAX_PLATFORMS": "cpu",
            }
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(run), json.dumps(RAW), json.dumps(SETTINGS)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            measured.append(json.loads(out.stdout.strip().splitlines()[-1]))
    shutil.rmtree(work, ignore_errors=True)

    members = (
        len(RAW["grid"]["difficulties"]) * len(RAW["grid"]["budgets"]) * len(RAW["grid"]["seeds"])
    )
    examples = members * 2 * SETTINGS["n_bound"]  # S and T bound sets
    p, tokens = parameters(RAW), source_task(configs.from_dict(RAW)).seq_len
    passes = len(SETTINGS["sigmas"]) * SETTINGS["num_draws"] + 1
    train_flops = 6 * p * tokens * RAW["train"]["batch_size"] * RAW["train"]["steps"] * members
    print(
        f"{members} members, {SETTINGS['n_bound']} bound-set examples each from S and T, {p:,} parameters, "
        f"{tokens} tokens; median of {args.repeats} (seconds of the second call in each process)"
    )
    print(
        "| devices | certify s | member-examples/s | ratio | certify GFLOP/s | run s | run GFLOP/s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    base = statistics.median(r["certify_s"] for r in rows[1])
    for devices, rs in rows.items():
        c, t = (
            statistics.median(r["certify_s"] for r in rs),
            statistics.median(r["train_s"] for r in rs),
        )
        print(
            f"| {devices} | {c:.2f} | {examples / c:,.0f} | {base / c:.2f} | {2 * p * tokens * examples * passes / c / 1e9:.2f} | "
            f"{t:.2f} | {train_flops / t / 1e9:.2f} |"
        )


if __name__ == "__main__":
    main()
