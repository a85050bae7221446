"""PyTorch reference trainers for ``benchmarks.trainer`` (same model, same optimiser, same data).

The model mirrors ``difftrade.model.transformer.Transformer`` layer for layer (pre-LN blocks, fused QKV
projection, causal ``F.scaled_dot_product_attention``, tanh-GELU MLP, learned positions,
LayerNorm epsilon 1e-6) and uses the same parameter names, so difftrade's initial weights load
directly (``from_difftrade``): every implementation starts from the same weights and trains on
the same token batches, and their losses can be compared.

The optimiser is difftrade's (``difftrade.train.trainer.optimizer``): global-norm clipping per member,
AdamW (b1, b2, eps 1e-8, decoupled weight decay on matrices only), linear warm-up then cosine
decay, peak rate ``lr``. Not mirrored: difftrade's per-step NaN guard (skip the update if the
loss or any gradient is non-finite) and its per-step exact-match metric.

Two trainers:

* ``train_eager``: the plain PyTorch way, one member after another: ``nn.Module``,
  ``torch.optim.AdamW`` (``fused=True`` on CUDA), ``clip_grad_norm_``, ``torch.autocast`` bf16.
* ``train_func``: all members at once with ``torch.func``: stacked parameters (the layout of
  ``torch.func.stack_module_state``), ``functional_call`` on a meta-device module,
  ``vmap(grad_and_value(loss))`` over members, AdamW written with ``torch._foreach_*`` ops.

Neither is charged for data generation: they read pre-generated token batches already on the
device. Only torch is imported here (no jax), so this module works wherever torch does.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6  # flax LayerNorm's default


class Block(nn.Module):
    def __init__(self, d_model: int, num_heads: int, mlp_ratio: int, attention: str = "sdpa"):
        super().__init__()
        self.num_heads, self.attention = num_heads, attention
        self.ln1 = nn.LayerNorm(d_model, eps=LN_EPS)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model, eps=LN_EPS)
        self.up = nn.Linear(d_model, mlp_ratio * d_model)
        self.down = nn.Linear(mlp_ratio * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        # Same column order as difftrade: reshape to (3, heads, head_dim).
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.num_heads, d // self.num_heads).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # [B, H, T, Dh]
        if self.attention == "sdpa":
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # explicit causal softmax attention (fallback where SDPA cannot be vmapped)
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            a = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1) @ v
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.ln2(x)), approximate="tanh"))


class Transformer(nn.Module):
    """tokens int64 ``[B, T]`` -> logits ``[B, T, V]`` (difftrade's architecture)."""

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        d_model: int,
        num_layers: int,
        num_heads: int,
        mlp_ratio: int,
        attention: str = "sdpa",
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Parameter(0.02 * torch.randn(seq_len, d_model))
        self.blocks = nn.ModuleList(
            [Block(d_model, num_heads, mlp_ratio, attention) for _ in range(num_layers)]
        )
        self.ln_f = nn.LayerNorm(d_model, eps=LN_EPS)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos[: tokens.shape[-1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def from_difftrade(flat: dict[str, object]) -> dict[str, torch.Tensor]:
    """difftrade parameter names/arrays (``blocks.0.qkv.kernel`` -> ``[..., in, out]``) to torch
    names/tensors (``blocks.0.qkv.weight`` -> ``[..., out, in]``). A leading member axis is kept."""
    out = {}
    for name, value in flat.items():
        t = torch.as_tensor(value)
        parts = name.split(".")
        if parts[-1] == "kernel":
            parts[-1], t = "weight", t.transpose(-2, -1)
        elif parts[-1] in ("scale", "embedding"):
            parts[-1] = "weight"
        out[".".join(parts)] = t.contiguous()
    return out


def schedule(step: int, steps: int, warmup_steps: int, final_fraction: float) -> float:
    """``optax.warmup_cosine_decay_schedule(0, 1, max(warmup, 1), steps, final)`` at ``step``."""
    warmup = max(warmup_steps, 1)
    if step < warmup:
        return step / warmup
    progress = min(step - warmup, steps - warmup) / max(steps - warmup, 1)
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def masked_ce(
    logits: torch.Tensor, targets: torch.Tensor, target_mask: torch.Tensor
) -> torch.Tensor:
    """Mean answer-token cross-entropy (difftrade's ``masked_loss``): logits ``[B, T, V]``,
    targets int64 ``[B, T]``, target_mask float ``[B, T]``."""
    ce = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    return (ce * target_mask.flatten()).sum() / target_mask.sum().clamp(min=1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_bytes(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def _timed(
    run: Callable[[], torch.Tensor], device: torch.device, repeats: int
) -> tuple[float, list[float], torch.Tensor]:
    """(first-call seconds, per-repeat seconds, last losses); every call is synchronised."""
    start = time.perf_counter()
    losses = run()
    _sync(device)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        losses = run()
        _sync(device)
        times.append(time.perf_counter() - start)
    return first, times, losses


def train_eager(
    model_kw: dict,
    init: dict[str, torch.Tensor],
    tokens: torch.Tensor,
    target_mask: torch.Tensor,
    hp: dict,
    device: torch.device,
    bf16: bool,
    repeats: int,
) -> dict:
    """Train members ``0..M-1`` one after another; ``init[name]`` ``[M, ...]``, tokens int64
    ``[M, S, B, L]``, target_mask float ``[M, S, B, L-1]``; ``hp``: lr, steps, warmup_steps,
    final_fraction, b1, b2, weight_decay, grad_clip. The first call (a warm-up: cuBLAS/cuDNN
    handles, autocast caches, allocator growth) trains member 0 only and is reported apart."""
    model = Transformer(**model_kw).to(device)
    names = [n for n, _ in model.named_parameters()]
    final = {n: torch.empty_like(init[n]) for n in names}
    steps = hp["steps"]
    lrs = [
        hp["lr"] * schedule(t, steps, hp["warmup_steps"], hp["final_fraction"])
        for t in range(steps)
    ]
    members = tokens.shape[0]

    def run(member_ids) -> torch.Tensor:
        losses = torch.zeros(len(member_ids), steps, device=device)
        for i, m in enumerate(member_ids):
            with torch.no_grad():
                for n, p in model.named_parameters():
                    p.copy_(init[n][m])
            params = list(model.parameters())
            groups = [
                {"params": [p for p in params if p.dim() >= 2], "weight_decay": hp["weight_decay"]},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
            ]
            opt = torch.optim.AdamW(
                groups,
                lr=hp["lr"],
                betas=(hp["b1"], hp["b2"]),
                eps=1e-8,
                **({"fused": True} if device.type == "cuda" else {"foreach": True}),
            )
            for t in range(steps):
                for g in opt.param_groups:
                    g["lr"] = lrs[t]
                batch = tokens[m, t]
                with _autocast(device, bf16):
                    logits = model(batch[:, :-1])
                loss = masked_ce(logits, batch[:, 1:], target_mask[m, t])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, hp["grad_clip"], foreach=True)
                opt.step()
                opt.zero_grad(set_to_none=True)
                losses[i, t] = loss.detach()
            with torch.no_grad():
                for n, p in model.named_parameters():
                    final[n][m].copy_(p)
        return losses

    _peak_reset(device)
    start = time.perf_counter()
    run([0])
    _sync(device)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        losses = run(range(members))
        _sync(device)
        times.append(time.perf_counter() - start)
    return {
        "first_call_s": first,
        "times": times,
        "losses": losses.cpu(),
        "peak_bytes": _peak_bytes(device),
    }


def _vmappable_attention(
    model_kw: dict,
    init: dict[str, torch.Tensor],
    tokens: torch.Tensor,
    target_mask: torch.Tensor,
    device: torch.device,
    bf16: bool,
) -> tuple[str, str]:
    """'sdpa' if ``vmap(grad(...))`` runs through ``F.scaled_dot_product_attention`` here, else
    'manual' and the reason (older torch builds lack batching rules for some SDPA kernels)."""
    try:
        base = copy.deepcopy(Transformer(**model_kw, attention="sdpa")).to("meta")
        loss_fn = _loss_fn(base, device, bf16)
        p = {n: v[:2] for n, v in init.items()}
        torch.func.vmap(torch.func.grad_and_value(loss_fn))(p, tokens[:2, 0], target_mask[:2, 0])
        _sync(device)
        return "sdpa", ""
    except Exception as err:  # noqa: BLE001 - any failure means: use the explicit attention
        return "manual", f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"


def _loss_fn(base: nn.Module, device: torch.device, bf16: bool):
    def loss_fn(params, batch, mask):
        with _autocast(device, bf16):
            logits = torch.func.functional_call(base, params, (batch[:, :-1],))
        return masked_ce(logits, batch[:, 1:], mask)

    return loss_fn


def train_func(
    model_kw: dict,
    init: dict[str, torch.Tensor],
    tokens: torch.Tensor,
    target_mask: torch.Tensor,
    hp: dict,
    device: torch.device,
    bf16: bool,
    repeats: int,
) -> dict:
    """Train all ``M`` members together with ``torch.func`` (shapes as in ``train_eager``).

    Per step: ``vmap(grad_and_value(loss))`` over members, per-member global-norm clipping,
    AdamW on the stacked ``[M, ...]`` tensors with ``torch._foreach_*`` ops. The first call
    (reported apart) runs the whole schedule once as a warm-up."""
    attention, why = _vmappable_attention(model_kw, init, tokens, target_mask, device, bf16)
    base = copy.deepcopy(Transformer(**model_kw, attention=attention)).to("meta")
    step_fn = torch.func.vmap(torch.func.grad_and_value(_loss_fn(base, device, bf16)))
    names = [n for n, _ in base.named_parameters()]
    decay = [n for n in names if init[n].dim() >= 3]  # matrices (ndim >= 2 per member)
    steps, b1, b2, eps, clip = hp["steps"], hp["b1"], hp["b2"], 1e-8, hp["grad_clip"]
    lrs = [
        hp["lr"] * schedule(t, steps, hp["warmup_steps"], hp["final_fraction"])
        for t in range(steps)
    ]

    def run() -> torch.Tensor:
        params = {n: init[n].clone() for n in names}
        p_list = [params[n] for n in names]
        p_decay = [params[n] for n in decay]
        exp_avg = [torch.zeros_like(p) for p in p_list]
        exp_avg_sq = [torch.zeros_like(p) for p in p_list]
        losses = torch.zeros(init[names[0]].shape[0], steps, device=device)
        for t in range(steps):
            grads, loss = step_fn(params, tokens[:, t], target_mask[:, t])
            g_list = [grads[n] for n in names]
            # Per-member global norm: optax.clip_by_global_norm, g * clip / max(norm, clip).
            sq = torch.stack([g.float().pow(2).flatten(1).sum(1) for g in g_list]).sum(0)
            coef = clip / torch.clamp(sq.sqrt(), min=clip)
            g_list = [g * coef.view(-1, *([1] * (g.dim() - 1))) for g in g_list]
            torch._foreach_mul_(exp_avg, b1)
            torch._foreach_add_(exp_avg, g_list, alpha=1 - b1)
            torch._foreach_mul_(exp_avg_sq, b2)
            torch._foreach_addcmul_(exp_avg_sq, g_list, g_list, value=1 - b2)
            bc1, bc2 = 1 - b1 ** (t + 1), 1 - b2 ** (t + 1)
            denom = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_div_(denom, math.sqrt(bc2))
            torch._foreach_add_(denom, eps)
            if p_decay:  # decoupled decay: p *= 1 - lr_t * wd
                torch._foreach_mul_(p_decay, 1 - lrs[t] * hp["weight_decay"])
            torch._foreach_addcdiv_(p_list, exp_avg, denom, value=-lrs[t] / bc1)
            losses[:, t] = loss.detach()
        return losses

    _peak_reset(device)
    with torch.no_grad():  # torch.func.grad computes its own gradients; no autograd graph outside
        first, times, losses = _timed(run, device, repeats)
    return {
        "first_call_s": first,
        "times": times,
        "losses": losses.cpu(),
        "peak_bytes": _peak_bytes(device),
        "attention": attention,
        "attention_note": why,
    }
