"""Fused GPU kernels (Pallas, Triton backend) for the memory-bound parts of a small transformer.

A training step of a width-128 model moves ~7x more time through device memory than through
matrix units (``benchmarks/roofline.py``); most of that traffic is the MLP's ``[N, 4D]`` hidden
activation, written and read several times in forward and backward. ``fused_mlp`` computes a
pre-LayerNorm block's whole MLP half, ``y = x + mlp(LayerNorm(x))``, and never stores the hidden
layer or the normalised input: every kernel keeps a block of token rows (whole rows, so the
LayerNorm statistics are local) on chip, walks over blocks of the hidden layer and recomputes
``xn = LN(x)`` and ``h = xn @ w1 + b1`` where it needs them (the backward pays ~50% more MLP
FLOPs for that, which is cheap when memory is the limit). Taking the LayerNorm and the residual
inside matters: XLA fuses them into its GEMMs' prologues and epilogues, and a custom call is a
fusion barrier (an MLP-only kernel measured 1.55x XLA alone but 1.06x in the model: NOTES.md).

Kernels (grids in parentheses; ``bm`` tokens, ``bh`` hidden units per block):

* forward (N/bm): ``y = x + gelu(xn w1 + b1) w2 + b2``, accumulated over hidden blocks;
* input gradient (N/bm): ``dxn = ((dy w2ᵀ) * gelu'(h)) w1ᵀ`` accumulated over hidden blocks, then
  the LayerNorm backward and the residual, ``dx = dy + LN'(dxn)``; also this block's partial
  sums of the LayerNorm scale and bias gradients (summed over blocks outside);
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


@dataclasses.dataclass(frozen=True)
class MlpTuning:
    """Launch parameters of the fused MLP kernels; 0 means "the default for this width".

    block_tokens: token rows per program of the forward and input-gradient kernels (``bm``);
    block_hidden: hidden units per loop step of those kernels (``bh``);
    block_hidden_dw: hidden units per program of the weight-gradient kernel;
    num_warps, num_stages: Triton's. All block sizes are powers of two >= 16.
    """

    block_tokens: int = 64
    block_hidden: int = 64  # H100 sweep (benchmarks/mlp_kernels.py): 1.55x XLA at d=128, 128 gave 1.25x
    block_hidden_dw: int = 0
    num_warps: int = 0
    num_stages: int = 2

    def resolve(self, d: int, f: int, itemsize: int = 2) -> MlpTuning:
        """Concrete values for width ``d``, hidden width ``f`` and ``itemsize``-byte inputs.

        Defaults are filled in and block sizes clipped to ``f``; then blocks are halved (hidden
        first, then tokens) until every kernel's estimated shared memory fits (``smem_bytes``).
        Raises ValueError for a block size that is not a power of two >= 16.
        """
        t = MlpTuning(
            block_tokens=self.block_tokens,
            block_hidden=min(self.block_hidden, f),
            # the weight-gradient kernel's two float32 accumulators [d, bh] + [bh, d] stay at 64 KiB
            block_hidden_dw=min(f, self.block_hidden_dw or max(16, 8192 // d)),
            num_warps=self.num_warps or (4 if d <= 128 else 8),
            num_stages=self.num_stages,
        )
        for name in ("block_tokens", "block_hidden", "block_hidden_dw"):
            if not is_tile_width(getattr(t, name)):
                raise ValueError(f"MlpTuning.{name} must be a power of two >= 16, got {getattr(t, name)}")
        while max(t.smem_bytes(d, itemsize)) > SMEM_LIMIT:
            fwd, dx, dw = t.smem_bytes(d, itemsize)
            if max(fwd, dx) > SMEM_LIMIT and t.block_hidden > 16:
                t = dataclasses.replace(t, block_hidden=t.block_hidden // 2)
            elif t.block_tokens > 16:
                t = dataclasses.replace(t, block_tokens=t.block_tokens // 2)
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
        d=256, 64 x 128 blocks, bf16, 2 stages) and overestimates the others slightly; measured
        before the kernels took in the LayerNorm and residual (unchecked on a GPU since).
        """
        bm, bh, bhd, st = self.block_tokens, self.block_hidden, self.block_hidden_dw, max(1, self.num_stages)
        fwd = (bm * d + st * 2 * d * bh) * itemsize
        dx = (2 * bm * d + st * 2 * d * bh) * itemsize
        dw = (2 * d * bhd + st * 2 * bm * d) * itemsize
        return fwd, dx, dw


# shared memory one H100 program may use: 232,448 bytes (227 KiB, from Triton's error message)
SMEM_LIMIT = 227 * 1024


def _triton(t: MlpTuning) -> Any:
    """Triton backend (Mosaic GPU cannot batch a member axis into the grid)."""
    from jax.experimental.pallas import triton as pltriton  # imported only when a kernel is built

    return pltriton.CompilerParams(num_warps=t.num_warps, num_stages=t.num_stages)


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
    return xhat, rstd, xhat * scale_ref[...].astype(jnp.float32)[None, :] + bias_ref[...].astype(jnp.float32)[None, :]


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


def _forward_kernel(x_ref, s_ref, c_ref, w1_ref, b1_ref, w2_ref, b2_ref, y_ref, *, bh: int, eps: float):
    x = x_ref[...]
    xn = _layer_norm(x, s_ref, c_ref, eps)[2].astype(x.dtype)

    def body(j, acc):
        g, _ = _gelu_and_grad(_hidden(xn, w1_ref, b1_ref, j, bh))
        return acc + _dot(g.astype(x.dtype), w2_ref[pl.ds(j * bh, bh), :])

    acc = jax.lax.fori_loop(0, w1_ref.shape[1] // bh, body, jnp.zeros(y_ref.shape, jnp.float32))
    y_ref[...] = (x.astype(jnp.float32) + acc + b2_ref[...].astype(jnp.float32)[None, :]).astype(y_ref.dtype)


def _dx_kernel(x_ref, dy_ref, s_ref, c_ref, w1_ref, b1_ref, w2_ref, dx_ref, ds_ref, dc_ref, xn_ref, *, bh: int, eps: float):
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
    dx_ref[...] = _layer_norm_backward(dxn, xhat, rstd, dy, s_ref, ds_ref, dc_ref).astype(dx_ref.dtype)


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

    zeros = (jnp.zeros(dw1_ref.shape, jnp.float32), jnp.zeros(db1_ref.shape, jnp.float32), jnp.zeros(dw2_ref.shape, jnp.float32))
    dw1, db1, dw2 = jax.lax.fori_loop(0, xn_ref.shape[0] // bm, body, zeros)
    dw1_ref[...], db1_ref[...], dw2_ref[...] = dw1.astype(dw1_ref.dtype), db1.astype(db1_ref.dtype), dw2.astype(dw2_ref.dtype)


def _full(shape: tuple[int, ...]) -> pl.BlockSpec:
    return pl.BlockSpec(shape, lambda *_: (0,) * len(shape))


def _rows(bm: int, d: int) -> pl.BlockSpec:
    """Program ``i`` sees token rows ``[i*bm, (i+1)*bm)`` of an ``[N, d]`` array."""
    return pl.BlockSpec((bm, d), lambda i: (i, 0))


def _row_call(kernel, bm: int, arrays, specs, t, interpret: bool, name: str, ln_grads: bool = False):
    """Run ``kernel`` over token blocks of ``arrays[0]`` (``[N, d]``, ``bm`` rows a program).

    Its output has the shape and dtype of ``arrays[0]``; with ``ln_grads`` it also writes one row
    of partial LayerNorm scale and bias gradients per block (float32 ``[N/bm, d]`` each, summed by
    the caller) and the LayerNorm's output (``[N, d]``, the weight-gradient kernel's input, so
    that kernel need not recompute it: on the H100 the recomputation made it 5x slower).
    ``t``: launch parameters with ``num_warps`` and ``num_stages``.
    """
    n, d = arrays[0].shape
    out_specs, out_shape = _rows(bm, d), jax.ShapeDtypeStruct((n, d), arrays[0].dtype)
    if ln_grads:
        partial, part = pl.BlockSpec((1, d), lambda i: (i, 0)), jax.ShapeDtypeStruct((n // bm, d), jnp.float32)
        out_specs, out_shape = [out_specs, partial, partial, out_specs], [out_shape, part, part, out_shape]
    return pl.pallas_call(
        kernel, grid=(n // bm,), in_specs=specs, out_specs=out_specs, out_shape=out_shape,
        interpret=interpret, compiler_params=_triton(t), name=name,
    )(*arrays)


def is_tile_width(v: int) -> bool:
    """Whether ``v`` can be a Triton tile dimension here: a power of two >= 16."""
    return v >= 16 and not v & (v - 1)


def check_shapes(d: int, f: int) -> None:
    """Triton tiles need power-of-two widths >= 16."""
    for name, v in (("d_model", d), ("mlp hidden width", f)):
        if not is_tile_width(v):
            raise ValueError(f"model.mlp='pallas' needs a power-of-two {name} >= 16, got {v}; allowed: 16, 32, 64, ...")


def _forward(x, scale, bias, w1, b1, w2, b2, t: MlpTuning, eps: float, interpret):
    d, f = w1.shape
    specs = [_rows(t.block_tokens, d), _full((d,)), _full((d,)), _full((d, f)), _full((f,)), _full((f, d)), _full((d,))]
    kernel = functools.partial(_forward_kernel, bh=t.block_hidden, eps=eps)
    return _row_call(kernel, t.block_tokens, (x, scale, bias, w1, b1, w2, b2), specs, t, interpret, "fused_mlp_forward")


def _backward(x, scale, bias, w1, b1, w2, dy, t: MlpTuning, eps: float, interpret):
    n, d = x.shape
    f = w1.shape[1]
    bm, bh = t.block_tokens, t.block_hidden_dw
    specs = [_rows(bm, d), _rows(bm, d), _full((d,)), _full((d,)), _full((d, f)), _full((f,)), _full((f, d))]
    kernel = functools.partial(_dx_kernel, bh=t.block_hidden, eps=eps)
    dx, ds, dc, xn = _row_call(kernel, bm, (x, dy, scale, bias, w1, b1, w2), specs, t, interpret, "fused_mlp_dx", ln_grads=True)
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
        compiler_params=_triton(t),
        name="fused_mlp_dw",
    )(xn, dy, w1, b1, w2)
    db2 = jnp.sum(dy.astype(jnp.float32), axis=0).astype(dy.dtype)
    return dx, jnp.sum(ds, axis=0).astype(scale.dtype), jnp.sum(dc, axis=0).astype(bias.dtype), dw1, db1, dw2, db2


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8, 9))
def _fused_mlp(x, scale, bias, w1, b1, w2, b2, t, eps, interpret):
    return _forward(x, scale, bias, w1, b1, w2, b2, t, eps, interpret)


def _fused_mlp_fwd(x, scale, bias, w1, b1, w2, b2, t, eps, interpret):
    return _forward(x, scale, bias, w1, b1, w2, b2, t, eps, interpret), (x, scale, bias, w1, b1, w2)


def _fused_mlp_bwd(t, eps, interpret, residuals, dy):
    return _backward(*residuals, dy, t, eps, interpret)


_fused_mlp.defvjp(_fused_mlp_fwd, _fused_mlp_bwd)


def fused_mlp(
    x: jax.Array, scale: jax.Array, bias: jax.Array, w1: jax.Array, b1: jax.Array, w2: jax.Array, b2: jax.Array,
    eps: float = 1e-6, interpret: bool = False, tuning: MlpTuning | None = None,
) -> jax.Array:
    """``x + gelu(LN(x) @ w1 + b1) @ w2 + b2`` (tanh GELU; LN = flax's LayerNorm with ``scale``,
    ``bias`` and ``eps``) without storing LN(x) or the hidden layer; differentiable.

    x ``[N, D]``, scale and bias ``[D]``, w1 ``[D, F]``, b1 ``[F]``, w2 ``[F, D]``, b2 ``[D]`` (all
    one dtype) -> ``[N, D]``. D and F powers of two >= 16; N is zero-padded to the token block and
    cropped back. Vmappable (a member axis becomes a grid axis). ``tuning``: launch parameters
    (``MlpTuning()``).
    """
    n, d = x.shape
    check_shapes(d, w1.shape[1])
    t = (tuning or MlpTuning()).resolve(d, w1.shape[1], jnp.dtype(x.dtype).itemsize)
    bm = t.block_tokens
    padded = -(-n // bm) * bm
    if padded != n:
        x = jnp.pad(x, ((0, padded - n), (0, 0)))
    return _fused_mlp(x, scale, bias, w1, b1, w2, b2, t, float(eps), interpret)[:n]


# ---- the attention half of a pre-LayerNorm block ---------------------------------------------
#
# ``fused_attention`` computes ``x + attention(LN(x)) @ wo + bo`` with the QKV projection, causal
# softmax attention of every head and the output projection inside, for sequences short enough
# that a token block holds whole sequences (the tasks here: 19-38 positions; at most 128). Each
# sequence is zero-padded to ``tp`` positions (a power of two); a block of ``bm`` rows holds
# ``bm // tp`` whole sequences, so attention is local to the block: scores are masked to the
# same sequence and to earlier positions (padding sits after every real position, so no real
# query sees it). Kernels, as for the MLP:
#
# * forward (N/bm): every head's q, k, v, softmax and output, accumulated through wo;
# * input gradient (N/bm): recompute, back through every head into d(LN(x)), then the
#   LayerNorm backward and the residual; partial sums of the LN parameter gradients;
# * weight gradients (one program per head): loop over token blocks, recompute that head and
#   accumulate its slices of dwq, dwk, dwv, dbq, dbk, dbv and dwo (no atomics).

# a block's score tile is [rows, rows] float32: whole sequences of up to 128 positions (the tasks
# here have 19-38)
ATTENTION_MAX_POSITIONS = 128


@dataclasses.dataclass(frozen=True)
class AttentionTuning:
    """Launch parameters of the fused attention kernels.

    block_rows: token rows per block of the forward and input-gradient kernels and per loop step
    of the weight-gradient kernel, rounded down to whole (padded) sequences, at least one;
    num_warps, num_stages: Triton's. Untimed defaults (no GPU measurement yet).
    """

    block_rows: int = 64
    num_warps: int = 4
    num_stages: int = 2

    def smem_bytes(self, d: int, heads: int, bm: int, itemsize: int) -> int:
        """Estimated shared memory of the largest kernel (weight gradients): its head's four
        weight slices plus ``num_stages`` buffers of the x and dy rows it loops over (the form of
        ``MlpTuning.smem_bytes``; not yet checked against Triton)."""
        return (4 * d * (d // heads) + max(1, self.num_stages) * 2 * bm * d) * itemsize

    def sequences_per_block(self, d: int, heads: int, tp: int, itemsize: int) -> int:
        """Whole sequences of ``tp`` rows per block: ``block_rows // tp``, halved while the
        estimate exceeds SMEM_LIMIT; at least one (refused if even that does not fit)."""
        if not (isinstance(self.block_rows, int) and self.block_rows >= 1):
            raise ValueError(f"AttentionTuning.block_rows must be an integer >= 1, got {self.block_rows!r}")
        per_block = max(1, self.block_rows // tp)
        while per_block > 1 and self.smem_bytes(d, heads, per_block * tp, itemsize) > SMEM_LIMIT:
            per_block //= 2
        need = self.smem_bytes(d, heads, per_block * tp, itemsize)
        if need > SMEM_LIMIT:
            raise ValueError(
                f"model.attention='fused' at d_model={d}, {heads} heads, sequences padded to {tp}, {itemsize}-byte "
                f"inputs: one sequence per block needs ~{need} bytes of shared memory (limit {SMEM_LIMIT}); "
                "allowed: bfloat16 compute, more heads, shorter sequences, or model.attention='pallas'"
            )
        return per_block


def _block_mask(bm: int, tp: int) -> jax.Array:
    """bool ``[bm, bm]``: key j visible to query i (same sequence, not later)."""
    i = jax.lax.broadcasted_iota(jnp.int32, (bm, bm), 0)
    j = jax.lax.broadcasted_iota(jnp.int32, (bm, bm), 1)
    return (i // tp == j // tp) & (j <= i)


def _head(xn, wqkv_ref, bqkv_ref, h: int, dh: int, d: int, mask, scale: float):
    """Head ``h`` of a token block: (q, k, v in the input dtype ``[bm, dh]``, probabilities f32 ``[bm, bm]``)."""

    def proj(col):
        cols = pl.ds(col, dh)
        return (_dot(xn, wqkv_ref[:, cols]) + bqkv_ref[cols].astype(jnp.float32)[None, :]).astype(xn.dtype)

    q, k, v = proj(h * dh), proj(d + h * dh), proj(2 * d + h * dh)
    return q, k, v, _probabilities(q, k, mask, scale)


def _probabilities(q, k, mask, scale: float):
    """Masked softmax of ``scale · q kᵀ`` over keys: float32 ``[bm, bm]``."""
    s = jnp.where(mask, _dot(q, k.T) * scale, -1e30)
    p = jnp.exp(s - jnp.max(s, axis=1, keepdims=True))
    return p / jnp.sum(p, axis=1, keepdims=True)


def _head_backward(q, k, v, p, do, scale: float):
    """Back through one head's softmax attention: (dq, dk, dv) f32 ``[bm, dh]``."""
    dt = q.dtype
    dp = _dot(do.astype(dt), v.T)
    ds = (p * (dp - jnp.sum(dp * p, axis=1, keepdims=True)) * scale).astype(dt)
    return _dot(ds, k), _dot(ds.T, q), _dot(p.astype(dt).T, do.astype(dt))


def _attn_forward_kernel(x_ref, s_ref, c_ref, wqkv_ref, bqkv_ref, wo_ref, bo_ref, y_ref, *, heads: int, tp: int, eps: float):
    x = x_ref[...]
    bm, d = x.shape
    dh = d // heads
    xn = _layer_norm(x, s_ref, c_ref, eps)[2].astype(x.dtype)
    mask = _block_mask(bm, tp)
    acc = x.astype(jnp.float32) + bo_ref[...].astype(jnp.float32)[None, :]
    for h in range(heads):
        _, _, v, p = _head(xn, wqkv_ref, bqkv_ref, h, dh, d, mask, dh**-0.5)
        o = _dot(p.astype(x.dtype), v).astype(x.dtype)
        acc = acc + _dot(o, wo_ref[pl.ds(h * dh, dh), :])
    y_ref[...] = acc.astype(y_ref.dtype)


def _attn_dx_kernel(x_ref, dy_ref, s_ref, c_ref, wqkv_ref, bqkv_ref, wo_ref, dx_ref, ds_ref, dc_ref, xn_ref, *,
                    heads: int, tp: int, eps: float):
    x, dy = x_ref[...], dy_ref[...]
    bm, d = x.shape
    dh = d // heads
    xhat, rstd, xn = _layer_norm(x, s_ref, c_ref, eps)
    xn = xn.astype(x.dtype)
    xn_ref[...] = xn  # for the weight-gradient kernel
    mask = _block_mask(bm, tp)
    dxn = jnp.zeros((bm, d), jnp.float32)
    for h in range(heads):
        q, k, v, p = _head(xn, wqkv_ref, bqkv_ref, h, dh, d, mask, dh**-0.5)
        do = _dot(dy, wo_ref[pl.ds(h * dh, dh), :].T)
        dq, dk, dv = _head_backward(q, k, v, p, do, dh**-0.5)
        for grad, col in ((dq, h * dh), (dk, d + h * dh), (dv, 2 * d + h * dh)):
            dxn = dxn + _dot(grad.astype(x.dtype), wqkv_ref[:, pl.ds(col, dh)].T)
    dx_ref[...] = _layer_norm_backward(dxn, xhat, rstd, dy, s_ref, ds_ref, dc_ref).astype(dx_ref.dtype)


def _attn_dw_kernel(xn_ref, dy_ref, wq_ref, wk_ref, wv_ref, bq_ref, bk_ref, bv_ref, wo_ref,
                    dwq_ref, dwk_ref, dwv_ref, dbq_ref, dbk_ref, dbv_ref, dwo_ref, *, bm: int, tp: int):
    d, dh = wq_ref.shape  # this program's head: its q, k, v columns and its rows of wo
    mask = _block_mask(bm, tp)
    scale = dh**-0.5
    wq, wk, wv, wo = wq_ref[...], wk_ref[...], wv_ref[...], wo_ref[...]
    bq, bk, bv = (b[...].astype(jnp.float32)[None, :] for b in (bq_ref, bk_ref, bv_ref))

    def body(i, carry):
        dwq, dwk, dwv, dbq, dbk, dbv, dwo = carry
        rows = pl.ds(i * bm, bm)
        xn, dy = xn_ref[rows, :], dy_ref[rows, :]
        dt = xn.dtype
        q, k, v = ((_dot(xn, w) + b).astype(dt) for w, b in ((wq, bq), (wk, bk), (wv, bv)))
        p = _probabilities(q, k, mask, scale)
        o = _dot(p.astype(dt), v).astype(dt)
        dq, dk, dv = _head_backward(q, k, v, p, _dot(dy, wo.T), scale)
        return (dwq + _dot(xn.T, dq.astype(dt)), dwk + _dot(xn.T, dk.astype(dt)), dwv + _dot(xn.T, dv.astype(dt)),
                dbq + jnp.sum(dq, axis=0), dbk + jnp.sum(dk, axis=0), dbv + jnp.sum(dv, axis=0), dwo + _dot(o.T, dy))

    zeros = tuple(jnp.zeros(shape, jnp.float32) for shape in ((d, dh),) * 3 + ((dh,),) * 3 + ((dh, d),))
    out = jax.lax.fori_loop(0, xn_ref.shape[0] // bm, body, zeros)
    for ref, value in zip((dwq_ref, dwk_ref, dwv_ref, dbq_ref, dbk_ref, dbv_ref, dwo_ref), out):
        ref[...] = value.astype(ref.dtype)


def _attn_forward(x, scale, bias, wqkv, bqkv, wo, bo, heads, tp, bm, t: AttentionTuning, eps, interpret):
    d = x.shape[1]
    specs = [_rows(bm, d), _full((d,)), _full((d,)), _full((d, 3 * d)), _full((3 * d,)), _full((d, d)), _full((d,))]
    kernel = functools.partial(_attn_forward_kernel, heads=heads, tp=tp, eps=eps)
    return _row_call(kernel, bm, (x, scale, bias, wqkv, bqkv, wo, bo), specs, t, interpret, "fused_attention_forward")


def _attn_backward(x, scale, bias, wqkv, bqkv, wo, dy, heads, tp, bm, t: AttentionTuning, eps, interpret):
    n, d = x.shape
    dh = d // heads
    specs = [_rows(bm, d), _rows(bm, d), _full((d,)), _full((d,)), _full((d, 3 * d)), _full((3 * d,)), _full((d, d))]
    kernel = functools.partial(_attn_dx_kernel, heads=heads, tp=tp, eps=eps)
    dx, ds, dc, xn = _row_call(kernel, bm, (x, dy, scale, bias, wqkv, bqkv, wo), specs, t, interpret, "fused_attention_dx", ln_grads=True)
    cols = [pl.BlockSpec((d, dh), lambda h, part=part: (0, part * heads + h)) for part in range(3)]
    bias_cols = [pl.BlockSpec((dh,), lambda h, part=part: (part * heads + h,)) for part in range(3)]
    wo_rows = pl.BlockSpec((dh, d), lambda h: (h, 0))
    out_cols = [pl.BlockSpec((d, dh), lambda h: (0, h))] * 3
    out_bias = [pl.BlockSpec((dh,), lambda h: (h,))] * 3
    grads = pl.pallas_call(
        functools.partial(_attn_dw_kernel, bm=bm, tp=tp),
        grid=(heads,),
        in_specs=[_full((n, d)), _full((n, d)), *cols, *bias_cols, wo_rows],
        out_specs=[*out_cols, *out_bias, wo_rows],
        out_shape=[jax.ShapeDtypeStruct((d, d), wqkv.dtype)] * 3 + [jax.ShapeDtypeStruct((d,), bqkv.dtype)] * 3
        + [jax.ShapeDtypeStruct((d, d), wo.dtype)],
        interpret=interpret,
        compiler_params=_triton(t),
        name="fused_attention_dw",
    )(xn, dy, wqkv, wqkv, wqkv, bqkv, bqkv, bqkv, wo)
    dwq, dwk, dwv, dbq, dbk, dbv, dwo = grads
    dbo = jnp.sum(dy.astype(jnp.float32), axis=0).astype(dy.dtype)
    return (dx, jnp.sum(ds, axis=0).astype(scale.dtype), jnp.sum(dc, axis=0).astype(bias.dtype),
            jnp.concatenate([dwq, dwk, dwv], axis=1), jnp.concatenate([dbq, dbk, dbv]), dwo, dbo)


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8, 9, 10, 11, 12))
def _fused_attention(x, scale, bias, wqkv, bqkv, wo, bo, heads, tp, bm, t, eps, interpret):
    return _attn_forward(x, scale, bias, wqkv, bqkv, wo, bo, heads, tp, bm, t, eps, interpret)


def _fused_attention_fwd(x, scale, bias, wqkv, bqkv, wo, bo, heads, tp, bm, t, eps, interpret):
    y = _attn_forward(x, scale, bias, wqkv, bqkv, wo, bo, heads, tp, bm, t, eps, interpret)
    return y, (x, scale, bias, wqkv, bqkv, wo)


def _fused_attention_bwd(heads, tp, bm, t, eps, interpret, residuals, dy):
    return _attn_backward(*residuals, dy, heads, tp, bm, t, eps, interpret)


_fused_attention.defvjp(_fused_attention_fwd, _fused_attention_bwd)


def check_attention_shapes(d: int, heads: int) -> None:
    """The fused attention's Triton tiles: power-of-two d_model and head_dim >= 16."""
    for name, v in (("d_model", d), ("head_dim (d_model / num_heads)", d // heads)):
        if not is_tile_width(v):
            raise ValueError(f"model.attention='fused' needs a power-of-two {name} >= 16, got {v}; allowed: 16, 32, 64, ...")


def fused_attention(
    x: jax.Array, scale: jax.Array, bias: jax.Array, wqkv: jax.Array, bqkv: jax.Array, wo: jax.Array, bo: jax.Array,
    num_heads: int, eps: float = 1e-6, interpret: bool = False, tuning: AttentionTuning | None = None,
) -> jax.Array:
    """The attention half of a pre-LayerNorm block in one kernel per pass; differentiable.

    ``x + concat_h(softmax_causal(q_h k_hᵀ / √dh) v_h) @ wo + bo`` with ``[q | k | v] = LN(x) @ wqkv
    + bqkv`` (columns ordered part, head, dim as in ``difftrade.model.Block``) and LN flax's
    LayerNorm (``scale``, ``bias``, ``eps``). x ``[B, T, D]`` (B sequences of T positions), scale,
    bias, bo ``[D]``, wqkv ``[D, 3D]``, bqkv ``[3D]``, wo ``[D, D]``, one dtype -> ``[B, T, D]``.
    D and D / num_heads powers of two >= 16. Sequences are zero-padded to a power of two >= 16
    and the batch to whole token blocks, then cropped back. Vmappable. ``tuning``: launch
    parameters (``AttentionTuning()``).
    """
    b, t, d = x.shape
    check_attention_shapes(d, num_heads)
    tp = max(16, 1 << (t - 1).bit_length())
    if tp > ATTENTION_MAX_POSITIONS:
        raise ValueError(
            f"model.attention='fused' keeps whole sequences in a block: {t} positions (padded to {tp}) > "
            f"{ATTENTION_MAX_POSITIONS}; allowed: sequences up to {ATTENTION_MAX_POSITIONS} positions, or model.attention='pallas'"
        )
    launch = tuning or AttentionTuning()
    per_block = launch.sequences_per_block(d, num_heads, tp, jnp.dtype(x.dtype).itemsize)
    padded_b = -(-b // per_block) * per_block
    xp = jnp.pad(x, ((0, padded_b - b), (0, tp - t), (0, 0))).reshape(padded_b * tp, d)
    y = _fused_attention(xp, scale, bias, wqkv, bqkv, wo, bo, num_heads, tp, per_block * tp, launch, float(eps), interpret)
    return y.reshape(padded_b, tp, d)[:b, :t]
