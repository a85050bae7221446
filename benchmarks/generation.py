"""Task generation throughput: examples per second at the hardest level of each task family.

Each family generates ``--n`` examples (default 1,000,000) through the data layer's own path,
``data.examples_at_level`` (key per example by ``fold_in``, ``vmap`` of ``sample``), compiled
once with ``jit`` and run in batches of ``--batch``; every batch is waited for with
``block_until_ready``. Compile time is measured separately (``lower().compile()``); the
throughput is the median over ``--repeats`` full passes, and the fastest pass is shown too (on
a shared machine it is the better estimate of what the code can do; the header prints the load
average so readers can judge).

Run from the repository root::

    python -m benchmarks.generation            # Markdown table on stdout
    python -m benchmarks.generation --n 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp

from difftrade.tasks import data, make_task

# (family, options): every family at its defaults, plus the answer formats that change length.
CASES: list[tuple[str, dict]] = [
    ("addition", {}),
    ("addition", {"scratchpad": True}),
    ("chain", {}),
    ("chain", {"cot": False}),
    ("pointer", {}),
    ("parity", {}),
    ("parity", {"cot": True}),
    ("sorting", {}),
]


def measure(name: str, options: dict, n: int, batch: int, repeats: int) -> dict:
    """Compile time and median wall time for ``n`` examples at ``d_max`` of one task."""
    task = make_task(name, **options)
    root = jax.random.key(0)
    level = jnp.int32(task.d_max)
    generate = jax.jit(data.examples_at_level, static_argnums=(0, 2))

    start = time.perf_counter()
    compiled = generate.lower(task, root, data.SPLITS["train"], level, jnp.arange(batch)).compile()
    compile_s = time.perf_counter() - start

    num_batches = -(-n // batch)
    offsets = [jnp.arange(batch) + b * batch for b in range(num_batches)]
    jax.block_until_ready(compiled(root, level, offsets[0]))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for indices in offsets:
            jax.block_until_ready(compiled(root, level, indices))
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    total = num_batches * batch
    return {
        "task": name + "".join(f" {k}={v}" for k, v in options.items()),
        "d": task.d_max,
        "seq_len": task.seq_len,
        "compile_s": compile_s,
        "seconds": seconds,
        "examples": total,
        "per_second": total / seconds,
        "best_per_second": total / min(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, default=1_000_000, help="examples per family (default 1e6)"
    )
    parser.add_argument("--batch", type=int, default=100_000, help="examples per compiled call")
    parser.add_argument(
        "--repeats", type=int, default=7, help="timed passes; the median (and the best) is reported"
    )
    args = parser.parse_args()
    for field in ("n", "batch", "repeats"):
        data.check_budget(getattr(args, field), field)

    device = jax.devices()[0]
    print(
        f"jax {jax.__version__}, backend {jax.default_backend()} ({device.device_kind}), "
        f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"n={args.n:,} per family, batch={args.batch:,}, median and best of {args.repeats} passes\n"
    )
    print(
        "| task | d | seq_len | compile (s) | median time for n (s) | examples/s (median) | examples/s (best) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, options in CASES:
        row = measure(name, options, args.n, args.batch, args.repeats)
        print(
            f"| {row['task']} | {row['d']} | {row['seq_len']} | {row['compile_s']:.2f} | "
            f"{row['seconds']:.3f} | {row['per_second']:,.0f} | {row['best_per_second']:,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
