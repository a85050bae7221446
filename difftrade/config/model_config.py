"""``[model]``: the transformer's architecture and how its kernels are chosen, as data.

Pure Python (no jax): what the fields mean and which values are allowed. Which kernel an
``'auto'`` field resolves to on a backend is decided where the model runs
(``difftrade.model.transformer.implementation``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from difftrade.config.fields import Field, check_fields, refuse

DTYPE_NAMES = ("float32", "bfloat16", "float16")
POS_ENCODINGS = ("learned", "sinusoidal")
# How attention and the MLP are computed: every choice computes the same function (to rounding),
# so it is not part of a config's identity (hash) or of a checkpoint's architecture.
ATTENTIONS = ("auto", "xla", "cudnn", "pallas")
MLPS = ("auto", "xla", "pallas")
IMPLEMENTATION_FIELDS = ("attention", "mlp")
# How Pallas kernels are traced: 'auto' GPU kernels, refused off a GPU; 'interpret' Pallas'
# interpreter on any backend (slow; tests); 'gpu' GPU kernels whatever the local backend (to
# jax.export a step for CUDA from a machine without one). Not part of the identity either.
KERNEL_MODES = ("auto", "interpret", "gpu")
NOT_IDENTITY = (*IMPLEMENTATION_FIELDS, "kernels")  # left out of the hash and the architecture

# [model]: one spec per field (difftrade.config.fields)
MODEL_FIELDS: dict[str, Field] = {
    **{
        name: Field(int, 1)
        for name in ("vocab_size", "seq_len", "d_model", "num_layers", "num_heads", "mlp_ratio")
    },
    "pos_encoding": Field(str, choices=POS_ENCODINGS),
    "param_dtype": Field(str, choices=DTYPE_NAMES),
    "compute_dtype": Field(str, choices=DTYPE_NAMES),
    "attention": Field(str, choices=ATTENTIONS),
    "mlp": Field(str, choices=MLPS),
    "kernels": Field(str, choices=KERNEL_MODES),
}


def is_tile_width(v: int) -> bool:
    """Whether ``v`` can be a Triton tile dimension here: a power of two >= 16."""
    return v >= 16 and not v & (v - 1)


def check_shapes(d: int, f: int) -> None:
    """Triton tiles need power-of-two widths >= 16."""
    for name, v in (("d_model", d), ("mlp hidden width", f)):
        if not is_tile_width(v):
            raise ValueError(
                f"model.mlp='pallas' needs a power-of-two {name} >= 16, got {v}; allowed: 16, 32, 64, ..."
            )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture (all static). ``compute_dtype='bfloat16'`` keeps float32 master weights.
    ``attention``/``mlp`` choose how each half is computed, ``kernels`` how Pallas kernels are
    traced (:data:`KERNEL_MODES`); none of the three changes the function."""

    vocab_size: int = 64
    seq_len: int = 32
    d_model: int = 128
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: int = 4
    pos_encoding: str = "learned"
    param_dtype: str = "float32"
    compute_dtype: str = "float32"
    attention: str = "auto"
    mlp: str = "auto"
    kernels: str = "auto"

    def __post_init__(self) -> None:
        check_fields(self, "model", MODEL_FIELDS)
        if self.d_model % self.num_heads:
            raise refuse(
                "model",
                "d_model",
                self.d_model,
                "d_model a multiple of num_heads",
                f" is not divisible by model.num_heads={self.num_heads}",
            )
        if self.pos_encoding == "sinusoidal" and self.d_model % 2:
            raise refuse(
                "model",
                "d_model",
                self.d_model,
                "an even d_model (half sines, half cosines)",
                " is odd, with model.pos_encoding='sinusoidal'",
            )
        if self.mlp == "pallas":
            check_shapes(self.d_model, self.mlp_ratio * self.d_model)

    def for_members(self, per_device: int) -> ModelConfig:
        """This config for a program of ``per_device`` members on each device: with one member,
        'auto' fields become 'xla' (on the H100 a lone member trained 0.69x as fast through the
        Pallas kernels, whose grids are then tiny: docs/notes.md, 'auto' entry); otherwise unchanged.
        Explicit choices always stand."""
        if per_device > 1:
            return self
        return dataclasses.replace(
            self, **{f: "xla" for f in IMPLEMENTATION_FIELDS if getattr(self, f) == "auto"}
        )

    def architecture(self) -> dict[str, Any]:
        """The fields that define the function and its parameters (implementation choices left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_IDENTITY}

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    def num_params(self) -> int:
        """Parameter count (embeddings included)."""
        d, f, v, t = self.d_model, self.d_model * self.mlp_ratio, self.vocab_size, self.seq_len
        per_layer = (
            4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d
        )  # attn (qkv+o, biases), mlp, 2 layernorms
        pos = t * d if self.pos_encoding == "learned" else 0
        return v * d + pos + self.num_layers * per_layer + 2 * d + d * v + v

    def flops_per_token(self) -> float:
        """Forward matmul FLOPs per token (2 per multiply-add), attention scores included."""
        d, f, v, t = self.d_model, self.d_model * self.mlp_ratio, self.vocab_size, self.seq_len
        per_layer = (
            2 * (4 * d * d + 2 * d * f) + 2 * 2 * t * d
        )  # projections, mlp, QK^T and AV (full T)
        return float(self.num_layers * per_layer + 2 * d * v)
