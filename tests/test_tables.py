"""Tidy tables of a results file: one row per coordinate combination, the values of the Dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from difftrade.analysis.tables import tidy_tables
from difftrade.cli import main as cli
from difftrade.results import schema as results

STUDY = Path(__file__).resolve().parents[1] / "docs" / "runs" / "study" / "addition.nc"


def test_every_value_is_in_its_table_once():
    ds = results.load(STUDY)
    tables = tidy_tables(ds)
    assert {"members", "levels", "curves", "cells"} <= set(tables)
    members = tables["members"]
    assert len(members) == ds.sizes["difficulty"] * ds.sizes["budget"] * ds.sizes["seed"]
    row = members[(members.difficulty == 3) & (members.budget == 256) & (members.seed == 5)]
    assert float(row["target_risk"].iloc[0]) == float(
        ds["target_risk"].sel(difficulty=3, budget=256, seed=5)
    )
    levels = tables["levels"].set_index(["difficulty", "budget", "seed", "level"])["level_exact"]
    np.testing.assert_array_equal(
        levels.to_numpy().reshape(ds["level_exact"].shape), ds["level_exact"].values
    )
    assert list(tables["curves"].columns[:4]) == ["difficulty", "budget", "seed", "checkpoint"]


@pytest.mark.slow  # renders a report with every model's forward validation
def test_report_csv_writes_readable_tables(tmp_path, capsys):
    assert cli.main(["report", str(STUDY), "--out", str(tmp_path), "--csv"]) == 0
    members = pd.read_csv(tmp_path / "tables" / "members.csv")
    ds = results.load(STUDY)
    np.testing.assert_allclose(
        members.sort_values(["difficulty", "budget", "seed"])["train_risk"].to_numpy(),
        ds["train_risk"].values.ravel(),
    )
    assert "tables:" in capsys.readouterr().out
    # index.html beside report.md: each markdown table one <table>, the PNGs shown
    markdown, page = (tmp_path / "report.md").read_text(), (tmp_path / "index.html").read_text()
    lines = markdown.splitlines()
    starts = sum(
        1 for a, b in zip([""] + lines, lines) if b.startswith("|") and not a.startswith("|")
    )
    assert page.count("<table>") == starts > 0
    for name in ("heatmap", "d_star", "gaps", "learning_curves"):
        assert f'<img src="{name}.png"' in page and (tmp_path / f"{name}.png").exists()
