"""Fused GPU kernels (Pallas, Triton backend) for the memory-bound parts of a small transformer.

A training step of a width-128 model moves ~7x more time through device memory than through
matrix units (``benchmarks/roofline.py``); most of that traffic is the MLP's ``[N, 4D]`` hidden
activation, written and read several times in forward and backward. ``fused_mlp`` never stores
it: every kernel keeps a block of tokens on chip, walks over blocks of the hidden layer and
recomputes ``h = x @ w1 + b1`` where it needs it (the backward pays ~50% more MLP FLOPs for
that, which is cheap when memory is the limit).

Kernels (grids in parentheses; ``bm`` tokens, ``bh`` hidden units per block):

* forward (N/bm): ``y = gelu(x w1 + b1) w2 + b2``, accumulated over hidden blocks;
* input gradient (N/bm): ``dx = ((dy w2ᵀ) * gelu'(h)) w1ᵀ``, accumulated over hidden blocks;
* weight gradients (F/bh): ``dw1 = xᵀ dh``, ``dw2 = gelu(h)ᵀ dy``, ``db1 = Σ dh``, accumulated
  over token blocks (each program owns one hidden block: no atomics).

GELU is the tanh approximation (``jax.nn.gelu``'s default). All dots accumulate in float32;
outputs have the input dtype. Off a GPU the kernels run only in Pallas' interpret mode (tests).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl


def _triton(d: int) -> Any:
    """Triton backend (Mosaic GPU cannot batch a member axis into the grid). More warps for wider
    models keep the float32 accumulators in registers; untuned heuristics (benchmarks/NOTES.md)."""
    from jax.experimental.pallas import triton as pltriton  # imported only when a kernel is built

    return pltriton.CompilerParams(num_warps=4 if d <= 128 else 8, num_stages=2)

_C = math.sqrt(2.0 / math.pi)


def _gelu_and_grad(h: jax.Array) -> tuple[jax.Array, jax.Array]:
    """tanh-GELU and its derivative, float32 in and out."""
    inner = _C * (h + 0.044715 * h * h * h)
    t = jnp.tanh(inner)
    gelu = 0.5 * h * (1.0 + t)
    grad = 0.5 * (1.0 + t) + 0.5 * h * (1.0 - t * t) * _C * (1.0 + 3 * 0.044715 * h * h)
    return gelu, grad


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.dot(a, b, preferred_element_type=jnp.float32)


def _hidden(x, w1_ref, b1_ref, j, bh):
    """Pre-activation of hidden block ``j``: float32 ``[bm, bh]``."""
    cols = pl.ds(j * bh, bh)
    return _dot(x, w1_ref[:, cols]) + b1_ref[cols].astype(jnp.float32)[None, :]


def _forward_kernel(x_ref, w1_ref, b1_ref, w2_ref, b2_ref, y_ref, *, bh: int):
    x = x_ref[...]

    def body(j, acc):
        g, _ = _gelu_and_grad(_hidden(x, w1_ref, b1_ref, j, bh))
        return acc + _dot(g.astype(x.dtype), w2_ref[pl.ds(j * bh, bh), :])

    acc = jax.lax.fori_loop(0, w1_ref.shape[1] // bh, body, jnp.zeros(y_ref.shape, jnp.float32))
    y_ref[...] = (acc + b2_ref[...].astype(jnp.float32)[None, :]).astype(y_ref.dtype)


def _dx_kernel(x_ref, dy_ref, w1_ref, b1_ref, w2_ref, dx_ref, *, bh: int):
    x, dy = x_ref[...], dy_ref[...]

    def body(j, acc):
        _, grad = _gelu_and_grad(_hidden(x, w1_ref, b1_ref, j, bh))
        cols = pl.ds(j * bh, bh)
        dh = (_dot(dy, w2_ref[cols, :].T) * grad).astype(x.dtype)
        return acc + _dot(dh, w1_ref[:, cols].T)

    acc = jax.lax.fori_loop(0, w1_ref.shape[1] // bh, body, jnp.zeros(dx_ref.shape, jnp.float32))
    dx_ref[...] = acc.astype(dx_ref.dtype)


def _dw_kernel(x_ref, dy_ref, w1_ref, b1_ref, w2_ref, dw1_ref, db1_ref, dw2_ref, *, bm: int):
    w1, b1 = w1_ref[...], b1_ref[...].astype(jnp.float32)[None, :]  # this program's hidden block
    w2 = w2_ref[...]

    def body(i, carry):
        dw1, db1, dw2 = carry
        rows = pl.ds(i * bm, bm)
        x, dy = x_ref[rows, :], dy_ref[rows, :]
        g, grad = _gelu_and_grad(_dot(x, w1) + b1)
        dh = _dot(dy, w2.T) * grad
        dw1 = dw1 + _dot(x.T, dh.astype(x.dtype))
        dw2 = dw2 + _dot(g.astype(x.dtype).T, dy)
        return dw1, db1 + jnp.sum(dh, axis=0), dw2

    zeros = (jnp.zeros(dw1_ref.shape, jnp.float32), jnp.zeros(db1_ref.shape, jnp.float32), jnp.zeros(dw2_ref.shape, jnp.float32))
    dw1, db1, dw2 = jax.lax.fori_loop(0, x_ref.shape[0] // bm, body, zeros)
    dw1_ref[...], db1_ref[...], dw2_ref[...] = dw1.astype(dw1_ref.dtype), db1.astype(db1_ref.dtype), dw2.astype(dw2_ref.dtype)


def _blocks(f: int) -> tuple[int, int]:
    """Token and hidden block sizes (powers of two; Triton needs them)."""
    return 64, min(128, f)


def _dw_hidden_block(d: int, f: int) -> int:
    """Hidden block of the weight-gradient kernel: its two float32 accumulators ``[d, bh]`` and
    ``[bh, d]`` stay at 64 KiB (bh 64 at d=128, 32 at d=256)."""
    return min(f, max(16, 8192 // d))


def _full(shape: tuple[int, ...]) -> pl.BlockSpec:
    return pl.BlockSpec(shape, lambda *_: (0,) * len(shape))


def _rows(bm: int, d: int) -> pl.BlockSpec:
    """Program ``i`` sees token rows ``[i*bm, (i+1)*bm)`` of an ``[N, d]`` array."""
    return pl.BlockSpec((bm, d), lambda i: (i, 0))


def check_shapes(d: int, f: int) -> None:
    """Triton tiles need power-of-two widths >= 16."""
    for name, v in (("d_model", d), ("mlp hidden width", f)):
        if v < 16 or v & (v - 1):
            raise ValueError(f"model.mlp='pallas' needs a power-of-two {name} >= 16, got {v}; allowed: 16, 32, 64, ...")


def _row_call(kernel, in_specs, x, bm, interpret, name):
    """A kernel over ``bm``-row token blocks of ``x [N, d]``; its output has the shape and dtype of ``x``."""
    n, d = x.shape
    return pl.pallas_call(
        kernel,
        grid=(n // bm,),
        in_specs=in_specs,
        out_specs=_rows(bm, d),
        out_shape=jax.ShapeDtypeStruct((n, d), x.dtype),
        interpret=interpret,
        compiler_params=_triton(d),
        name=name,
    )


def _forward(x, w1, b1, w2, b2, interpret):
    d, f = w1.shape
    bm, bh = _blocks(f)
    specs = [_rows(bm, d), _full((d, f)), _full((f,)), _full((f, d)), _full((d,))]
    return _row_call(functools.partial(_forward_kernel, bh=bh), specs, x, bm, interpret, "fused_mlp_forward")(x, w1, b1, w2, b2)


def _backward(x, w1, b1, w2, dy, interpret):
    n, d = x.shape
    f = w1.shape[1]
    bm, bh = _blocks(f)
    specs = [_rows(bm, d), _rows(bm, d), _full((d, f)), _full((f,)), _full((f, d))]
    dx = _row_call(functools.partial(_dx_kernel, bh=bh), specs, x, bm, interpret, "fused_mlp_dx")(x, dy, w1, b1, w2)
    bh = _dw_hidden_block(d, f)
    dw1, db1, dw2 = pl.pallas_call(
        functools.partial(_dw_kernel, bm=bm),
        grid=(f // bh,),
        in_specs=[_full((n, d)), _full((n, d)), pl.BlockSpec((d, bh), lambda j: (0, j)),
                  pl.BlockSpec((bh,), lambda j: (j,)), pl.BlockSpec((bh, d), lambda j: (j, 0))],
        out_specs=[pl.BlockSpec((d, bh), lambda j: (0, j)), pl.BlockSpec((bh,), lambda j: (j,)),
                   pl.BlockSpec((bh, d), lambda j: (j, 0))],
        out_shape=[jax.ShapeDtypeStruct((d, f), w1.dtype), jax.ShapeDtypeStruct((f,), b1.dtype),
                   jax.ShapeDtypeStruct((f, d), w2.dtype)],
        interpret=interpret,
        compiler_params=_triton(d),
        name="fused_mlp_dw",
    )(x, dy, w1, b1, w2)
    return dx, dw1, db1, dw2, jnp.sum(dy.astype(jnp.float32), axis=0).astype(dy.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _fused_mlp(x, w1, b1, w2, b2, interpret):
    return _forward(x, w1, b1, w2, b2, interpret)


def _fused_mlp_fwd(x, w1, b1, w2, b2, interpret):
    return _forward(x, w1, b1, w2, b2, interpret), (x, w1, b1, w2)


def _fused_mlp_bwd(interpret, residuals, dy):
    x, w1, b1, w2 = residuals
    return _backward(x, w1, b1, w2, dy, interpret)


_fused_mlp.defvjp(_fused_mlp_fwd, _fused_mlp_bwd)


def fused_mlp(x: jax.Array, w1: jax.Array, b1: jax.Array, w2: jax.Array, b2: jax.Array, interpret: bool = False) -> jax.Array:
    """``gelu(x @ w1 + b1) @ w2 + b2`` (tanh GELU) without storing the hidden layer; differentiable.

    x ``[N, D]``, w1 ``[D, F]``, b1 ``[F]``, w2 ``[F, D]``, b2 ``[D]`` (all one dtype) -> ``[N, D]``.
    D and F powers of two >= 16; N is zero-padded to the token block (64) and cropped back.
    Vmappable (a member axis becomes a grid axis).
    """
    n, d = x.shape
    check_shapes(d, w1.shape[1])
    bm, _ = _blocks(w1.shape[1])
    padded = -(-n // bm) * bm
    if padded != n:
        x = jnp.pad(x, ((0, padded - n), (0, 0)))
    return _fused_mlp(x, w1, b1, w2, b2, interpret)[:n]
