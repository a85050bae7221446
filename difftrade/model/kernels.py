"""Fused GPU kernels (Pallas, Triton backend) for the memory-bound parts of a small transformer.

A training step of a width-128 model moves ~7x more time through device memory than through
matrix units (``benchmarks/roofline.py``); most of that traffic is the MLP's ``[N, 4D]`` hidden
activation, written and read several times in forward and backward. ``fused_mlp`` computes a
pre-LayerNorm block's whole MLP half, ``y = x + mlp(LayerNorm(x))``, and never stores the hidden
layer: every kernel keeps a block of token rows (whole rows, so the LayerNorm statistics are
local) on chip, walks over blocks of the hidden layer and recomputes ``h = xn @ w1 + b1`` where
it needs it (the backward pays ~50% more MLP FLOPs for that, which is cheap when memory is the
limit). ``xn = LN(x)`` is written once, in the backward, by the input-gradient kernel for the
weight-gradient kernel: recomputing it there made that kernel 3x slower on the H100 (likely its
float32 LayerNorm temporaries competing for registers with two float32 accumulators). Taking
the LayerNorm and the residual inside matters: XLA fuses them into its GEMMs' prologues and
epilogues, and a custom call is a fusion barrier (an MLP-only kernel measured 1.55x XLA alone
but 1.06x in the model: docs/notes.md).

Kernels (grids in parentheses; ``bm`` tokens, ``bh`` hidden units per block):

* forward (N/bm): ``y = x + gelu(xn w1 + b1) w2 + b2``, accumulated over hidden blocks;
* input gradient (N/bm): ``dxn = ((dy w2ᵀ) * gelu'(h)) w1ᵀ`` accumulated over hidden blocks, then
  the LayerNorm backward and the residual, ``dx = dy + LN'(dxn)``; also this block's partial
  sums of the LayerNorm scale and bias gradients (summed over blocks outside) and ``xn``;
* weight gradients (F/bh): ``dw1 = xnᵀ dh``, ``dw2 = gelu(h)ᵀ dy``, ``db1 = Σ dh``, accumulated
  over token blocks (each program owns one hidden block: no atomics).

The LayerNorm is flax's (statistics in float32, variance E[x²] − E[x]² clipped at 0).

GELU is the tanh approximation (``jax.nn.gelu``'s default). All dots accumulate in float32;
outputs have the input dtype. Off a GPU the kernels run only in Pallas' interpret mode (tests).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from difftrade.config.model_config import check_shapes, is_tile_width


@dataclasses.dataclass(frozen=True)
class MlpTuning:
    """Launch parameters of the fused MLP kernels; 0 means "the default for this width".

    block_tokens: token rows per program of the forward and input-gradient kernels (``bm``);
    block_hidden: hidden units per loop step of those kernels (``bh``);
    block_hidden_dw: hidden units per program of the weight-gradient kernel;
    num_warps, num_stages: Triton's. All block sizes are powers of two >= 16.
    block_tokens_dw, num_warps_dw: the weight-gradient kernel's own token rows per loop step and
    warps (0: tied to ``block_tokens`` / ``num_warps``), so a sweep can tune that kernel alone.
    """

    block_tokens: int = 64
    block_hidden: int = (
        64  # H100 sweep (benchmarks/mlp_kernels.py): 1.55x XLA at d=128, 128 gave 1.25x
    )
    block_hidden_dw: int = 0
    num_warps: int = 0
    num_stages: int = 2
    block_tokens_dw: int = 0
    num_warps_dw: int = 0

    def resolve(self, d: int, f: int, itemsize: int = 2) -> MlpTuning:
        """Concrete values for width ``d``, hidden width ``f`` and ``itemsize``-byte inputs.

        Defaults are filled in and block sizes clipped to ``f``; then blocks are halved (hidden
        first, then tokens) until every kernel's estimated shared memory fits (``smem_bytes``).
        Raises ValueError for a block size that is not a power of two >= 16.
        """
        tied = (
            not self.block_tokens_dw
        )  # the weight-gradient kernel's token block follows block_tokens
        warps = self.num_warps or (4 if d <= 128 else 8)
        t = MlpTuning(
            block_tokens=self.block_tokens,
            block_hidden=min(self.block_hidden, f),
            # the weight-gradient kernel's two float32 accumulators [d, bh] + [bh, d] stay at 64 KiB
            block_hidden_dw=min(f, self.block_hidden_dw or max(16, 8192 // d)),
            num_warps=warps,
            num_stages=self.num_stages,
            block_tokens_dw=self.block_tokens_dw or self.block_tokens,
            num_warps_dw=self.num_warps_dw or warps,
        )
        for name in ("block_tokens", "block_hidden", "block_hidden_dw", "block_tokens_dw"):
            if not is_tile_width(getattr(t, name)):
                raise ValueError(
                    f"MlpTuning.{name} must be a power of two >= 16, got {getattr(t, name)}"
                )
        while max(t.smem_bytes(d, itemsize)) > SMEM_LIMIT:
            fwd, dx, dw = t.smem_bytes(d, itemsize)
            if max(fwd, dx) > SMEM_LIMIT and t.block_hidden > 16:
                t = dataclasses.replace(t, block_hidden=t.block_hidden // 2)
            elif tied and t.block_tokens > 16:
                t = dataclasses.replace(
                    t, block_tokens=t.block_tokens // 2, block_tokens_dw=t.block_tokens // 2
                )
            elif not tied and max(fwd, dx) > SMEM_LIMIT and t.block_tokens > 16:
                t = dataclasses.replace(t, block_tokens=t.block_tokens // 2)
            elif not tied and t.block_tokens_dw > 16:
                t = dataclasses.replace(t, block_tokens_dw=t.block_tokens_dw // 2)
            elif t.block_hidden_dw > 16:
                t = dataclasses.replace(t, block_hidden_dw=t.block_hidden_dw // 2)
            else:
                raise ValueError(
                    f"model.mlp='pallas' at d_model={d}, {itemsize}-byte inputs: even 16-wide blocks need "
                    f"{max(fwd, dx, dw)} bytes of shared memory (limit {SMEM_LIMIT}); allowed: a smaller "
                    "d_model, bfloat16 compute, or model.mlp='xla'"
                )
        return t

    def smem_bytes(self, d: int, itemsize: int) -> tuple[int, int, int]:
        """Estimated shared memory of the (forward, input-gradient, weight-gradient) kernels.

        The row blocks a program keeps plus ``num_stages`` buffers of what its loop loads. This
        reproduces Triton's request on an H100 for the forward kernel exactly (294,912 bytes at
        d=256, 64 x 128 blocks, bf16, 2 stages) and overestimates the others slightly. Calibrated
        before the kernels took in the LayerNorm and residual; the launches it resolves compile on
        the H100 at d=128 and 256 (all three kernels in bfloat16, the forward in float32).
        """
        bm, bh, bhd, st = (
            self.block_tokens,
            self.block_hidden,
            self.block_hidden_dw,
            max(1, self.num_stages),
        )
        bmd = self.block_tokens_dw or bm
        fwd = (bm * d + st * 2 * d * bh) * itemsize
        dx = (2 * bm * d + st * 2 * d * bh) * itemsize
        dw = (2 * d * bhd + st * 2 * bmd * d) * itemsize
        return fwd, dx, dw


# shared memory one H100 program may use: 232,448 bytes (227 KiB, from Triton's error message)
SMEM_LIMIT = 227 * 1024


def _triton(t: MlpTuning, num_warps: int = 0) -> Any:
    """Triton backend (Mosaic GPU cannot batch a member axis into the grid); ``num_warps`` overrides t's."""
    from jax.experimental.pallas import triton as pltriton  # imported only when a kernel is built

    return pltriton.CompilerParams(num_warps=num_warps or t.num_warps, num_stages=t.num_stages)


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


def _hidden(xn, w1_ref, b1_ref, j, bh):
    """Pre-activation of hidden block ``j``: float32 ``[bm, bh]``."""
    cols = pl.ds(j * bh, bh)
    return _dot(xn, w1_ref[:, cols]) + b1_ref[cols].astype(jnp.float32)[None, :]


def _layer_norm(x, scale_ref, bias_ref, eps: float):
    """Rows ``x [bm, D]`` -> (x̂, 1/σ ``[bm, 1]``, LN(x)), float32; flax's LayerNorm."""
    x = x.astype(jnp.float32)
    inv_d = 1.0 / x.shape[1]
    mean = jnp.sum(x, axis=1, keepdims=True) * inv_d
    var = jnp.maximum(jnp.sum(x * x, axis=1, keepdims=True) * inv_d - mean * mean, 0.0)
    rstd = jax.lax.rsqrt(var + eps)
    xhat = (x - mean) * rstd
    return (
        xhat,
        rstd,
        xhat * scale_ref[...].astype(jnp.float32)[None, :]
        + bias_ref[...].astype(jnp.float32)[None, :],
    )


def _layer_norm_backward(dxn, xhat, rstd, dy, s_ref, ds_ref, dc_ref):
    """``dy + LN'(dxn)`` float32 ``[bm, D]`` (the residual's gradient plus the LayerNorm backward,
    from its recomputed x̂ and 1/σ); writes this block's LN scale and bias gradient partial sums."""
    ds_ref[...] = jnp.sum(dxn * xhat, axis=0)[None, :]
    dc_ref[...] = jnp.sum(dxn, axis=0)[None, :]
    dxhat = dxn * s_ref[...].astype(jnp.float32)[None, :]
    inv_d = 1.0 / dxn.shape[1]
    mean_dxhat = jnp.sum(dxhat, axis=1, keepdims=True) * inv_d
    mean_dxhat_xhat = jnp.sum(dxhat * xhat, axis=1, keepdims=True) * inv_d
    return dy.astype(jnp.float32) + rstd * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat)


def _forward_kernel(
    x_ref, s_ref, c_ref, w1_ref, b1_ref, w2_ref, b2_ref, y_ref, *, bh: int, eps: float
):
    x = x_ref[...]
    xn = _layer_norm(x, s_ref, c_ref, eps)[2].astype(x.dtype)

    def body(j, acc):
        g, _ = _gelu_and_grad(_hidden(xn, w1_ref, b1_ref, j, bh))
        return acc + _dot(g.astype(x.dtype), w2_ref[pl.ds(j * bh, bh), :])

    acc = jax.lax.fori_loop(0, w1_ref.shape[1] // bh, body, jnp.zeros(y_ref.shape, jnp.float32))
    y_ref[...] = (x.astype(jnp.float32) + acc + b2_ref[...].astype(jnp.float32)[None, :]).astype(
        y_ref.dtype
    )


def _dx_kernel(
    x_ref,
    dy_ref,
    s_ref,
    c_ref,
    w1_ref,
    b1_ref,
    w2_ref,
    dx_ref,
    ds_ref,
    dc_ref,
    xn_ref,
    *,
    bh: int,
    eps: float,
):
    x, dy = x_ref[...], dy_ref[...]
    xhat, rstd, xn = _layer_norm(x, s_ref, c_ref, eps)
    xn = xn.astype(x.dtype)
    xn_ref[...] = xn  # for the weight-gradient kernel

    def body(j, acc):
        _, grad = _gelu_and_grad(_hidden(xn, w1_ref, b1_ref, j, bh))
        cols = pl.ds(j * bh, bh)
        dh = (_dot(dy, w2_ref[cols, :].T) * grad).astype(x.dtype)
        return acc + _dot(dh, w1_ref[:, cols].T)

    dxn = jax.lax.fori_loop(0, w1_ref.shape[1] // bh, body, jnp.zeros(dx_ref.shape, jnp.float32))
    dx_ref[...] = _layer_norm_backward(dxn, xhat, rstd, dy, s_ref, ds_ref, dc_ref).astype(
        dx_ref.dtype
    )


def _dw_kernel(xn_ref, dy_ref, w1_ref, b1_ref, w2_ref, dw1_ref, db1_ref, dw2_ref, *, bm: int):
    w1, b1 = w1_ref[...], b1_ref[...].astype(jnp.float32)[None, :]  # this program's hidden block
    w2 = w2_ref[...]

    def body(i, carry):
        dw1, db1, dw2 = carry
        rows = pl.ds(i * bm, bm)
        xn, dy = xn_ref[rows, :], dy_ref[rows, :]
        g, grad = _gelu_and_grad(_dot(xn, w1) + b1)
        dh = _dot(dy, w2.T) * grad
        dw1 = dw1 + _dot(xn.T, dh.astype(xn.dtype))
        dw2 = dw2 + _dot(g.astype(xn.dtype).T, dy)
        return dw1, db1 + jnp.sum(dh, axis=0), dw2

    zeros = (
        jnp.zeros(dw1_ref.shape, jnp.float32),
        jnp.zeros(db1_ref.shape, jnp.float32),
        jnp.zeros(dw2_ref.shape, jnp.float32),
    )
    dw1, db1, dw2 = jax.lax.fori_loop(0, xn_ref.shape[0] // bm, body, zeros)
    dw1_ref[...], db1_ref[...], dw2_ref[...] = (
        dw1.astype(dw1_ref.dtype),
        db1.astype(db1_ref.dtype),
        dw2.astype(dw2_ref.dtype),
    )


def _full(shape: tuple[int, ...]) -> pl.BlockSpec:
    return pl.BlockSpec(shape, lambda *_: (0,) * len(shape))


def _rows(bm: int, d: int) -> pl.BlockSpec:
    """Program ``i`` sees token rows ``[i*bm, (i+1)*bm)`` of an ``[N, d]`` array."""
    return pl.BlockSpec((bm, d), lambda i: (i, 0))


def _row_call(
    kernel, bm: int, arrays, specs, t, interpret: bool, name: str, ln_grads: bool = False
):
    """Run ``kernel`` over token blocks of ``arrays[0]`` (``[N, d]``, ``bm`` rows a program).

    Its output has the shape and dtype of ``arrays[0]``; with ``ln_grads`` it also writes one row
    of partial LayerNorm scale and bias gradients per block (float32 ``[N/bm, d]`` each, summed by
    the caller) and the LayerNorm's output (``[N, d]``, the weight-gradient kernel's input, so
    that kernel need not recompute it: on the H100 the recomputation made it 3x slower).
    ``t``: launch parameters with ``num_warps`` and ``num_stages``.
    """
    n, d = arrays[0].shape
    out_specs, out_shape = _rows(bm, d), jax.ShapeDtypeStruct((n, d), arrays[0].dtype)
    if ln_grads:
        partial, part = (
            pl.BlockSpec((1, d), lambda i: (i, 0)),
            jax.ShapeDtypeStruct((n // bm, d), jnp.float32),
        )
        out_specs, out_shape = (
            [out_specs, partial, partial, out_specs],
            [out_shape, part, part, out_shape],
        )
    return pl.pallas_call(
        kernel,
        grid=(n // bm,),
        in_specs=specs,
        out_specs=out_specs,
        out_shape=out_shape,
        interpret=interpret,
        compiler_params=_triton(t),
        name=name,
    )(*arrays)


def _forward(x, scale, bias, w1, b1, w2, b2, t: MlpTuning, eps: float, interpret):
    d, f = w1.shape
    specs = [
        _rows(t.block_tokens, d),
        _full((d,)),
        _full((d,)),
        _full((d, f)),
        _full((f,)),
        _full((f, d)),
        _full((d,)),
    ]
    kernel = functools.partial(_forward_kernel, bh=t.block_hidden, eps=eps)
    return _row_call(
        kernel,
        t.block_tokens,
        (x, scale, bias, w1, b1, w2, b2),
        specs,
        t,
        interpret,
        "fused_mlp_forward",
    )


def _backward(x, scale, bias, w1, b1, w2, dy, t: MlpTuning, eps: float, interpret):
    n, d = x.shape
    f = w1.shape[1]
    bm, bh = t.block_tokens, t.block_hidden_dw
    specs = [
        _rows(bm, d),
        _rows(bm, d),
        _full((d,)),
        _full((d,)),
        _full((d, f)),
        _full((f,)),
        _full((f, d)),
    ]
    kernel = functools.partial(_dx_kernel, bh=t.block_hidden, eps=eps)
    dx, ds, dc, xn = _row_call(
        kernel,
        bm,
        (x, dy, scale, bias, w1, b1, w2),
        specs,
        t,
        interpret,
        "fused_mlp_dx",
        ln_grads=True,
    )
    dw1, db1, dw2 = pl.pallas_call(
        functools.partial(_dw_kernel, bm=t.block_tokens_dw),
        grid=(f // bh,),
        in_specs=[
            _full((n, d)),
            _full((n, d)),
            pl.BlockSpec((d, bh), lambda j: (0, j)),
            pl.BlockSpec((bh,), lambda j: (j,)),
            pl.BlockSpec((bh, d), lambda j: (j, 0)),
        ],
        out_specs=[
            pl.BlockSpec((d, bh), lambda j: (0, j)),
            pl.BlockSpec((bh,), lambda j: (j,)),
            pl.BlockSpec((bh, d), lambda j: (j, 0)),
        ],
        out_shape=[
            jax.ShapeDtypeStruct((d, f), w1.dtype),
            jax.ShapeDtypeStruct((f,), b1.dtype),
            jax.ShapeDtypeStruct((f, d), w2.dtype),
        ],
        interpret=interpret,
        compiler_params=_triton(t, t.num_warps_dw),
        name="fused_mlp_dw",
    )(xn, dy, w1, b1, w2)
    db2 = jnp.sum(dy.astype(jnp.float32), axis=0).astype(dy.dtype)
    return (
        dx,
        jnp.sum(ds, axis=0).astype(scale.dtype),
        jnp.sum(dc, axis=0).astype(bias.dtype),
        dw1,
        db1,
        dw2,
        db2,
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8, 9))
def _fused_mlp(x, scale, bias, w1, b1, w2, b2, t, eps, interpret):
    return _forward(x, scale, bias, w1, b1, w2, b2, t, eps, interpret)


def _fused_mlp_fwd(x, scale, bias, w1, b1, w2, b2, t, eps, interpret):
    return _forward(x, scale, bias, w1, b1, w2, b2, t, eps, interpret), (x, scale, bias, w1, b1, w2)


def _fused_mlp_bwd(t, eps, interpret, residuals, dy):
    return _backward(*residuals, dy, t, eps, interpret)


_fused_mlp.defvjp(_fused_mlp_fwd, _fused_mlp_bwd)


def fused_mlp(
    x: jax.Array,
    scale: jax.Array,
    bias: jax.Array,
    w1: jax.Array,
    b1: jax.Array,
    w2: jax.Array,
    b2: jax.Array,
    eps: float = 1e-6,
    interpret: bool = False,
    tuning: MlpTuning | None = None,
) -> jax.Array:
    """``x + gelu(LN(x) @ w1 + b1) @ w2 + b2`` (tanh GELU; LN = flax's LayerNorm with ``scale``,
    ``bias`` and ``eps``) without storing the hidden layer; differentiable.

    x ``[N, D]``, scale and bias ``[D]``, w1 ``[D, F]``, b1 ``[F]``, w2 ``[F, D]``, b2 ``[D]`` (all
    one dtype) -> ``[N, D]``. D and F powers of two >= 16; N is zero-padded to the token block and
    cropped back. Vmappable (a member axis becomes a grid axis). ``tuning``: launch parameters
    (``MlpTuning()``).
    """
    n, d = x.shape
    check_shapes(d, w1.shape[1])
    t = (tuning or MlpTuning()).resolve(d, w1.shape[1], jnp.dtype(x.dtype).itemsize)
    bm = max(t.block_tokens, t.block_tokens_dw)  # powers of two: both divide the padded count
    padded = -(-n // bm) * bm
    if padded != n:
        x = jnp.pad(x, ((0, padded - n), (0, 0)))
    return _fused_mlp(x, scale, bias, w1, b1, w2, b2, t, float(eps), interpret)[:n]
