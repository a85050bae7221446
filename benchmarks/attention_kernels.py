"""The attention half of a block, three ways, and a launch-parameter sweep of the fused one (GPU).

Times one vmapped attention half at the trainer's shapes,
``x [M, B, T, D] -> x + attention(LN(x) wqkv + bqkv) wo + bo`` with per-member weights (M members,
B sequences of T positions, ``num_heads`` heads, bfloat16), forward alone and forward + backward
(gradient of the output's sum w.r.t. x and all weights):

* ``xla``: what ``model.attention = "xla"`` runs (flax-style LayerNorm, dense, ``jax.nn.dot_product_attention``);
* ``pallas_mha``: the same with JAX's Pallas flash attention in the middle (``attention = "pallas"``);
* ``fused_*``: ``difftrade.kernels.fused_attention`` under each ``AttentionTuning`` of a small grid.

Every variant is checked against ``xla`` before it is timed (output and gradients within bf16
tolerance). Medians of ``--repeats`` timed calls after one warm-up, each waited for.

Usage (repo root, GPU): ``python -m benchmarks.attention_kernels --out attention.json``
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.mlp_kernels import report, time_variants
from difftrade.kernels import AttentionTuning, fused_attention
from difftrade.model import causal_attention, kernel_mode

# (block_rows, num_warps, num_stages)
GRID = [(64, 4, 2), (32, 4, 2), (128, 4, 2), (64, 8, 2), (64, 4, 1), (64, 4, 3), (128, 8, 2)]


def _layer_norm(x, scale, bias, eps=1e-6):
    """flax's LayerNorm: float32 statistics, fast variance, output in x's dtype."""
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, axis=-1, keepdims=True)
    var = jnp.maximum(jnp.mean(xf * xf, axis=-1, keepdims=True) - mean * mean, 0.0)
    return ((xf - mean) * jax.lax.rsqrt(var + eps) * scale + bias).astype(x.dtype)


def _unfused(impl: str, heads: int):
    def half(x, scale, bias, wqkv, bqkv, wo, bo):
        b, t, d = x.shape
        qkv = (_layer_norm(x, scale, bias) @ wqkv + bqkv).reshape(b, t, 3, heads, d // heads)
        o = causal_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], impl)
        return x + o.reshape(b, t, d) @ wo + bo

    return half


def sweep(d: int, members: int, batch: int, seq: int, heads: int, repeats: int, interpret: bool = False) -> list[dict]:
    ks = jax.random.split(jax.random.key(d), 7)
    dt = jnp.bfloat16
    args = (
        jax.random.normal(ks[0], (members, batch, seq, d), dt),
        (1.0 + jax.random.normal(ks[1], (members, d)) / 4).astype(dt),
        (jax.random.normal(ks[2], (members, d)) / 4).astype(dt),
        (jax.random.normal(ks[3], (members, d, 3 * d)) / np.sqrt(d)).astype(dt),
        (jax.random.normal(ks[4], (members, 3 * d)) / 4).astype(dt),
        (jax.random.normal(ks[5], (members, d, d)) / np.sqrt(d)).astype(dt),
        (jax.random.normal(ks[6], (members, d)) / 4).astype(dt),
    )
    variants = [("xla", _unfused("xla", heads), None), ("pallas_mha", _unfused("pallas", heads), None)]
    for r, w, st in GRID:
        tuning = AttentionTuning(r, w, st)
        half = functools.partial(fused_attention, num_heads=heads, interpret=interpret, tuning=tuning)
        variants.append((f"fused_rows{r}_w{w}_s{st}", half, tuning))
    with kernel_mode("interpret" if interpret else "auto"):
        return time_variants(d, args, variants, repeats)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-models", default="128,256")
    p.add_argument("--members", type=int, default=256)
    p.add_argument("--batch", type=int, default=64, help="sequences per member")
    p.add_argument("--seq", type=int, default=28, help="positions per sequence (the harness's addition task)")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--interpret", action="store_true", help="Pallas interpreter (CPU check of the script, not timing)")
    p.add_argument("--out")
    a = p.parse_args()
    report([r for d in a.d_models.split(",") for r in sweep(int(d), a.members, a.batch, a.seq, a.heads, a.repeats, a.interpret)], a.out)


if __name__ == "__main__":
    main()
