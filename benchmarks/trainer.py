"""Trainer throughput: difftrade's vmapped population trainer against a per-member loop and PyTorch.

Run from the repository root::

    python -m benchmarks.trainer                                   # M=256, d_model=128 (GPU)
    python -m benchmarks.trainer --members 8 --d-model 64 --steps 50 --batch 32   # CPU, tiny
    python -m benchmarks.trainer --impls vmap,loop --breakdown --out trainer.json

Four implementations train the same architecture (``--layers``-layer pre-LN decoder, GELU MLP
ratio 4, learned positions, vocabulary 64) on sequences of the addition task at
``d_max = --seq-task-dmax`` (8: 29 tokens, 28 model inputs), with the same steps, batch size,
optimiser (difftrade's: clip 1.0, AdamW b=(0.9, 0.98), decay 0.1 on matrices, warm-up + cosine)
and the same initial weights:

* ``vmap``: ``difftrade.train.trainer.train_population`` on a Population of M members (point
  distribution at the hardest level, budget 2^30): one ``jit(vmap(scan(step)))``. Its time
  **includes on-the-fly data generation**, which is part of difftrade's cost.
* ``loop``: ``make_member_trainer`` (plus the member's initialisation) jitted once and called
  once per member, dispatched back to back.
* ``torch_eager``: a PyTorch ``nn.Module`` trained one member after another (SDPA causal
  attention, ``torch.autocast`` bf16 on CUDA, fused AdamW, ``clip_grad_norm_``).
* ``torch_func``: a ``torch.func`` ensemble, ``vmap(grad_and_value(functional_call))`` over
  members with AdamW in ``torch._foreach_*`` ops.

The torch trainers are **not** charged for data generation: they read token batches that
difftrade generated beforehand (exactly the examples difftrade's trainer draws, member by
member and step by step) and that already sit on the device.

Each implementation runs in its own subprocess, so peak device memory is per implementation
(jax: ``memory_stats()['peak_bytes_in_use']``; torch: ``torch.cuda.max_memory_allocated``; on
CPU the process's peak RSS instead, labelled ``rss``) and the frameworks never share a GPU
allocator. The per-member loops (``loop``, ``torch_eager``) time the first ``--loop-members``
members (default 32; 0 = all): a sequential loop's throughput does not depend on how many
members it runs, and timing all 256 would take minutes.

Reported per implementation: the first call (compile + warm-up) apart, the median wall time
over ``--repeats`` timed calls, member-steps/s, achieved TFLOP/s, MFU and the ratio to ``vmap``.

FLOPs: training = 3 x forward matmul FLOPs per token (forward + backward's two matmuls per
forward matmul) x ``batch x 28`` tokens per member-step, with the forward count of
``ModelConfig.flops_per_token`` (2 per multiply-add; QKV/output/MLP projections, the logit
head, and ``QK^T``/``AV`` over the full 28 positions, i.e. causal masking not discounted;
embeddings, LayerNorm, softmax and the optimiser not counted). MFU divides by the best rate of
a large matrix product measured in the same run with jax (``8192^3`` bf16 on GPU, ``2048^3``
float32 on CPU).

Also: ``difftrade.train.evaluate.evaluate_population`` (default ``EvalConfig``) on the members that
``vmap`` trained, as a percentage of ``vmap``'s training time, and with ``--breakdown`` a split
of one vmapped training step into data generation, forward+backward and optimiser.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from difftrade.config.model_config import ATTENTIONS, MLPS  # imports no jax

IMPLS = ("vmap", "loop", "torch_eager", "torch_func")
TORCH_IMPLS = ("torch_eager", "torch_func")
REPO_ROOT = Path(__file__).resolve().parent.parent
BUDGET = 2**30  # "budget large": minibatches drawn from [0, 2^30), practically never a repeat


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    members: int = 256
    d_model: int = 128
    layers: int = 2
    heads: int = 4
    steps: int = 50
    batch: int = 64
    seq_task_dmax: int = 8
    repeats: int = 3
    loop_members: int = 32
    dtype: str = "auto"  # auto: bfloat16 compute on an accelerator, float32 on CPU
    learning_rate: float = 1e-3
    evaluate: bool = True
    breakdown: bool = False
    profile: bool = False
    attention: str = "auto"  # difftrade's model.attention for the jax rows (vmap, loop)
    mlp: str = "auto"  # difftrade's model.mlp for the jax rows
    cpu_devices: int = 1  # jax CPU devices for the vmap row (0 = one per core, as the CLI does)

    def __post_init__(self) -> None:
        for field in (
            "members",
            "d_model",
            "layers",
            "heads",
            "steps",
            "batch",
            "seq_task_dmax",
            "repeats",
        ):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{field.replace('_', '-')}={value!r}; allowed: an integer >= 1")
        if self.loop_members < 0:
            raise ValueError(f"--loop-members={self.loop_members}; allowed: >= 0 (0 = all members)")
        if self.d_model % self.heads:
            raise ValueError(f"--d-model={self.d_model} is not divisible by --heads={self.heads}")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"--dtype={self.dtype!r}; allowed: auto, float32, bfloat16")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"--attention={self.attention!r}; allowed: {', '.join(ATTENTIONS)}")
        if self.cpu_devices < 0:
            raise ValueError(f"--cpu-devices={self.cpu_devices}; allowed: >= 0 (0 = one per core)")
        if self.mlp not in MLPS:
            raise ValueError(f"--mlp={self.mlp!r}; allowed: {', '.join(MLPS)}")

    @property
    def timed_loop_members(self) -> int:
        return self.members if self.loop_members == 0 else min(self.members, self.loop_members)


# ---- shared setup (jax side) ------------------------------------------------------------------
def num_checkpoints(steps: int) -> int:
    """Largest of 10, 5, 2, 1 that divides ``steps`` (TrainConfig needs a divisor)."""
    return next(k for k in (10, 5, 2, 1) if steps % k == 0)


def setup(cfg: BenchConfig, compute_dtype: str):
    """(task, model config, train config, population, run key) shared by every implementation."""
    import jax
    import numpy as np

    from difftrade.config import level_weights
    from difftrade.config.model_config import ModelConfig
    from difftrade.config.train_config import Population, TrainConfig
    from difftrade.tasks.addition import Addition

    task = Addition(d_max=cfg.seq_task_dmax)
    model_cfg = ModelConfig(
        vocab_size=64,
        seq_len=task.seq_len - 1,
        d_model=cfg.d_model,
        num_layers=cfg.layers,
        num_heads=cfg.heads,
        mlp_ratio=4,
        pos_encoding="learned",
        compute_dtype=compute_dtype,
        attention=cfg.attention,
        mlp=cfg.mlp,
    )
    train_cfg = TrainConfig(
        steps=cfg.steps,
        batch_size=cfg.batch,
        warmup_steps=cfg.steps // 10,
        num_checkpoints=num_checkpoints(cfg.steps),
    )
    m = cfg.members
    pop = Population(
        weights=np.tile(level_weights.point(task, task.d_max), (m, 1)).astype(np.float32),
        budget=np.full(m, BUDGET, np.int64),
        seed=np.arange(m, dtype=np.int64),
        learning_rate=np.full(m, cfg.learning_rate, np.float32),
    )
    return task, model_cfg, train_cfg, pop, jax.random.key(0)


def jax_dtype(cfg: BenchConfig) -> str:
    import jax

    if cfg.dtype != "auto":
        return cfg.dtype
    return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def jax_env() -> dict:
    import flax
    import jax
    import optax

    dev = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": f"{dev.platform}:{dev.device_kind}",
        "device_count": jax.device_count(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
    }


def jax_peak_bytes() -> int | None:
    import jax

    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without memory stats
        stats = {}
    return int(stats["peak_bytes_in_use"]) if "peak_bytes_in_use" in stats else None


def rss_peak_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


def matmul_peak(repeats: int = 5, calls: int = 10) -> dict:
    """Best rate of a large matrix product in jax: 8192^3 bf16 on an accelerator, 2048^3 f32 on CPU."""
    import jax
    import jax.numpy as jnp

    on_cpu = jax.default_backend() == "cpu"
    n, dtype = (2048, jnp.float32) if on_cpu else (8192, jnp.bfloat16)
    ka, kb = jax.random.split(jax.random.key(1))
    a = jax.random.normal(ka, (n, n), dtype)
    b = jax.random.normal(kb, (n, n), dtype)
    f = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(f(a, b))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        outs = [f(a, b) for _ in range(calls)]
        jax.block_until_ready(outs)
        best = min(best, (time.perf_counter() - start) / calls)
    return {
        "n": n,
        "dtype": jnp.dtype(dtype).name,
        "seconds": best,
        "tflops": 2 * n**3 / best / 1e12,
    }


def pregenerate(task, pop, train_cfg, run_key, members: int):
    """The token batches difftrade's trainer draws for members ``0..members-1``, every step.

    Returns numpy tokens int32 ``[members, S, B, L]`` and loss mask bool ``[members, S, B, L]``
    (same keys and index draws as ``make_member_trainer``'s step).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from difftrade.tasks import data
    from difftrade.train.trainer import population_arrays, run_keys

    roots = run_keys(run_key)
    arrays = population_arrays(pop.take(np.arange(members)))

    def member_batches(weights, budget, seed):
        data_root = jax.random.fold_in(roots["data"], seed)
        order_key = jax.random.fold_in(roots["order"], seed)

        def at(t):
            idx = jax.random.randint(
                jax.random.fold_in(order_key, t), (train_cfg.batch_size,), 0, budget
            )
            tokens, mask, _ = data.examples(task, data_root, data.SPLITS["train"], weights, idx)
            return tokens, mask

        return jax.vmap(at)(jnp.arange(train_cfg.steps))

    gen = jax.jit(jax.vmap(member_batches))
    tokens, mask = gen(arrays["weights"], arrays["budget"], arrays["seed"])
    return np.asarray(tokens), np.asarray(mask)


def init_flat(model_cfg, run_key, seeds) -> dict:
    """difftrade's initial weights of members ``seeds``: dotted name -> numpy ``[M, ...]``."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from difftrade.train.trainer import member_init_params

    params = jax.jit(jax.vmap(lambda s: member_init_params(model_cfg, run_key, s)))(
        jnp.asarray(seeds, jnp.int32)
    )
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [
            str(getattr(k, "key", getattr(k, "idx", ""))) for k in path if not hasattr(k, "name")
        ]
        flat[".".join(keys)] = np.asarray(leaf)
    return flat


# ---- workers (one implementation per process) -------------------------------------------------
def _timed_calls(call, repeats: int) -> tuple[float, list[float], object]:
    import jax

    start = time.perf_counter()
    out = jax.block_until_ready(call())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(call())
        times.append(time.perf_counter() - start)
    return first, times, out


def ran_kernels(model_cfg, per_device: int) -> dict:
    """The kernels a program of ``per_device`` members per device runs ('auto' resolved)."""
    from difftrade.model.transformer import implementation

    resolved = model_cfg.for_members(per_device)
    return {f: implementation(resolved, f) for f in ("attention", "mlp")}


def worker_vmap(cfg: BenchConfig, measure_peak: bool) -> dict:
    import jax
    import numpy as np

    from difftrade.config.sections import EvalConfig
    from difftrade.train.evaluate import evaluate_population
    from difftrade.train.trainer import train_population

    dtype = jax_dtype(cfg)
    task, model_cfg, train_cfg, pop, run_key = setup(cfg, dtype)
    first, times, out = _timed_calls(
        lambda: train_population(task, pop, model_cfg, train_cfg, run_key), cfg.repeats
    )
    result = {
        "impl": "vmap",
        "members_timed": cfg.members,
        "first_call_s": first,
        "times": times,
        "compute_dtype": dtype,
        "peak_bytes": jax_peak_bytes(),
        "rss_bytes": rss_peak_bytes(),
        "final_loss": float(np.mean(np.asarray(out.loss_curve)[:, -1])),
        "nonfinite_steps": int(np.sum(np.asarray(out.nonfinite_steps))),
        "kernels": ran_kernels(model_cfg, -(-cfg.members // jax.device_count())),
        "env": jax_env(),
    }
    if cfg.evaluate:
        eval_cfg = EvalConfig()
        call = lambda: evaluate_population(
            task, out.params, pop.weights, pop.budget, pop.seed, model_cfg, eval_cfg, run_key
        )
        e_first, e_times, e_out = _timed_calls(call, cfg.repeats)
        result["eval"] = {
            "first_call_s": e_first,
            "times": e_times,
            "median_s": statistics.median(e_times),
            "examples_per_member": eval_cfg.n_test * task.num_levels + eval_cfg.n_train_eval,
            "peak_bytes_incl_eval": jax_peak_bytes(),
            "mean_level_exact": np.mean(e_out["level_exact"], axis=0).round(4).tolist(),
        }
    if cfg.breakdown:
        result["breakdown"] = breakdown(cfg, task, model_cfg, train_cfg, pop, run_key)
    if cfg.profile:
        result["profile"] = profile_call(
            lambda: train_population(task, pop, model_cfg, train_cfg, run_key)
        )
    if measure_peak:
        result["matmul_peak"] = matmul_peak()
    return result


def worker_loop(cfg: BenchConfig, measure_peak: bool) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from difftrade.train.trainer import make_member_trainer, member_init_params

    dtype = jax_dtype(cfg)
    task, model_cfg, train_cfg, pop, run_key = setup(cfg, dtype)
    model_cfg = model_cfg.for_members(1)  # what difftrade runs for one member ('auto' -> xla)
    member = make_member_trainer(task, model_cfg, train_cfg, run_key)
    train_one = jax.jit(
        lambda w, b, s, lr: member(member_init_params(model_cfg, run_key, s), w, b, s, lr)
    )
    n = cfg.timed_loop_members
    args = [
        (
            jnp.asarray(pop.weights[m], jnp.float32),
            jnp.int32(pop.budget[m]),
            jnp.int32(pop.seed[m]),
            jnp.float32(pop.learning_rate[m]),
        )
        for m in range(n)
    ]
    jax.block_until_ready(args)
    start = time.perf_counter()
    jax.block_until_ready(train_one(*args[0]))  # compile + member 0
    first = time.perf_counter() - start
    times = []
    for _ in range(cfg.repeats):
        start = time.perf_counter()
        outs = jax.block_until_ready([train_one(*a) for a in args])  # dispatched back to back
        times.append(time.perf_counter() - start)
    result = {
        "impl": "loop",
        "kernels": ran_kernels(model_cfg, 1),
        "members_timed": n,
        "first_call_s": first,
        "times": times,
        "compute_dtype": dtype,
        "peak_bytes": jax_peak_bytes(),
        "rss_bytes": rss_peak_bytes(),
        "final_loss": float(np.mean([np.asarray(o.loss_curve)[-1] for o in outs])),
        "nonfinite_steps": int(sum(int(o.nonfinite_steps) for o in outs)),
        "env": jax_env(),
    }
    if measure_peak:
        result["matmul_peak"] = matmul_peak()
    return result


def worker_torch(cfg: BenchConfig, impl: str) -> dict:
    import numpy as np
    import torch

    from benchmarks import torch_ref

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = (
        cfg.dtype if cfg.dtype != "auto" else ("bfloat16" if device.type == "cuda" else "float32")
    )
    # jax runs on CPU in this process (JAX_PLATFORMS=cpu, set by the parent): it only makes data.
    task, model_cfg, train_cfg, pop, run_key = setup(cfg, "float32")
    n = cfg.timed_loop_members if impl == "torch_eager" else cfg.members
    start = time.perf_counter()
    tokens, mask = pregenerate(task, pop, train_cfg, run_key, n)
    init = torch_ref.from_difftrade(init_flat(model_cfg, run_key, pop.seed[:n]))
    prep_s = time.perf_counter() - start
    tokens_t = torch.from_numpy(tokens.astype(np.int64)).to(device)
    target_mask = torch.from_numpy(mask[..., 1:].astype(np.float32)).to(device)
    init = {k: v.to(device) for k, v in init.items()}
    data_bytes = tokens_t.nbytes + target_mask.nbytes
    model_kw = {
        "vocab_size": model_cfg.vocab_size,
        "seq_len": model_cfg.seq_len,
        "d_model": model_cfg.d_model,
        "num_layers": model_cfg.num_layers,
        "num_heads": model_cfg.num_heads,
        "mlp_ratio": model_cfg.mlp_ratio,
    }
    hp = {
        "lr": cfg.learning_rate,
        "steps": train_cfg.steps,
        "warmup_steps": train_cfg.warmup_steps,
        "final_fraction": train_cfg.final_lr_fraction,
        "b1": train_cfg.b1,
        "b2": train_cfg.b2,
        "weight_decay": train_cfg.weight_decay,
        "grad_clip": train_cfg.grad_clip,
    }
    bf16 = dtype == "bfloat16"
    train = torch_ref.train_eager if impl == "torch_eager" else torch_ref.train_func
    out = train(model_kw, init, tokens_t, target_mask, hp, device, bf16, cfg.repeats)
    seg = train_cfg.steps // train_cfg.num_checkpoints
    losses = out.pop("losses")
    peak = out.pop("peak_bytes")
    return dict(
        impl=impl,
        members_timed=n,
        compute_dtype=dtype + (" (autocast)" if bf16 else ""),
        peak_bytes=None if peak is None else peak - data_bytes,
        data_bytes=data_bytes,
        rss_bytes=rss_peak_bytes(),
        final_loss=float(losses[:, -seg:].mean()),
        data_prep_s=prep_s,
        nonfinite_steps=None,
        env={
            "torch": torch.__version__,
            "device": str(torch.cuda.get_device_name(device)) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(),
        },
        **out,
    )


def worker_peak(cfg: BenchConfig) -> dict:
    return {"impl": "peak", "matmul_peak": matmul_peak(), "env": jax_env()}


# ---- device profile of one call ----------------------------------------------------------------
KERNEL_KINDS = (  # (kind, substrings of a GPU kernel / XLA op name), first match wins
    ("pallas kernels", ("fused_mlp", "mha_")),
    (
        "matmul",
        ("gemm", "cublas", "cutlass", "xmma", "nvjet", "dot", "matmul", "triton_gemm"),
    ),  # nvjet: cuBLAS on Hopper
    ("elementwise / reduction fusions", ("fusion", "reduce", "transpose", "copy", "convert")),
)


def kernel_kind(name: str) -> str:
    low = name.lower()
    return next((kind for kind, keys in KERNEL_KINDS if any(k in low for k in keys)), "other")


def profile_call(call) -> dict:
    """Device time by kernel over one call under ``jax.profiler`` (GPU/TPU planes only).

    Returns total device time, the time by kind (matmul, fusions, Pallas kernels, other) and the
    25 longest kernels; on a CPU there is no device plane and the result says so.
    """
    import glob

    import jax
    from jax.profiler import ProfileData

    try:
        with tempfile.TemporaryDirectory() as tmp:
            with jax.profiler.trace(tmp):
                jax.block_until_ready(call())
            paths = glob.glob(f"{tmp}/**/*.xplane.pb", recursive=True)
            data = ProfileData.from_file(paths[0])
            by_name: dict[str, float] = {}
            for plane in data.planes:
                if not plane.name.startswith("/device:"):
                    continue
                lines = list(plane.lines)
                # kernels on the device streams; XLA's per-op lines would count the same time twice
                streams = [ln for ln in lines if ln.name.startswith("Stream")] or lines
                for line in streams:
                    for event in line.events:
                        by_name[event.name] = (
                            by_name.get(event.name, 0.0) + event.duration_ns * 1e-9
                        )
    except Exception as err:  # noqa: BLE001 - profiling must never cost the benchmark its numbers
        return {"error": f"{type(err).__name__}: {err}"}
    total = sum(by_name.values())
    if not total:
        return {"error": "no device plane in the trace (CPU backend)"}
    kinds: dict[str, float] = {}
    for name, t in by_name.items():
        kinds[kernel_kind(name)] = kinds.get(kernel_kind(name), 0.0) + t
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:25]
    return {
        "device_s": total,
        "by_kind": kinds,
        "top": [{"name": n, "s": t, "kind": kernel_kind(n)} for n, t in top],
    }


# ---- breakdown of one vmapped step -------------------------------------------------------------
def breakdown(cfg: BenchConfig, task, model_cfg, train_cfg, pop, run_key) -> dict:
    """Seconds per step (all M members, vmapped, S steps in a scan like the trainer) of:

    * ``data``: minibatch index draw + ``data.examples`` (what the trainer generates per step);
    * ``fwd_bwd``: ``value_and_grad(masked_loss)`` on a fixed batch, applied as plain SGD so
      nothing is dead code;
    * ``optimizer``: ``optimizer(cfg).update`` + parameter update (fixed gradients, perturbed per
      step so nothing is hoisted out of the loop);
    * ``nan_guard``: the same plus the trainer's non-finite check and the two ``jnp.where`` over
      parameters and optimiser state;
    * ``full``: ``train_population`` (compiled by then). Pieces need not add up to ``full``
      (XLA fuses across them inside the real step).
    """
    import jax
    import jax.numpy as jnp

    from difftrade.model.transformer import graphdef
    from difftrade.tasks import data
    from difftrade.train.trainer import (
        masked_loss,
        member_init_params,
        optimizer,
        population_arrays,
        run_keys,
        train_population,
    )

    gdef, tx, roots = graphdef(model_cfg), optimizer(train_cfg), run_keys(run_key)
    arrays = population_arrays(pop)
    steps, b = train_cfg.steps, train_cfg.batch_size
    grad_fn = jax.value_and_grad(lambda p, t, m: masked_loss(gdef, p, t, m), has_aux=True)
    params0 = jax.jit(jax.vmap(lambda s: member_init_params(model_cfg, run_key, s)))(arrays["seed"])

    def batch_at(weights, budget, seed, t):
        data_root = jax.random.fold_in(roots["data"], seed)
        idx = jax.random.randint(
            jax.random.fold_in(jax.random.fold_in(roots["order"], seed), t), (b,), 0, budget
        )
        tokens, mask, _ = data.examples(task, data_root, data.SPLITS["train"], weights, idx)
        return tokens, mask

    def gen_member(weights, budget, seed):
        def step(acc, t):
            tokens, mask = batch_at(weights, budget, seed, t)
            return acc + jnp.sum(tokens) + jnp.sum(mask), None

        return jax.lax.scan(step, jnp.int32(0), jnp.arange(steps))[0]

    tokens, mask = jax.jit(jax.vmap(lambda w, bu, s: batch_at(w, bu, s, 0)))(
        arrays["weights"], arrays["budget"], arrays["seed"]
    )

    def fwd_bwd_member(params, tokens, mask):
        def step(p, t):
            (loss, _), g = grad_fn(p, tokens, mask)
            return jax.tree.map(lambda a, u: a - 1e-4 * u.astype(a.dtype), p, g), loss

        return jax.lax.scan(step, params, jnp.arange(steps))[0]

    grads = jax.jit(jax.vmap(lambda p, t, m: grad_fn(p, t, m)[1]))(params0, tokens, mask)

    def opt_member(params, grads, lr, guard: bool):
        def step(carry, t):
            p, s = carry
            g = jax.tree.map(lambda x: x * (1 + 1e-7 * t), grads)
            updates, s2 = tx.update(g, s, p)
            p2 = jax.tree.map(lambda a, u: a - (lr * u).astype(a.dtype), p, updates)
            if guard:
                finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(g)]))
                p2 = jax.tree.map(lambda a, c: jnp.where(finite, a, c), p2, p)
                s2 = jax.tree.map(lambda a, c: jnp.where(finite, a, c), s2, s)
            return (p2, s2), None

        return jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))[0][0]

    pieces = {
        "data": (
            jax.jit(jax.vmap(gen_member)),
            (arrays["weights"], arrays["budget"], arrays["seed"]),
        ),
        "fwd_bwd": (jax.jit(jax.vmap(fwd_bwd_member)), (params0, tokens, mask)),
        "optimizer": (
            jax.jit(jax.vmap(lambda p, g, lr: opt_member(p, g, lr, False))),
            (params0, grads, arrays["learning_rate"]),
        ),
        "nan_guard": (
            jax.jit(jax.vmap(lambda p, g, lr: opt_member(p, g, lr, True))),
            (params0, grads, arrays["learning_rate"]),
        ),
    }
    out = {}
    for name, (fn, args) in pieces.items():
        first, times, _ = _timed_calls(lambda fn=fn, args=args: fn(*args), cfg.repeats)
        out[name] = {"first_call_s": first, "per_step_s": statistics.median(times) / steps}
    _, times, _ = _timed_calls(
        lambda: train_population(task, pop, model_cfg, train_cfg, run_key), cfg.repeats
    )
    out["full"] = {
        "first_call_s": None,
        "per_step_s": statistics.median(times) / steps,
    }  # compiled above
    return out


# ---- orchestration ---------------------------------------------------------------------------
def run_worker(kind: str, cfg: BenchConfig, measure_peak: bool = False) -> dict:
    """Run one implementation in a fresh Python process; returns its result dict (or an error)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    if kind in TORCH_IMPLS:
        env["JAX_PLATFORMS"] = "cpu"  # jax only generates the data there; the device is torch's
    if kind == "vmap" and cfg.cpu_devices != 1:  # no effect on GPU/TPU backends
        env["JAX_NUM_CPU_DEVICES"] = str(cfg.cpu_devices or os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.json"
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.trainer",
            "--_worker",
            kind,
            "--_result",
            str(path),
            "--_config",
            json.dumps(dataclasses.asdict(cfg)),
        ] + (["--_peak"] if measure_peak else [])
        start = time.perf_counter()
        proc = subprocess.run(
            cmd,
            check=False,
            env=env,
            cwd=str(REPO_ROOT),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0 or not path.exists():
            tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
            print(f"[{kind}] failed (exit {proc.returncode}):\n{tail}", file=sys.stderr, flush=True)
            lines = tail.splitlines()
            raised = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception)\b", ln)]
            return {
                "impl": kind,
                "error": (raised or lines or [f"exit {proc.returncode}"])[-1],
                "process_s": wall,
            }
        result = json.loads(path.read_text())
    result["process_s"] = wall
    return result


def train_flops_per_member_step(cfg: BenchConfig) -> float:
    """3 x forward matmul FLOPs (``ModelConfig.flops_per_token``) x batch x 28 tokens."""
    from difftrade.config.model_config import ModelConfig

    seq = 2 * cfg.seq_task_dmax + 1 + cfg.seq_task_dmax + 1 + 3 - 1  # Addition.seq_len - 1
    mc = ModelConfig(
        vocab_size=64, seq_len=seq, d_model=cfg.d_model, num_layers=cfg.layers, num_heads=cfg.heads
    )
    return 3.0 * mc.flops_per_token() * cfg.batch * seq


def summarise(cfg: BenchConfig, results: list[dict], peak: dict | None) -> list[dict]:
    flops = train_flops_per_member_step(cfg)
    rows = []
    vmap_rate = None
    for r in results:
        if "error" in r:
            rows.append({"impl": r["impl"], "error": r["error"]})
            continue
        median = statistics.median(r["times"])
        rate = r["members_timed"] * cfg.steps / median
        tflops = rate * flops / 1e12
        row = {
            "impl": r["impl"],
            "members_timed": r["members_timed"],
            "first_call_s": r["first_call_s"],
            "median_s": median,
            "member_steps_per_s": rate,
            "tflops": tflops,
            "mfu": tflops / peak["tflops"] if peak else None,
            "peak_bytes": r.get("peak_bytes"),
            "rss_bytes": r.get("rss_bytes"),
            "final_loss": r.get("final_loss"),
            "compute_dtype": r.get("compute_dtype"),
        }
        if "kernels" in r:
            row["kernels"] = r["kernels"]
        if r["impl"] == "vmap":
            vmap_rate = rate
        rows.append(row)
    for row in rows:
        if "error" not in row:
            row["vs_vmap"] = row["member_steps_per_s"] / vmap_rate if vmap_rate else None
    return rows


def _gib(row: dict) -> str:
    if row.get("peak_bytes") is not None:
        return f"{row['peak_bytes'] / 2**30:.2f}"
    if row.get("rss_bytes") is not None:
        return f"{row['rss_bytes'] / 2**30:.2f} (rss)"
    return "n/a"


def markdown(cfg: BenchConfig, rows: list[dict], results: list[dict], peak: dict | None) -> str:
    lines = []
    head = (
        "| impl | members timed | compute | compile + warm-up (s) | median (s) | member-steps/s | vs vmap "
        "| TFLOP/s | MFU | peak mem (GiB) | final loss |"
    )
    lines += [head, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['impl']} | failed: {row['error']} |" + " |" * 9)
            continue
        vs = f"{row['vs_vmap']:.2f}x" if row.get("vs_vmap") else "n/a"
        mfu = f"{100 * row['mfu']:.2f}%" if row.get("mfu") is not None else "n/a"
        lines.append(
            f"| {row['impl']} | {row['members_timed']} | {row['compute_dtype']} | {row['first_call_s']:.2f} | "
            f"{row['median_s']:.3f} | {row['member_steps_per_s']:,.0f} | {vs} | {row['tflops']:.3f} | {mfu} | "
            f"{_gib(row)} | {row['final_loss']:.4f} |"
        )
    vmap = next((r for r in results if r.get("impl") == "vmap" and "error" not in r), None)
    if vmap and "eval" in vmap:
        ev = vmap["eval"]
        train_s = statistics.median(vmap["times"])
        lines.append("")
        lines.append(
            f"evaluate_population (default EvalConfig, {ev['examples_per_member']:,} examples per member, "
            f"{cfg.members} members): median {ev['median_s']:.3f} s (first call {ev['first_call_s']:.2f} s) = "
            f"{100 * ev['median_s'] / train_s:.1f}% of vmap training time ({cfg.steps} steps); "
            f"{100 * ev['median_s'] / train_s * cfg.steps / 3000:.1f}% at a 3,000-step run."
        )
    if vmap and "breakdown" in vmap:
        bd = vmap["breakdown"]
        full = bd["full"]["per_step_s"]
        lines += [
            "",
            "Breakdown of one vmapped training step (all members):",
            "",
            "| piece | ms / step | % of full step | compile + first call (s) |",
            "|---|---:|---:|---:|",
        ]
        for name in ("data", "fwd_bwd", "optimizer", "nan_guard", "full"):
            p = bd[name]
            first = "(compiled above)" if p["first_call_s"] is None else f"{p['first_call_s']:.2f}"
            lines.append(
                f"| {name} | {1e3 * p['per_step_s']:.3f} | {100 * p['per_step_s'] / full:.1f}% | {first} |"
            )
    if vmap and "profile" in vmap:
        prof = vmap["profile"]
        lines.append("")
        if "error" in prof:
            lines.append(f"Profile of one vmap call: {prof['error']}.")
        else:
            total = prof["device_s"]
            kinds = ", ".join(
                f"{k} {100 * t / total:.1f}%"
                for k, t in sorted(prof["by_kind"].items(), key=lambda kv: -kv[1])
            )
            lines += [
                f"Profile of one vmap call ({cfg.steps} steps): {total:.3f} s of device kernels; {kinds}.",
                "",
                "| kernel | kind | s | % of device time |",
                "|---|---|---:|---:|",
            ]
            lines += [
                f"| `{k['name'][:90]}` | {k['kind']} | {k['s']:.4f} | {100 * k['s'] / total:.1f}% |"
                for k in prof["top"]
            ]
    torch_func = next(
        (r for r in results if r.get("impl") == "torch_func" and "error" not in r), None
    )
    if torch_func and torch_func.get("attention") == "manual":
        lines += [
            "",
            f"torch_func used explicit attention: SDPA under vmap failed ({torch_func['attention_note']}).",
        ]
    return "\n".join(lines)


def _resolved(rows: list[dict]) -> str:
    """' (ran: attention pallas, mlp xla)': the kernels the vmap row ran ('auto' resolved)."""
    kernels = next((r["kernels"] for r in rows if r.get("impl") == "vmap" and "kernels" in r), None)
    return f" (ran: attention {kernels['attention']}, mlp {kernels['mlp']})" if kernels else ""


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, BenchConfig]:
    d = BenchConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--members", type=int, default=d.members, help="population size M (default %(default)s)"
    )
    p.add_argument("--d-model", type=int, default=d.d_model)
    p.add_argument("--layers", type=int, default=d.layers)
    p.add_argument("--heads", type=int, default=d.heads)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument(
        "--seq-task-dmax",
        type=int,
        default=d.seq_task_dmax,
        help="addition d_max; sets the sequence length (8: 28 input tokens)",
    )
    p.add_argument(
        "--repeats", type=int, default=d.repeats, help="timed calls; the median is reported"
    )
    p.add_argument(
        "--loop-members",
        type=int,
        default=d.loop_members,
        help="members the per-member loops (loop, torch_eager) time; 0 = all (default %(default)s)",
    )
    p.add_argument(
        "--dtype",
        default=d.dtype,
        choices=("auto", "float32", "bfloat16"),
        help="compute dtype; auto = bfloat16 on GPU/TPU, float32 on CPU (weights stay float32)",
    )
    p.add_argument("--lr", type=float, default=d.learning_rate, dest="learning_rate")
    p.add_argument(
        "--impls", default=",".join(IMPLS), help=f"comma-separated subset of {','.join(IMPLS)}"
    )
    p.add_argument(
        "--attention",
        default=d.attention,
        choices=ATTENTIONS,
        help="difftrade's attention kernel for the jax rows (model.attention; auto = the fastest for the backend)",
    )
    p.add_argument(
        "--mlp",
        default=d.mlp,
        choices=MLPS,
        help="difftrade's MLP kernel for the jax rows (model.mlp; pallas = fused LayerNorm/up/GELU/down/residual; auto = the fastest)",
    )
    p.add_argument(
        "--cpu-devices",
        type=int,
        default=d.cpu_devices,
        help="jax CPU devices for the vmap row; 0 = one per core, like the difftrade CLI (default %(default)s)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="vmap row: device kernel time by kind (matmul, fusions, Pallas) over one extra call (GPU/TPU)",
    )
    p.add_argument("--no-eval", action="store_true", help="skip timing evaluate_population")
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="split a vmapped step into data / fwd+bwd / optimizer",
    )
    p.add_argument("--out", help="write all results as JSON to this file")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    p.add_argument("--_result", help=argparse.SUPPRESS)
    p.add_argument("--_config", help=argparse.SUPPRESS)
    p.add_argument("--_peak", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._config:
        return args, BenchConfig(**json.loads(args._config))
    cfg = BenchConfig(
        members=args.members,
        d_model=args.d_model,
        layers=args.layers,
        heads=args.heads,
        steps=args.steps,
        batch=args.batch,
        seq_task_dmax=args.seq_task_dmax,
        repeats=args.repeats,
        loop_members=args.loop_members,
        dtype=args.dtype,
        learning_rate=args.learning_rate,
        evaluate=not args.no_eval,
        breakdown=args.breakdown,
        profile=args.profile,
        attention=args.attention,
        mlp=args.mlp,
        cpu_devices=args.cpu_devices,
    )
    return args, cfg


def worker_main(args: argparse.Namespace, cfg: BenchConfig) -> None:
    kind = args._worker
    if kind == "vmap":
        result = worker_vmap(cfg, args._peak)
    elif kind == "loop":
        result = worker_loop(cfg, args._peak)
    elif kind in TORCH_IMPLS:
        result = worker_torch(cfg, kind)
    elif kind == "peak":
        result = worker_peak(cfg)
    else:
        raise ValueError(f"unknown worker {kind!r}")
    Path(args._result).write_text(json.dumps(result))


def main(argv: list[str] | None = None) -> None:
    args, cfg = parse_args(argv)
    if args._worker:
        worker_main(args, cfg)
        return
    impls = [s.strip() for s in args.impls.split(",") if s.strip()]
    unknown = [s for s in impls if s not in IMPLS]
    if unknown:
        raise SystemExit(f"--impls: unknown {unknown}; allowed: {', '.join(IMPLS)}")
    if any(s in TORCH_IMPLS for s in impls) and importlib.util.find_spec("torch") is None:
        print(
            f"torch is not importable: skipping {[s for s in impls if s in TORCH_IMPLS]} "
            "(pip install 'difftrade[bench]')",
            file=sys.stderr,
        )
        impls = [s for s in impls if s not in TORCH_IMPLS]
    if cfg.breakdown and "vmap" not in impls:
        print("--breakdown needs vmap; it is skipped", file=sys.stderr)

    total = time.perf_counter()
    results, peak_holder = [], next((s for s in impls if s in ("vmap", "loop")), None)
    for impl in impls:
        print(f"[{impl}] running ...", file=sys.stderr, flush=True)
        r = run_worker(impl, cfg, measure_peak=impl == peak_holder)
        if "error" not in r:
            print(f"[{impl}] done in {r['process_s']:.1f} s (process)", file=sys.stderr, flush=True)
        results.append(r)
    peak_src = next((r for r in results if "matmul_peak" in r), None)
    if peak_src is None:
        peak_src = run_worker("peak", cfg)
    peak = peak_src.get("matmul_peak")
    env = dict(peak_src.get("env", {}))
    for r in results:
        for k, v in (r.get("env") or {}).items():
            env.setdefault(k, v)
    env.update(
        python=platform.python_version(),
        cpu_count=os.cpu_count(),
        machine=platform.processor() or platform.machine(),
        load_average=os.getloadavg()[0],
    )
    rows = summarise(cfg, results, peak)

    jax_dt = next(
        (
            r["compute_dtype"]
            for r in results
            if r.get("impl") in ("vmap", "loop") and "compute_dtype" in r
        ),
        "?",
    )
    print(
        f"\n{env.get('device', '?')} | jax {env.get('jax', '?')}, flax {env.get('flax', '?')}, "
        f"torch {env.get('torch', 'n/a')}, python {env['python']}, {env['cpu_count']} CPU cores, "
        f"load average {env['load_average']:.2f}"
    )
    seq = 2 * cfg.seq_task_dmax + 1 + cfg.seq_task_dmax + 1 + 3 - 1
    print(
        f"M={cfg.members} members, d_model={cfg.d_model}, layers={cfg.layers}, heads={cfg.heads}, "
        f"steps={cfg.steps}, batch={cfg.batch}, {seq} input tokens (addition d_max={cfg.seq_task_dmax}), "
        f"jax compute {jax_dt}, attention {cfg.attention}, mlp {cfg.mlp}{_resolved(rows)}; median of {cfg.repeats} repeats"
    )
    if peak:
        print(
            f"matmul peak (jax, {peak['n']}^3 {peak['dtype']}): {peak['tflops']:.3f} TFLOP/s; "
            f"training FLOPs per member-step: {train_flops_per_member_step(cfg):.4g}\n"
        )
    print(markdown(cfg, rows, results, peak))
    print(f"\ntotal wall time {time.perf_counter() - total:.1f} s", file=sys.stderr)
    if args.out:
        payload = {
            "config": dataclasses.asdict(cfg),
            "environment": env,
            "matmul_peak": peak,
            "flops_per_member_step": train_flops_per_member_step(cfg),
            "rows": rows,
            "raw": results,
        }
        Path(args.out).write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
