"""`difftrade report A B`: runs side by side."""

from __future__ import annotations

from pathlib import Path

from difftrade.analysis import comparison, optimum, predictors, selection
from difftrade.cli.main import main
from difftrade.results import schema as results

STUDY = Path(__file__).resolve().parents[1] / "docs" / "runs" / "study"


def test_runs_side_by_side(tmp_path, capsys):
    a, b = STUDY / "sorting_validation.nc", STUDY / "finetune" / "sorting_broad.nc"
    assert main(["report", str(a), str(b), "--out", str(tmp_path)]) == 0
    text = (tmp_path / "comparison.md").read_text()
    assert text == capsys.readouterr().out.rstrip("\n") + "\n"
    differing = [line.split("`")[1] for line in text.splitlines() if line.startswith("| `")]
    assert differing == ["grid.learning_rate", "grid.seeds", "run.init"]
    rows = {
        int(line.split("|")[1].replace(",", "")): line
        for line in text.splitlines()
        if line[:3] == "| 8" or line[2:3].isdigit()
    }
    for col, path in enumerate((a, b)):
        ds = results.load(path)
        r = predictors.risk_grid(ds)
        star = optimum.d_star(r, ds["difficulty"].values)
        best = selection.best_set(r, ds["difficulty"].values)
        for j, n in enumerate(ds["budget"].values):
            cell = rows[int(n)].split("|")[2 + col].strip()
            members = "{" + ", ".join(str(int(v)) for v in best.members(j)) + "}"
            assert cell.startswith(f"{int(star[j])}: ") and cell.endswith(members), cell
    assert "| base (its config hash) | – | " + results.load(b).attrs["base_config_hash"] in text


def test_one_run_named_twice_is_refused(capsys):
    run = str(STUDY / "sorting_validation.nc")
    assert main(["report", run, run]) == 2
    assert "name one run twice" in capsys.readouterr().err


def test_flat_names_nested_fields():
    assert comparison.flat({"a": {"b": 1, "c": {"d": [2]}}, "e": "x"}) == {
        "a.b": 1,
        "a.c.d": [2],
        "e": "x",
    }
