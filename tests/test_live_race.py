"""`difftrade recommend --race`: a race that trains its seeds as it goes, with the replay's rule."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_raw

from difftrade.analysis import predictors, racing
from difftrade.cli.main import main
from difftrade.recommender import live_race
from difftrade.runner import experiment
from difftrade.tasks import configs

SORTING = Path(__file__).resolve().parents[1] / "docs" / "runs" / "study" / "sorting_validation.nc"


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--race", "5"], r"--race=5; allowed: a member count >= 12 \(3 seeds for each of 4"),
        (
            ["--race", "40", "--race-difficulties", "2,9"],
            r"race difficulties \[2, 9\]; allowed: two or more of",
        ),
        (["--race", "40", "--race-difficulties", "2,x"], r"--race-difficulties='2,x'"),
    ],
)
def test_a_race_that_cannot_start_is_one_line_before_anything_is_written(
    extra, match, tmp_path, capsys
):
    out = tmp_path / "race"
    argv = [
        "recommend",
        str(SORTING),
        "--budget",
        "48",
        "--n-boot",
        "0",
        "--race-out",
        str(out),
        *extra,
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(match, err[0]), err
    assert not out.exists()


@pytest.mark.slow
def test_a_live_race_trains_the_members_of_the_full_grid_and_decides_as_the_replay(tmp_path):
    template = configs.from_dict(tiny_raw(grid={"difficulties": [1, 2], "budgets": [32]}))
    found = live_race.live_race(template, 32, 8, tmp_path / "race", progress=False)  # 4 seeds each
    # every member the race trained is the member of a full grid of the same cells
    full = experiment.run(
        configs.from_dict(
            tiny_raw(grid={"difficulties": [1, 2], "budgets": [32], "seeds": [0, 1, 2, 3]})
        ),
        tmp_path / "full",
        progress=False,
    )
    column = predictors.risk_grid(full)[:, 0, :]  # [D, S]
    measured = np.isfinite(found.risk)
    assert measured[:, :3].all() and found.race.members == measured.sum()
    np.testing.assert_allclose(found.risk[measured], column[measured], atol=1e-6)
    assert found.race == racing.race(
        column, [1, 2], start=3
    )  # the replay's answer on the full column
    stored = json.loads((tmp_path / "race" / live_race.RACE_FILE).read_text())
    assert stored == found.to_dict() and stored["config_hash"] == template.hash()
    again = live_race.live_race(template, 32, 8, tmp_path / "race", progress=False)  # resumes
    assert again.to_dict() == found.to_dict()
