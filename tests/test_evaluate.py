import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difftrade.analysis.optimum import bootstrap_d_star, d_star
from difftrade.model.transformer import apply, graphdef
from difftrade.tasks import data
from difftrade.tasks.base import ANSWER
from difftrade.train.evaluate import MEMBER_METRICS, evaluate_population, example_metrics, risks
from difftrade.train.run_task import run_task
from difftrade.train.trainer import member_data_root, train_population


@pytest.fixture(scope="module")
def trained(tiny_cfg):
    pop = tiny_cfg.population()
    key = jax.random.key(tiny_cfg.run.seed)
    return pop, key, train_population(run_task(tiny_cfg), pop, tiny_cfg.model, tiny_cfg.train, key)


def greedy_exact(gdef, params, tokens, mask):
    """Reference: decode the answer token by token from the prompt, compare with the truth."""
    tokens, mask = np.asarray(tokens), np.asarray(mask)
    out = []
    for row, m in zip(tokens, mask):
        start = int(np.argmax(m))
        seq = row.copy()
        seq[start:] = 0
        for t in range(start, start + int(m.sum())):
            logits = apply(gdef, params, jnp.asarray(seq[None, :-1]))
            seq[t] = int(jnp.argmax(logits[0, t - 1]))
        out.append(bool(np.all(seq[m] == row[m])))
    return np.array(out)


@pytest.mark.slow
def test_teacher_forced_exact_match_equals_greedy_decoding(tiny_cfg, trained):
    pop, key, res = trained
    i = int(np.argmax(pop.budget))  # a member that learned something
    params = jax.tree.map(lambda x: x[i], res.params)
    task = run_task(tiny_cfg)
    tokens, mask = data.examples_at_level(
        task, member_data_root(key, pop.seed[i]), 1, 2, jnp.arange(40)
    )
    assert np.all(np.asarray(tokens)[np.arange(40), np.argmax(np.asarray(mask), 1) - 1] == ANSWER)
    gdef = graphdef(tiny_cfg.model)
    exact, _ = example_metrics(gdef, params, tokens, mask)
    np.testing.assert_array_equal(np.asarray(exact), greedy_exact(gdef, params, tokens, mask))


def test_population_metrics(tiny_cfg, trained):
    pop, key, res = trained
    ev = evaluate_population(
        run_task(tiny_cfg),
        res.params,
        pop.weights,
        pop.budget,
        pop.seed,
        tiny_cfg.model,
        tiny_cfg.eval,
        key,
    )
    m, levels = pop.size, run_task(tiny_cfg).num_levels
    assert ev["level_exact"].shape == (m, levels) and ev["train_exact"].shape == (m,)
    assert {k: v.shape for k, v in ev.items()} == {  # what MEMBER_METRICS declares, nothing else
        k: (m, *(levels,) * len(dims)) for k, dims in MEMBER_METRICS.items()
    }
    assert np.all((ev["level_exact"] >= 0) & (ev["level_exact"] <= 1))
    # budget-1 members are scored on their single training example, which they memorised
    assert np.all(ev["train_exact"][pop.budget == 1] == 1.0)


def test_gap_identity_and_values():
    rng = np.random.default_rng(0)
    train = rng.uniform(size=(3, 4))
    level = rng.uniform(size=(3, 4, 5))
    w = rng.dirichlet(np.ones(5), size=(3, 4))
    t = rng.dirichlet(np.ones(5))
    r = risks(train, level, w, t)
    np.testing.assert_allclose(
        r["target_risk"],
        r["train_risk"] + r["generalization_gap"] + r["extrapolation_gap"],
        atol=1e-12,
    )
    np.testing.assert_allclose(r["test_risk"], ((1 - level) * w).sum(-1))
    np.testing.assert_allclose(r["target_risk"], (1 - level) @ t)


def test_d_star_and_bootstrap():
    # risk[d, n, s]: budget 0 favours d=1, budget 1 favours d=3
    risk = np.array([[[0.2, 0.3], [0.9, 0.8]], [[0.5, 0.5], [0.6, 0.6]], [[0.9, 0.9], [0.1, 0.2]]])
    np.testing.assert_array_equal(d_star(risk, np.array([1, 2, 3])), [1, 3])
    boot = bootstrap_d_star(risk, np.array([1, 2, 3]), n_boot=200)
    np.testing.assert_array_equal(boot.low, [1, 3])
    np.testing.assert_array_equal(boot.high, [1, 3])
    # a noisy cell makes the interval widen
    noisy = risk.copy()
    noisy[1, 0] = [0.0, 0.9]
    boot = bootstrap_d_star(noisy, np.array([1, 2, 3]), n_boot=400)
    assert boot.low[0] == 1 and boot.high[0] == 2
