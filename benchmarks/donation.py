"""What buffer donation could save: XLA's memory analysis of one compiled chunk program.

Every training step runs inside one ``jit(vmap(scan))``, so only the buffers at the program's
edge could be donated or dropped: the starting weights ``params0`` (fine-tuning) and the
``init_params`` the trainer returns next to the trained weights. This compiles the chunk program
five ways (nothing runs) and prints argument, output, temporary and aliased bytes
(``compiled.memory_analysis()``; any backend, CPU included). Result and verdict: docs/notes.md.

    python -m benchmarks.donation --members 64 --d-model 128
"""

from __future__ import annotations

import argparse
import dataclasses


def main() -> None:
    import jax
    import jax.numpy as jnp

    from difftrade.config.model_config import ModelConfig
    from difftrade.config.train_config import TrainConfig
    from difftrade.tasks.addition import Addition
    from difftrade.train.trainer import make_member_trainer, member_init_params

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=64)
    p.add_argument("--d-model", type=int, default=128)
    a = p.parse_args()
    task = Addition(d_max=8)
    model = ModelConfig(
        seq_len=task.seq_len - 1,
        d_model=a.d_model,
        compute_dtype="bfloat16",
        attention="xla",
        mlp="xla",
    )
    key = jax.random.key(0)
    member = make_member_trainer(
        task, model, TrainConfig(steps=10, batch_size=64, warmup_steps=2, num_checkpoints=2), key
    )
    init = jax.vmap(lambda s: member_init_params(model, key, s))
    m = a.members
    hyper = (
        jax.ShapeDtypeStruct((m, task.num_levels), jnp.float32),
        jax.ShapeDtypeStruct((m,), jnp.int32),
        jax.ShapeDtypeStruct((m,), jnp.int32),
        jax.ShapeDtypeStruct((m,), jnp.float32),
    )
    params0 = jax.eval_shape(init, jnp.zeros(m, jnp.int32))

    def chunk(from_base: bool, keep_init: bool):
        def run(w, b, s, lr, *start):
            out = jax.vmap(member)(start[0] if from_base else init(s), w, b, s, lr)
            return out if keep_init else dataclasses.replace(out, init_params=None)

        return run

    cases = [
        ("from scratch, returns init_params", chunk(False, True), hyper, ()),
        ("from scratch, no init_params", chunk(False, False), hyper, ()),
        ("fine-tuning, returns init_params", chunk(True, True), (*hyper, params0), ()),
        ("fine-tuning, no init_params", chunk(True, False), (*hyper, params0), ()),
        (
            "fine-tuning, no init_params, params0 donated",
            chunk(True, False),
            (*hyper, params0),
            (4,),
        ),
    ]
    mib = 2.0**20
    for name, fn, args, donate in cases:
        s = jax.jit(fn, donate_argnums=donate).lower(*args).compile().memory_analysis()
        total = (
            s.argument_size_in_bytes
            + s.output_size_in_bytes
            + s.temp_size_in_bytes
            - s.alias_size_in_bytes
        )
        print(
            f"{name:46s} arguments {s.argument_size_in_bytes / mib:8.1f}  outputs {s.output_size_in_bytes / mib:8.1f}  "
            f"temporaries {s.temp_size_in_bytes / mib:8.1f}  aliased {s.alias_size_in_bytes / mib:8.1f}  total {total / mib:8.1f} MiB",
            flush=True,
        )


if __name__ == "__main__":
    main()
