"""The certificate's Monte-Carlo step, side by side: fresh weight draws per example vs draws on the whole set.

Both modes certify the same members on the same bound set (``certify_population``, one compiled
program each). The step bounds the bound set's Gibbs risk L̂(Q) with slack ln(K/δ′)/(r·n) (r draws
per example) or ln(2K/δ′)/m (m whole-set draws, Langford–Caruana); this prints that slack, the
median seconds per call over repeats (compile time apart), the ratio to the first row, and the
certified bound. The members are trained briefly (so that their risks are not all 1) and the
prior is centred at the trained weights: valid because the bound set is the "bound" split, which
training never touched, and it leaves the KL small, so the Monte-Carlo step is what differs.

The next two rows certify two losses of the same examples, as ``difftrade bound
--importance-weighted`` does (the 0-1 loss and weight · 0-1 loss, weights uniform in [0, 1]):
in two separate calls, and jointly from one set of forward passes (a tuple of configs). The
last row is the joint call with one key for every member (``key_axis=None``, what ``difftrade
bound`` does): the members share their weight draws, generated once instead of once per member.

    python -m benchmarks.certificate --members 2 --n 256 --repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time


def main() -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from difftrade.certify.losses import ZeroOneAndWeightedLoss, ZeroOneLoss
    from difftrade.config import level_weights
    from difftrade.config.model_config import ModelConfig
    from difftrade.config.train_config import TrainConfig
    from difftrade.tasks import data
    from difftrade.tasks.addition import Addition
    from difftrade.theory.certificate_types import CertificateConfig
    from difftrade.theory.population_certificate import certify_population
    from difftrade.train.trainer import (
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
    weights = jnp.tile(jnp.asarray(level_weights.uniform(task), jnp.float32), (a.members, 1))
    train = make_member_trainer(
        task,
        model,
        TrainConfig(steps=a.steps, batch_size=32, warmup_steps=20, num_checkpoints=2),
        key,
    )
    params = jax.jit(jax.vmap(train))(
        jax.vmap(lambda s: member_init_params(model, key, s))(seeds),
        weights,
        jnp.full(a.members, 4096),
        seeds,
        jnp.full(a.members, 3e-3),
    ).params
    bound_set = jax.vmap(
        lambda s, w: data.examples(
            task, member_data_root(key, s), data.SPLITS["bound"], w, jnp.arange(a.n)
        )[:2]
    )(seeds, weights)
    keys = jax.random.split(jax.random.key(1), a.members)
    sigmas, prior_sigmas, delta_prime = (
        (1e-3, 3e-3, 1e-2, 2e-2, 3e-2, 5e-2, 7e-2, 0.1),
        (3e-3, 1e-2, 3e-2, 0.1),
        0.025,
    )
    weight = jax.random.uniform(jax.random.key(2), (a.members, a.n))
    rows = [
        ("per_example", 1, "one"),
        ("whole_set", 8, "one"),
        ("whole_set", 64, "one"),
        ("per_example", 1, "separate"),
        ("per_example", 1, "joint"),
        ("per_example", 1, "joint, one key"),
    ]
    print(
        f"{a.members} members, d_model {a.d_model}, bound set n = {a.n}, K = {len(sigmas)} σ, "
        f"{jax.devices()[0].platform}, jax {jax.__version__}"
    )
    print(
        f"{'Monte-Carlo step':46s} {'slack':>8s} {'compile+1st s':>14s} {'median s':>9s} {'ratio':>6s}  bound per member"
    )
    first = None
    for mode, draws, how in rows:
        cfg = CertificateConfig(
            sigmas=sigmas,
            prior_sigmas=prior_sigmas,
            num_draws=draws,
            monte_carlo=mode,
            delta_prime=delta_prime,
            selection="bound",
        )
        weighted_cfg = dataclasses.replace(cfg, binary_loss=False)

        def call(cfg=cfg, weighted_cfg=weighted_cfg, how=how):
            if how == "one":
                return [
                    certify_population(
                        ZeroOneLoss(model), params, params, bound_set, keys, cfg
                    ).bound.block_until_ready()
                ]
            if how.startswith("joint"):
                one_key = how.endswith("one key")
                certs = certify_population(
                    ZeroOneAndWeightedLoss(model),
                    params,
                    params,
                    (*bound_set, weight),
                    keys[0] if one_key else keys,
                    (cfg, weighted_cfg),
                    key_axis=None if one_key else 0,
                )
                return [c.bound.block_until_ready() for c in certs]
            plain = certify_population(
                ZeroOneLoss(model), params, params, bound_set, keys, cfg
            ).bound.block_until_ready()
            return [
                plain,
                certify_population(
                    WeightedZeroOne(model), params, params, (*bound_set, weight), keys, weighted_cfg
                ).bound.block_until_ready(),
            ]

        t0 = time.perf_counter()
        call()
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            bounds = call()
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        first = first or med
        k = len(sigmas)
        slack = (
            math.log(k / delta_prime) / (draws * a.n)
            if mode == "per_example"
            else math.log(2 * k / delta_prime) / draws
        )
        label = f"{mode}, {'r' if mode == 'per_example' else 'm'} = {draws}" + (
            "" if how == "one" else f", 2 losses {how}"
        )
        shown = " | ".join(str(np.round(np.asarray(b), 3).tolist()) for b in bounds)
        print(
            f"{label:46s} {slack:8.4f} {compile_s:14.2f} {med:9.2f} {med / first:6.2f}  {shown}",
            flush=True,
        )


@dataclasses.dataclass(frozen=True)
class WeightedZeroOne:
    """weight · 0-1 loss alone, ``[n]``: the second of two separately certified losses."""

    model: object

    def __call__(self, params, batch):
        from difftrade.certify.losses import ZeroOneAndWeightedLoss

        return ZeroOneAndWeightedLoss(self.model)(params, batch)[:, 1]


if __name__ == "__main__":
    main()
