"""One grid over several processes (hosts) with ``jax.distributed``.

JAX is multi-controller: every process runs the same Python program. In a difftrade run each
process builds the same population, calls the same compiled trainer on *global* arrays whose
member axis spans every process's devices (``train.shard_members``), and gathers the
per-member results back to host memory (``train.mesh.to_host``). Only process 0 touches the run
directory; what it finds there (the members still to train) is broadcast to the others, so the
other hosts need neither the directory nor a shared filesystem. With one process every
function here is the identity (or ``np.asarray``).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils


def initialize(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """Join a multi-process job; call before anything touches a device.

    ``coordinator`` is ``host:port`` of process 0. With all three left ``None``,
    ``jax.distributed.initialize`` detects the cluster itself (SLURM, Open MPI, Cloud TPU, ...).
    CPU processes exchange data through gloo.
    """
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError(
            f"--coordinator={coordinator!r}, --num-processes={num_processes!r}, --process-id={process_id!r}; "
            "allowed: all three (explicit cluster) or none (auto-detected cluster)"
        )
    if num_processes is not None and not (num_processes >= 1 and 0 <= process_id < num_processes):
        raise ValueError(
            f"--process-id={process_id!r} with --num-processes={num_processes!r}; "
            "allowed: num_processes >= 1 and 0 <= process_id < num_processes"
        )
    try:  # CPU processes need a collectives library; GPUs and TPUs bring their own
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (
        AttributeError
    ):  # a jax without the option (where CPU collectives are configured otherwise)
        pass
    jax.distributed.initialize(coordinator, num_processes, process_id)


def is_main() -> bool:
    """True on the process that writes files and prints (process 0)."""
    return jax.process_index() == 0


def broadcast(values: np.ndarray) -> np.ndarray:
    """Process 0's ``values`` on every process (same shape and dtype everywhere)."""
    return np.asarray(multihost_utils.broadcast_one_to_all(np.asarray(values)))
