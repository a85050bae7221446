"""A small decoder-only transformer (Flax NNX) and a functional interface to it.

The trainer never works with module objects in its hot path: ``init_params`` splits the module
once into a static ``graphdef`` and a ``params`` pytree; ``apply`` merges them inside traced
code. ``params`` of a population carry a leading member axis and are vmapped as plain pytrees.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from difftrade.config.fields import refuse
from difftrade.config.model_config import (
    DTYPE_NAMES,
    IMPLEMENTATION_FIELDS,
    ModelConfig,
    is_tile_width,
)
from difftrade.model import kernels

DTYPES = {name: getattr(jnp, name) for name in DTYPE_NAMES}
# model.mlp='auto' uses the fused kernel on a GPU up to this width (it lost at 256: docs/notes.md)
MLP_AUTO_PALLAS_MAX_D = 128


def _pallas_interpret(cfg: ModelConfig, field: str) -> bool:
    """Whether model.<field>='pallas' runs interpreted under ``cfg.kernels``; refuses GPU kernels
    off-GPU when ``cfg.kernels`` is 'auto'."""
    if cfg.kernels == "auto" and jax.default_backend() != "gpu":
        raise ValueError(
            f"model.{field}='pallas' needs a GPU (this jax backend is {jax.default_backend()!r}); "
            "allowed here: 'xla', or model.kernels = 'interpret'"
        )
    return cfg.kernels == "interpret"


def check_backend(cfg: ModelConfig) -> None:
    """Refuse (before compiling) a kernel this jax backend cannot run: 'pallas' off-GPU (unless
    ``model.kernels`` is 'interpret' or 'gpu') and 'cudnn' off-GPU."""
    for field in IMPLEMENTATION_FIELDS:
        impl = implementation(cfg, field)
        if impl == "pallas":
            _pallas_interpret(cfg, field)
        if impl == "cudnn" and jax.default_backend() != "gpu":
            raise refuse(
                "model",
                field,
                impl,
                "'auto' or 'xla'",
                f" needs a GPU (this jax backend is {jax.default_backend()!r})",
            )


def implementation(cfg: ModelConfig, field: str) -> str:
    """The concrete kernel of ``cfg.<field>`` ('attention' or 'mlp') on this jax backend.

    ``auto`` picks what measured fastest on an H100 (docs/notes.md, the H100 sweep):
    on a GPU, attention 'pallas' (1.12x / 1.09x the XLA path at d_model 128 / 256) and the
    fused MLP up to width MLP_AUTO_PALLAS_MAX_D, where the Triton tiles need power-of-two
    widths >= 16 (head_dim; d_model and the hidden width); 'xla' otherwise and off-GPU.
    """
    value = getattr(cfg, field)
    if value != "auto":
        return value
    if jax.default_backend() != "gpu":
        return "xla"
    if field == "attention":
        return "pallas" if is_tile_width(cfg.head_dim) else "xla"
    tiles = is_tile_width(cfg.d_model) and is_tile_width(cfg.mlp_ratio * cfg.d_model)
    fits = tiles and cfg.d_model <= MLP_AUTO_PALLAS_MAX_D
    return "pallas" if fits else "xla"


def sinusoidal(seq_len: int, d_model: int) -> jax.Array:
    """Fixed sinusoidal positions, float32 ``[seq_len, d_model]``."""
    pos = jnp.arange(seq_len)[:, None]
    i = jnp.arange(d_model // 2)[None, :]
    angle = pos / (10000.0 ** (2 * i / d_model))
    return jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)


def causal_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, impl: str = "xla", interpret: bool = False
) -> jax.Array:
    """Causal softmax attention, scale ``head_dim ** -0.5``: q, k, v ``[B, T, H, Dh]`` -> ``[B, T, H, Dh]``.

    ``xla``: ``jax.nn.dot_product_attention`` (materialises the ``[B, H, T, T]`` scores).
    ``cudnn``: the same call with cuDNN's fused kernel (GPU only). ``pallas``: JAX's fused
    Triton flash-attention kernel (``jax.experimental.pallas.ops.gpu.attention``, forward and
    backward), the sequence zero-padded to a multiple of its block (16 or 32); padding sits
    after every real position, so causality hides it from real queries and the padded rows are
    dropped. GPU only, unless ``interpret`` (Pallas' interpreter, ``model.kernels``).
    """
    if impl != "pallas":
        return jax.nn.dot_product_attention(
            q, k, v, is_causal=True, implementation=None if impl == "xla" else impl
        )
    from jax.experimental.pallas.ops.gpu import attention as pallas_attention

    t = q.shape[1]
    block = 16 if t <= 16 else 32
    padded = -(-t // block) * block
    sizes = pallas_attention.BlockSizes(
        **{f.name: block for f in dataclasses.fields(pallas_attention.BlockSizes)}
    )
    pad = lambda x: jnp.pad(x, ((0, 0), (0, padded - t), (0, 0), (0, 0)))
    out = pallas_attention.mha(
        pad(q),
        pad(k),
        pad(v),
        None,
        sm_scale=q.shape[-1] ** -0.5,
        causal=True,
        block_sizes=sizes,
        interpret=interpret,
    )
    return out[:, :t]


class Block(nnx.Module):
    """Pre-LayerNorm block: causal multi-head attention + GELU MLP."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        kw = {
            "dtype": DTYPES[cfg.compute_dtype],
            "param_dtype": DTYPES[cfg.param_dtype],
            "rngs": rngs,
        }
        self.cfg = cfg
        self.ln1 = nnx.LayerNorm(cfg.d_model, **kw)
        self.qkv = nnx.Linear(cfg.d_model, 3 * cfg.d_model, **kw)
        self.out = nnx.Linear(cfg.d_model, cfg.d_model, **kw)
        self.ln2 = nnx.LayerNorm(cfg.d_model, **kw)
        self.up = nnx.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model, **kw)
        self.down = nnx.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x ``[B, T, D]`` -> ``[B, T, D]``."""
        return self.mlp(self.attend(x))

    def attend(self, x: jax.Array) -> jax.Array:
        """The attention half with its residual, ``x + out(attention(qkv(ln1(x))))``, x ``[B, T, D]``;
        ``model.attention`` chooses how the attention itself is computed (``causal_attention``)."""
        b, t, _ = x.shape
        qkv = self.qkv(self.ln1(x)).reshape(b, t, 3, self.cfg.num_heads, self.cfg.head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, T, H, Dh]
        impl = implementation(self.cfg, "attention")
        interpret = impl == "pallas" and _pallas_interpret(self.cfg, "attention")
        attn = causal_attention(q, k, v, impl, interpret)
        return x + self.out(attn.reshape(b, t, -1))

    def mlp(self, x: jax.Array) -> jax.Array:
        """The MLP half with its residual, ``x + down(gelu(up(ln2(x))))``, x ``[B, T, D]``;
        ``model.mlp='pallas'`` fuses all of it, LayerNorm included (``difftrade.model.kernels.fused_mlp``)."""
        if implementation(self.cfg, "mlp") == "xla":
            return x + self.down(jax.nn.gelu(self.up(self.ln2(x))))
        b, t, d = x.shape
        w = [
            p[...].astype(x.dtype)
            for p in (
                self.ln2.scale,
                self.ln2.bias,
                self.up.kernel,
                self.up.bias,
                self.down.kernel,
                self.down.bias,
            )
        ]
        y = kernels.fused_mlp(
            x.reshape(b * t, d),
            *w,
            eps=self.ln2.epsilon,
            interpret=_pallas_interpret(self.cfg, "mlp"),
        )
        return y.reshape(b, t, d)


class Transformer(nnx.Module):
    """Decoder-only transformer: tokens int32 ``[B, T]`` -> logits float32 ``[B, T, V]``."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        kw = {
            "dtype": DTYPES[cfg.compute_dtype],
            "param_dtype": DTYPES[cfg.param_dtype],
            "rngs": rngs,
        }
        self.cfg = cfg
        self.embed = nnx.Embed(cfg.vocab_size, cfg.d_model, **kw)
        if cfg.pos_encoding == "learned":
            self.pos = nnx.Param(
                0.02
                * jax.random.normal(
                    rngs.params(), (cfg.seq_len, cfg.d_model), DTYPES[cfg.param_dtype]
                )
            )
        self.blocks = (
            nnx.List([Block(cfg, rngs) for _ in range(cfg.num_layers)])
            if hasattr(nnx, "List")
            else [Block(cfg, rngs) for _ in range(cfg.num_layers)]
        )
        self.ln_f = nnx.LayerNorm(cfg.d_model, **kw)
        self.head = nnx.Linear(cfg.d_model, cfg.vocab_size, **kw)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        t = tokens.shape[-1]
        # One-hot matmul instead of a gather: its gradient is a matmul, not a scatter-add of
        # every token into a 64-row table (atomic contention on GPUs).
        table = self.embed.embedding[...]
        x = jax.nn.one_hot(tokens, self.cfg.vocab_size, dtype=table.dtype) @ table
        x = x.astype(DTYPES[self.cfg.compute_dtype])
        pos = (
            self.pos[...]
            if self.cfg.pos_encoding == "learned"
            else sinusoidal(self.cfg.seq_len, self.cfg.d_model)
        )
        x = x + pos[:t].astype(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x)).astype(jnp.float32)


Params = Any  # an nnx.State pytree of arrays (leading member axis in a population)


def graphdef(cfg: ModelConfig) -> nnx.GraphDef:
    """The static half of the split model (no arrays are allocated)."""
    gdef, _ = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, nnx.Rngs(0))))
    return gdef


def init_params(cfg: ModelConfig, key: jax.Array) -> Params:
    """Fresh parameters from ``key``; jittable and vmappable over keys."""
    _, params = nnx.split(Transformer(cfg, nnx.Rngs(params=key)))
    return params


def apply(gdef: nnx.GraphDef, params: Params, tokens: jax.Array) -> jax.Array:
    """Logits float32 ``[B, T, V]`` for tokens int32 ``[B, T]``."""
    return nnx.merge(gdef, params)(tokens)


def token_losses(
    gdef: nnx.GraphDef, params: Params, tokens: jax.Array, loss_mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Next-token cross-entropy and correctness on the masked (answer) positions.

    tokens int32 ``[B, L]``, loss_mask bool ``[B, L]`` (True where ``tokens[t]`` is an answer
    token). Returns ``ce`` float32 ``[B, L-1]`` and ``correct`` bool ``[B, L-1]``, both already
    restricted to target positions ``1..L-1`` (multiply by ``loss_mask[:, 1:]``).
    """
    logits = apply(gdef, params, tokens[:, :-1])
    targets = tokens[:, 1:]
    logp = jax.nn.log_softmax(logits, axis=-1)
    ce = -jnp.sum(logp * jax.nn.one_hot(targets, logits.shape[-1], dtype=logp.dtype), axis=-1)
    correct = jnp.argmax(logits, axis=-1) == targets
    return ce, correct
