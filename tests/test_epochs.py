"""Fixed epochs (``train.epochs``): steps per budget, chunks grouped by budget, and members equal to
fixed-steps members trained for the same number of steps."""

from fractions import Fraction

import numpy as np
import pytest
from conftest import tiny_raw

from difftrade.config.train_config import TrainConfig
from difftrade.runner import experiment
from difftrade.tasks import configs
from difftrade.train.trainer import train_population


@pytest.mark.parametrize("epochs", [0.5, 1, 3, 32, 2.5])
@pytest.mark.parametrize("batch, checkpoints", [(8, 1), (32, 6), (7, 4)])
def test_steps_are_the_smallest_multiple_covering_the_epochs(epochs, batch, checkpoints):
    cfg = TrainConfig(
        steps=100, batch_size=batch, warmup_steps=50, num_checkpoints=checkpoints, epochs=epochs
    )
    for n in (1, 5, 16, 32, 100, 2048):
        got = cfg.for_budget(n)
        need = Fraction(str(epochs)) * n / batch  # exact: no float round-off in the reference
        # brute force: the first multiple of num_checkpoints that is >= need and >= 2
        s = next(s for s in range(checkpoints, 10**6, checkpoints) if s >= need and s >= 2)
        assert got.steps == s, (n, got.steps, s)
        assert got.warmup_steps == min(50, s // 10)
        assert got.epochs == 0 and got.batch_size == batch and got.num_checkpoints == checkpoints


def test_fixed_steps_config_is_its_own_budget_config():
    cfg = TrainConfig(steps=40, num_checkpoints=4, warmup_steps=4)
    assert cfg.for_budget(7) is cfg


def test_refusals_name_the_field():
    with pytest.raises(ValueError, match=r"train\.epochs=-1; allowed: a finite number >= 0"):
        TrainConfig(epochs=-1)
    with pytest.raises(ValueError, match=r"train\.prefix_steps=10 cannot be combined with epochs"):
        TrainConfig(steps=40, num_checkpoints=4, prefix_steps=10, epochs=2)
    with pytest.raises(
        ValueError, match=r"train\.epochs=2: train_population trains one number of steps"
    ):
        train_population(None, None, None, TrainConfig(epochs=2), None)


def test_hash_unchanged_without_epochs_and_changed_with_them():
    plain = configs.from_dict(tiny_raw())
    assert "epochs" not in plain.to_dict()["train"]
    with_epochs = configs.from_dict(tiny_raw(train={"epochs": 4}))
    assert with_epochs.to_dict()["train"]["epochs"] == 4
    assert with_epochs.hash() != plain.hash()


def test_chunk_plan_groups_members_by_budget():
    train = TrainConfig(steps=40, batch_size=8, warmup_steps=4, num_checkpoints=4, epochs=2)
    budget = np.array([8, 64, 8, 64, 8, 64, 8, 64, 8])
    todo = np.array([0, 1, 2, 3, 4, 5, 6, 8])  # member 7 finished
    plan = experiment.chunk_plan(train, budget, todo, size=3)
    assert [list(idx) for _, idx, _ in plan] == [[0, 2, 4], [6, 8], [1, 3, 5]]
    assert [c.steps for c, _, _ in plan] == [4, 4, 16]  # 2 * 8 / 8 = 2 -> 4; 2 * 64 / 8 = 16
    widths = [w for _, _, w in plan]
    assert all(w >= len(idx) for (_, idx, _), w in zip(plan, widths))
    fixed = experiment.chunk_plan(
        TrainConfig(steps=40, num_checkpoints=4, warmup_steps=4), budget, todo, size=3
    )
    assert [list(idx) for _, idx, _ in fixed] == [[0, 1, 2], [3, 4, 5], [6, 8]]


@pytest.mark.slow
def test_epochs_run_equals_fixed_steps_runs_per_budget(tmp_path):
    """Each member of a fixed-epochs grid is the member a fixed-steps run of that budget's steps
    trains: same initial weights, data, schedule and number of steps."""
    raw = tiny_raw(grid={"budgets": [8, 40]}, train={"epochs": 4, "steps": 40})
    cfg = configs.from_dict(raw)
    ds = experiment.run(cfg, tmp_path / "epochs", progress=False)
    steps = [cfg.train.for_budget(n).steps for n in (8, 40)]
    assert steps == [4, 20]  # 4 * 8 / 8 = 4; 4 * 40 / 8 = 20
    np.testing.assert_array_equal(ds["train_steps"].values, steps)
    np.testing.assert_array_equal(ds["checkpoint"].values, [1, 2, 3, 4])
    for j, (n, s) in enumerate(zip((8, 40), steps)):
        fixed = configs.from_dict(
            tiny_raw(grid={"budgets": [n]}, train={"steps": s, "warmup_steps": min(4, s // 10)})
        )
        ref = experiment.run(fixed, tmp_path / f"fixed_{n}", progress=False)
        for name in ("loss_curve", "level_exact", "train_exact"):
            np.testing.assert_allclose(
                ds[name].isel(budget=j).values,
                ref[name].isel(budget=0).values,
                rtol=1e-5,
                atol=1e-6,
                err_msg=f"{name} at n={n}",
            )
    # the longer schedule trains further: the n=40 members end with a lower loss than n=8 ones
    assert float(ds["loss_curve"].isel(budget=1, checkpoint=-1).mean()) < float(
        ds["loss_curve"].isel(budget=0, checkpoint=-1).mean()
    )
