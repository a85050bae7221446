"""Model-based vs nominal difficulty for every task family, at CPU scale.

For each family: train one small reference model on a small budget uniform over its levels
(d_max = 4; width 64, 2 layers, 400 steps), score 4,096 fresh problems from the "pool" split
with it, and report Spearman's rho between reference loss and nominal level.

    python experiments/agreement_all_tasks.py          # about 5 minutes on 2 CPU cores
"""

from __future__ import annotations

import jax
import numpy as np

from difftrade.config import level_weights
from difftrade.config.model_config import ModelConfig
from difftrade.config.sections import EvalConfig
from difftrade.config.train_config import Population, TrainConfig
from difftrade.recommender.difficulty_agreement import agreement
from difftrade.tasks import REGISTRY, make_task
from difftrade.train.evaluate import evaluate_population
from difftrade.train.trainer import train_population

D_MAX, BUDGET, STEPS = 4, 512, 400


def main() -> None:
    print(
        "| task | levels | reference risk per level | Spearman rho | mean nominal level per model-based level |"
    )
    print("|---|---|---|---:|---|")
    for name in sorted(REGISTRY):
        task = make_task(name, d_max=D_MAX)
        model = ModelConfig(seq_len=task.seq_len - 1, d_model=64, num_layers=2, num_heads=4)
        pop = Population(
            level_weights.uniform(task)[None].astype(np.float32),
            np.array([BUDGET]),
            np.array([0]),
            np.array([3e-3], np.float32),
        )
        key = jax.random.key(1000)
        trained = train_population(
            task,
            pop,
            model,
            TrainConfig(steps=STEPS, batch_size=64, warmup_steps=40, num_checkpoints=4),
            key,
        )
        params = jax.tree.map(lambda x: x[0], trained.params)
        ev = evaluate_population(
            task,
            trained.params,
            pop.weights,
            pop.budget,
            pop.seed,
            model,
            EvalConfig(n_test=256, n_train_eval=256),
            key,
        )
        result = agreement(task, params, model, 4096, jax.random.key(0))
        risk = ", ".join(f"{1 - a:.2f}" for a in ev["level_exact"][0])
        nominal = ", ".join(f"{x:.2f}" for x in result["mean_nominal"])
        print(
            f"| {name} | {task.d_min}..{task.d_max} | {risk} | {result['spearman_rho']:.3f} | {nominal} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
