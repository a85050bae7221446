"""Roofline estimate of one vmapped training step: is it bound by FLOPs or by memory traffic?

For a population of M members (the harness's shapes: addition d_max=8, 28 input tokens), this
compiles one training step (forward + backward + clipped AdamW, ``jit(vmap(step))``) on the
local backend and reads XLA's own cost model (``compiled.cost_analysis()``: FLOPs and bytes
accessed, after XLA's fusion on *this* backend), then converts both to a time on a target
accelerator (default: an H100's 800 TFLOP/s measured bf16 matmul peak and 3.35 TB/s HBM):

    t_flops = FLOPs / peak,  t_bytes = bytes / bandwidth,  MFU ceiling = t_flops / max(t_flops, t_bytes)

Next to XLA's count it prints an analytic *activation-traffic* model of an XLA-style step, where
every intermediate tensor lives in device memory: per token and layer the forward pass writes
about ``18 d`` values in the compute dtype (LN 1, QKV 3, attention output 1, projection 1,
residual 1, LN 1, MLP up 4 and GELU 4, down 1, residual 1) plus ``3 H T`` for the attention
scores (float32) and probabilities; each is written and read about six times over forward and
backward (forward write + read, saved for backward, gradient write + reads). The optimiser adds
28 bytes per parameter (float32 params, grads and two moments read, three written). This
is the model behind the predictions in the performance log of ``docs/notes.md``.

It is an estimate: XLA on CPU fuses differently from XLA on a GPU (the GPU usually fuses more,
so CPU bytes overstate the GPU's), and the MFU numerator here is XLA's FLOP count, not the
harness's documented count. Use it to predict, then measure with ``benchmarks.trainer``.

    python -m benchmarks.roofline --d-model 128 256 --members 256 [--dtype bfloat16]
"""

from __future__ import annotations

import argparse


def step_cost(d_model: int, members: int, batch: int, dtype: str, attention: str = "xla") -> dict:
    """XLA's FLOPs and bytes accessed for one vmapped training step of ``members`` members."""
    import jax
    import jax.numpy as jnp

    from difftrade.config.model_config import ModelConfig
    from difftrade.config.train_config import TrainConfig
    from difftrade.model.transformer import graphdef
    from difftrade.tasks.addition import Addition
    from difftrade.train.trainer import masked_loss, member_init_params, optimizer

    task = Addition(d_max=8)
    cfg = ModelConfig(
        seq_len=task.seq_len - 1, d_model=d_model, compute_dtype=dtype, attention=attention
    )
    gdef, tx = graphdef(cfg), optimizer(TrainConfig(steps=100, warmup_steps=10))
    grad_fn = jax.value_and_grad(lambda p, t, m: masked_loss(gdef, p, t, m), has_aux=True)

    def step(params, opt_state, tokens, mask):
        (loss, _), grads = grad_fn(params, tokens, mask)
        updates, opt_state = tx.update(grads, opt_state, params)
        return jax.tree.map(lambda p, u: p - 1e-3 * u, params, updates), opt_state, loss

    seeds = jnp.arange(members)
    params = jax.eval_shape(
        jax.vmap(lambda s: member_init_params(cfg, jax.random.key(0), s)), seeds
    )
    opt_state = jax.eval_shape(jax.vmap(tx.init), params)
    tokens = jax.ShapeDtypeStruct((members, batch, task.seq_len), jnp.int32)
    mask = jax.ShapeDtypeStruct((members, batch, task.seq_len), jnp.bool_)
    compiled = jax.jit(jax.vmap(step)).lower(params, opt_state, tokens, mask).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {
        "flops": float(cost["flops"]),
        "bytes": float(cost["bytes accessed"]),
        "backend": jax.default_backend(),
    }


def analytic_cost(
    d_model: int, members: int, batch: int, dtype: str, layers: int = 2, heads: int = 4
) -> dict:
    """Harness FLOPs and the activation-traffic bytes of one step (see the module docstring)."""
    from difftrade.config.model_config import ModelConfig
    from difftrade.tasks.addition import Addition

    t = Addition(d_max=8).seq_len - 1
    cfg = ModelConfig(seq_len=t, d_model=d_model, num_layers=layers, num_heads=heads)
    tokens = members * batch * t
    flops = 3.0 * cfg.flops_per_token() * tokens
    width = 2 if dtype == "bfloat16" else 4
    per_token_layer = 6 * (18 * d_model * width + 3 * heads * t * 4)
    optimiser = 28 * cfg.num_params() * members
    return {
        "flops": flops,
        "bytes": float(per_token_layer * tokens * layers + optimiser),
        "backend": "analytic",
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-model", type=int, nargs="+", default=[128, 256])
    p.add_argument("--members", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    p.add_argument(
        "--peak-tflops", type=float, default=800.0, help="target matmul peak (H100 bf16, measured)"
    )
    p.add_argument(
        "--bandwidth-tbs", type=float, default=3.35, help="target memory bandwidth (H100 SXM HBM3)"
    )
    args = p.parse_args(argv)
    print(
        f"target: {args.peak_tflops:g} TFLOP/s, {args.bandwidth_tbs:g} TB/s; M={args.members}, batch {args.batch}, {args.dtype}"
    )
    print(
        "| d_model | backend | GFLOP/step | GB/step | FLOP/byte | t_flops (ms) | t_bytes (ms) | MFU ceiling |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    costs = [
        (d, f(d, args.members, args.batch, args.dtype))
        for d in args.d_model
        for f in (step_cost, analytic_cost)
    ]
    for d, c in costs:
        t_flops = c["flops"] / (args.peak_tflops * 1e12)
        t_bytes = c["bytes"] / (args.bandwidth_tbs * 1e12)
        print(
            f"| {d} | {c['backend']} | {c['flops'] / 1e9:,.0f} | {c['bytes'] / 1e9:,.1f} | {c['flops'] / c['bytes']:.0f} "
            f"| {1e3 * t_flops:.2f} | {1e3 * t_bytes:.2f} | {100 * t_flops / max(t_flops, t_bytes):.1f}% |"
        )


if __name__ == "__main__":
    main()
