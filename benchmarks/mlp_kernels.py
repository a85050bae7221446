"""Launch-parameter sweep of the fused MLP kernels against XLA's unfused MLP half (GPU).

Times one vmapped MLP half of a pre-LayerNorm block at the trainer's shapes,
``x [M, N, D] -> x + gelu(LN(x) w1 + b1) w2 + b2`` with per-member weights (M members, N = batch
x positions tokens, hidden 4D, bfloat16), forward alone and forward + backward (gradient of the
output's sum w.r.t. x and all weights), for XLA's expression (which fuses the LayerNorm and the
residual into its GEMMs) and for ``difftrade.model.kernels.fused_mlp`` under each ``MlpTuning`` of a
small grid.
Every variant is checked against the XLA path before it is timed (output and gradients within
bf16 tolerance). Medians of ``--repeats`` timed calls after one warm-up, each waited for.

Usage (repo root, GPU): ``python -m benchmarks.mlp_kernels --out mlp.json``
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from difftrade.model.kernels import MlpTuning, fused_mlp

# (block_tokens, block_hidden, block_hidden_dw, num_warps, num_stages[, block_tokens_dw, num_warps_dw]);
# 0 = default for the width (the last two: tied to block_tokens / num_warps)
GRID = [
    (64, 128, 0, 0, 2),
    (64, 128, 0, 0, 1),
    (64, 128, 0, 0, 3),
    (64, 64, 0, 0, 2),
    (128, 128, 0, 8, 2),
    (128, 64, 0, 8, 2),
    (128, 128, 0, 4, 1),
    (32, 128, 0, 4, 2),
    (64, 128, 32, 0, 2),
    (64, 128, 128, 8, 2),
    (64, 64, 0, 8, 1),
    (64, 32, 0, 4, 2),
    (32, 64, 0, 4, 1),
    # the weight-gradient kernel alone (the largest kernel of a d=128 step, docs/notes.md): its own
    # token block (larger dots per loop step) and warps, on the 64 x 64 default
    (64, 64, 0, 0, 2, 128, 0),
    (64, 64, 0, 0, 2, 128, 8),
    (64, 64, 0, 0, 2, 256, 8),
    (64, 64, 0, 0, 2, 32, 0),
    (64, 64, 128, 0, 2, 128, 8),
]


def _xla_mlp(x, scale, bias, w1, b1, w2, b2, eps=1e-6):
    """What the model's XLA path computes (flax's LayerNorm: float32 statistics, fast variance)."""
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, axis=-1, keepdims=True)
    var = jnp.maximum(jnp.mean(xf * xf, axis=-1, keepdims=True) - mean * mean, 0.0)
    xn = ((xf - mean) * jax.lax.rsqrt(var + eps) * scale + bias).astype(x.dtype)
    return x + jax.nn.gelu(xn @ w1 + b1) @ w2 + b2


def _timed(fn, args, repeats: int) -> tuple[float, float, object]:
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), first, out


def _programs(mlp):
    """(forward, forward+backward) jitted over the member axis."""
    fwd = jax.jit(jax.vmap(mlp))
    grad = jax.jit(
        jax.vmap(jax.grad(lambda *a: jnp.sum(mlp(*a).astype(jnp.float32)), argnums=tuple(range(7))))
    )
    return fwd, grad


def sweep(d: int, members: int, tokens: int, repeats: int, interpret: bool = False) -> list[dict]:
    f = 4 * d
    ks = jax.random.split(jax.random.key(d), 7)
    dt = jnp.bfloat16
    args = (
        jax.random.normal(ks[0], (members, tokens, d), dt),
        (1.0 + jax.random.normal(ks[5], (members, d)) / 4).astype(dt),
        (jax.random.normal(ks[6], (members, d)) / 4).astype(dt),
        (jax.random.normal(ks[1], (members, d, f)) / np.sqrt(d)).astype(dt),
        (jax.random.normal(ks[2], (members, f)) / 3).astype(dt),
        (jax.random.normal(ks[3], (members, f, d)) / np.sqrt(f)).astype(dt),
        jax.random.normal(ks[4], (members, d), dt),
    )
    variants = [("xla", _xla_mlp, None)]
    for row in GRID:
        bm, bh, bhd, warps, stages, bmd, warps_dw = (*row, 0, 0)[:7]
        tuning = MlpTuning(bm, bh, bhd, warps, stages, bmd, warps_dw).resolve(d, f)
        name = f"bm{bm}_bh{bh}_dw{bhd or 'auto'}_w{warps or 'auto'}_s{stages}" + (
            f"_dwbm{bmd}_dww{warps_dw or 'auto'}" if bmd else ""
        )
        variants.append(
            (name, functools.partial(fused_mlp, interpret=interpret, tuning=tuning), tuning)
        )
    return time_variants(d, args, variants, repeats)


def time_variants(d: int, args: tuple, variants: list[tuple], repeats: int) -> list[dict]:
    """Time each ``(name, fn, tuning)`` of ``variants`` on ``args`` (vmapped, forward and forward +
    backward); the first is the reference the others' outputs and gradients are checked against.
    A variant that fails to launch becomes a row with its error."""
    rows: list[dict] = []
    ref = None
    for name, fn, tuning in variants:
        fwd, grad = _programs(fn)
        try:
            t_fwd, _, y = _timed(fwd, args, repeats)
            t_all, first, g = _timed(grad, args, repeats)
        except Exception as e:  # noqa: BLE001 - a launch that does not fit is a result, not a crash
            rows.append(
                {"variant": name, "d_model": d, "error": f"{type(e).__name__}: {str(e)[:200]}"}
            )
            print(f"d={d} {name}: failed: {str(e)[:160]}", flush=True)
            continue
        ref = ref or (y, *g)
        err = max(
            float(jnp.max(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32))))
            / (float(jnp.max(jnp.abs(b.astype(jnp.float32)))) + 1e-6)
            for a, b in zip((y, *g), ref)
        )
        row = {
            "variant": name,
            "d_model": d,
            "fwd_ms": 1e3 * t_fwd,
            "fwd_bwd_ms": 1e3 * t_all,
            "first_s": first,
            "max_rel_err": err,
        }
        if tuning is not None:
            row["tuning"] = dataclasses.asdict(tuning)
        rows.append(row)
        print(
            f"d={d} {name}: fwd {row['fwd_ms']:.3f} ms, fwd+bwd {row['fwd_bwd_ms']:.3f} ms "
            f"({rows[0]['fwd_bwd_ms'] / row['fwd_bwd_ms']:.2f}x {rows[0]['variant']}), max rel err {err:.3g}",
            flush=True,
        )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| d_model | variant | fwd (ms) | fwd+bwd (ms) | fwd+bwd vs xla | max rel err |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    base = {r["d_model"]: r["fwd_bwd_ms"] for r in rows if r["variant"] == "xla"}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['d_model']} | {r['variant']} | failed: {r['error'][:100]} ||||")
            continue
        lines.append(
            f"| {r['d_model']} | {r['variant']} | {r['fwd_ms']:.3f} | {r['fwd_bwd_ms']:.3f} | "
            f"{base[r['d_model']] / r['fwd_bwd_ms']:.2f}x | {r.get('max_rel_err', 0.0):.2g} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-models", default="128,256")
    p.add_argument("--members", type=int, default=256)
    p.add_argument(
        "--tokens", type=int, default=64 * 28, help="tokens per member (batch x positions)"
    )
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument(
        "--interpret",
        action="store_true",
        help="Pallas interpreter (CPU check of the script, not timing)",
    )
    p.add_argument("--out")
    a = p.parse_args()
    report(
        [
            r
            for d in a.d_models.split(",")
            for r in sweep(int(d), a.members, a.tokens, a.repeats, a.interpret)
        ],
        a.out,
    )


def report(rows: list[dict], out: str | None) -> None:
    """Print the markdown table; write the rows, device and jax version to ``out`` (JSON)."""
    print(markdown(rows))
    if out:
        with open(out, "w") as fh:
            json.dump(
                {"device": str(jax.devices()[0]), "jax": jax.__version__, "rows": rows},
                fh,
                indent=1,
            )


if __name__ == "__main__":
    main()
