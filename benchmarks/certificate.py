"""The certificate's Monte-Carlo step, side by side: fresh weight draws per example vs draws on the whole set.

Both modes certify the same members on the same bound set (``certify_population``, one compiled
program each). The step bounds the bound set's Gibbs risk L̂(Q) with slack ln(K/δ′)/(r·n) (r draws
per example) or ln(2K/δ′)/m (m whole-set draws, Langford–Caruana); this prints that slack, the
median seconds per call over repeats (compile time apart), the ratio to the first row, and the
certified bound. The members are trained briefly (so that their risks are not all 1) and the
prior is centred at the trained weights: valid because the bound set is the "bound" split, which
training never touched, and it leaves the KL small, so the Monte-Carlo step is what differs.

    python -m benchmarks.certificate --members 2 --n 256 --repeats 3
"""

from __future__ import annotations

import argparse
import math
import statistics
import time


def main() -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from difftrade import data
    from difftrade.bound import ZeroOneLoss
    from difftrade.model import ModelConfig
    from difftrade.tasks.addition import Addition
    from difftrade.theory.certificate import CertificateConfig, certify_population
    from difftrade.train import (
        TrainConfig,
        make_member_trainer,
        member_data_root,
        member_init_params,
    )

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=2)
    p.add_argument("--n", type=int, default=256, help="bound-set examples per member")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--steps", type=int, default=300, help="training steps before certifying")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    task = Addition(d_max=3)
    model = ModelConfig(seq_len=task.seq_len - 1, d_model=a.d_model, num_layers=2, num_heads=4)
    key = jax.random.key(0)
    seeds = jnp.arange(a.members)
    weights = jnp.tile(jnp.asarray(data.uniform(task), jnp.float32), (a.members, 1))
    train = make_member_trainer(task, model, TrainConfig(steps=a.steps, batch_size=32, warmup_steps=20, num_checkpoints=2), key)
    params = jax.jit(jax.vmap(train))(jax.vmap(lambda s: member_init_params(model, key, s))(seeds), weights, jnp.full(a.members, 4096), seeds, jnp.full(a.members, 3e-3)).params
    bound_set = jax.vmap(lambda s, w: data.examples(task, member_data_root(key, s), data.SPLITS["bound"], w, jnp.arange(a.n))[:2])(
        seeds, weights)
    keys = jax.random.split(jax.random.key(1), a.members)
    sigmas, prior_sigmas, delta_prime = (1e-3, 3e-3, 1e-2, 2e-2, 3e-2, 5e-2, 7e-2, 0.1), (3e-3, 1e-2, 3e-2, 0.1), 0.025
    rows = [("per_example", 1), ("whole_set", 8), ("whole_set", 64)]
    print(f"{a.members} members, d_model {a.d_model}, bound set n = {a.n}, K = {len(sigmas)} σ, "
          f"{jax.devices()[0].platform}, jax {jax.__version__}")
    print(f"{'Monte-Carlo step':24s} {'slack':>8s} {'compile+1st s':>14s} {'median s':>9s} {'ratio':>6s}  bound per member")
    first = None
    for mode, draws in rows:
        cfg = CertificateConfig(sigmas=sigmas, prior_sigmas=prior_sigmas, num_draws=draws, monte_carlo=mode,
                                delta_prime=delta_prime, selection="bound")
        call = lambda cfg=cfg: certify_population(ZeroOneLoss(model), params, params, bound_set, keys, cfg).bound.block_until_ready()
        t0 = time.perf_counter()
        call()
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            bound = call()
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        first = first or med
        k = len(sigmas)
        slack = math.log(k / delta_prime) / (draws * a.n) if mode == "per_example" else math.log(2 * k / delta_prime) / draws
        label = f"{mode}, {'r' if mode == 'per_example' else 'm'} = {draws}"
        print(f"{label:24s} {slack:8.4f} {compile_s:14.2f} {med:9.2f} {med / first:6.2f}  {np.round(np.asarray(bound), 3).tolist()}",
              flush=True)


if __name__ == "__main__":
    main()
