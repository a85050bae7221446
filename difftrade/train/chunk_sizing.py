"""Device-memory sizing of a training chunk: the estimated bytes one member needs, the free device
memory, the largest chunk that fits, and the refusal (before compiling) of one that does not.
"""

from __future__ import annotations

import jax

from difftrade.config.fields import refuse
from difftrade.config.model_config import ModelConfig
from difftrade.config.train_config import TrainConfig


def bytes_per_member(model_cfg: ModelConfig, cfg: TrainConfig, seq_len: int) -> int:
    """Rough device-memory need of one member during training (bytes).

    Parameters + gradients + two Adam moments + a copy (float32; one more with a prefix phase,
    whose weights are returned too), plus activations saved for the backward pass: about
    ``14 * d_model + 2 * mlp * d_model + 2 * heads * T`` floats per token per layer, plus
    logits. The fused kernels save neither the MLP hidden layer (``mlp = 'pallas'``) nor the
    attention scores (``attention = 'pallas'``), so those terms drop.
    """
    return _state_bytes(model_cfg, cfg) + cfg.batch_size * _example_bytes(model_cfg, seq_len)


def _state_bytes(model_cfg: ModelConfig, cfg: TrainConfig) -> int:
    """Bytes of one member's weights and optimizer state (see :func:`bytes_per_member`)."""
    return model_cfg.num_params() * 4 * (6 + (cfg.prefix_steps > 0))


def _example_bytes(model_cfg: ModelConfig, seq_len: int) -> int:
    """Activation bytes one training example of a minibatch keeps (see :func:`bytes_per_member`)."""
    hidden = 0 if model_cfg.mlp == "pallas" else 2 * model_cfg.mlp_ratio * model_cfg.d_model
    scores = 0 if model_cfg.attention == "pallas" else 2 * model_cfg.num_heads * seq_len
    per_tok_layer = 14 * model_cfg.d_model + hidden + scores
    bytes_per = 2 if model_cfg.compute_dtype != "float32" else 4
    return seq_len * (model_cfg.num_layers * per_tok_layer + 3 * model_cfg.vocab_size) * bytes_per


def device_memory_bytes() -> int:
    """Free memory of the first device if known (GPU/TPU), else 8 GiB for CPU."""
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
        limit = stats.get("bytes_limit", 0) - stats.get("bytes_in_use", 0)
        if limit > 0:
            return int(limit)
    except Exception:  # noqa: BLE001, S110 - backends without memory stats
        pass
    return 8 * 2**30


def auto_chunk_size(
    model_cfg: ModelConfig, cfg: TrainConfig, seq_len: int, num_members: int, fraction: float = 0.5
) -> int:
    """Largest chunk that fits ``fraction`` of device memory (per device), times device count."""
    per_device = max(
        1, int(fraction * device_memory_bytes() // bytes_per_member(model_cfg, cfg, seq_len))
    )
    return max(1, min(num_members, per_device * jax.device_count()))


def check_chunk_fits(
    model_cfg: ModelConfig, cfg: TrainConfig, seq_len: int, chunk_size: int
) -> None:
    """Refuse (before compiling) a chunk whose estimated need exceeds the free device memory.

    ``chunk_size`` 0 (automatic) needs one member per device to fit. A member that does not fit
    alone is refused by its ``train.batch_size`` (or, when even one example is too many, by the
    model's size); a chunk of members that each fit, by ``run.chunk_size``.
    """
    gib = 2**30
    have = device_memory_bytes()
    state, example = _state_bytes(model_cfg, cfg), _example_bytes(model_cfg, seq_len)
    one = state + cfg.batch_size * example
    if one > have:
        if state + example > have:
            raise refuse(
                "model",
                "d_model",
                model_cfg.d_model,
                f"a model whose weights and Adam state fit {have / gib:.1f} GiB (fewer model.num_layers, "
                "a smaller model.d_model or model.vocab_size)",
                f" with model.num_layers={model_cfg.num_layers} does not fit one member on a device: about "
                f"{(state + example) / gib:.1f} GiB at batch size 1, {have / gib:.1f} GiB free",
            )
        raise refuse(
            "train",
            "batch_size",
            cfg.batch_size,
            f"an integer in [1, {(have - state) // example}] on this device",
            f" does not fit: one member needs about {one / gib:.1f} GiB, {have / gib:.1f} GiB free",
        )
    per_device = max(1, -(-chunk_size // jax.device_count()))
    if per_device * one > have:
        fits = have // one * jax.device_count()
        raise refuse(
            "run",
            "chunk_size",
            chunk_size,
            f"at most {fits} members per chunk (or 0 for automatic)",
            f" does not fit: about {per_device * one / gib:.1f} GiB per device needed, {have / gib:.1f} GiB free",
        )
