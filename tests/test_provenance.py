"""Published numbers are regenerable: configs hash to the result files they produced, the
committed reports and the study's tables equal what the current code computes from the committed
result files, and the README's headline table is read off its result file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from difftrade.analysis import paired_comparison, predictors, racing, report, selection, study
from difftrade.certify import compress
from difftrade.model.checkpoint import BASE_HASH
from difftrade.results import schema as results
from difftrade.tasks import configs

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "docs" / "runs"
STUDY = RUNS / "study"
COMPRESSION = (
    RUNS / "compression"
)  # one directory per run: config.json, results.nc, compression.nc/.md
CERTIFIED = sorted(
    p.parent for p in COMPRESSION.glob("*/compression.nc") if (p.parent / "results.nc").exists()
)


@pytest.mark.parametrize(
    "config_path, result_path",
    [
        ("experiments/tradeoff_v1.toml", "docs/runs/tradeoff_v1.nc"),
        *[
            (f"experiments/study/{p.stem}.toml", f"docs/runs/study/{p.name}")
            for p in sorted(STUDY.glob("*.nc"))
        ],
        *[
            (f"experiments/study/{sub}/{p.stem}.toml", f"docs/runs/study/{sub}/{p.name}")
            for sub in ("parts", "bases", "finetune", "race")
            for p in sorted((STUDY / sub).glob("*.nc"))
        ],
        *[
            (f"experiments/protocol/{p.stem}.toml", f"docs/runs/protocol/{p.name}")
            for p in sorted((ROOT / "docs" / "runs" / "protocol").glob("*.nc"))
        ],
    ],
)
def test_config_hashes_to_its_result_file(config_path, result_path):
    assert (
        configs.load(ROOT / config_path).hash()
        == results.load(ROOT / result_path).attrs["config_hash"]
    )


@pytest.mark.parametrize("name", [p.stem for p in sorted((STUDY / "finetune").glob("*.nc"))])
def test_fine_tuned_grids_record_their_committed_base(name):
    """A fine-tuned grid's base (run.init, runs/study/bases/NAME/base) is the one its committed
    config builds: the base identity the results record is that config's hash."""
    ds = results.load(STUDY / "finetune" / f"{name}.nc")
    base = Path(configs.stored(ds).run.init).parent.name
    expected = configs.load(ROOT / "experiments" / "study" / "bases" / f"{base}.toml").hash()
    assert ds.attrs[BASE_HASH] == expected
    assert results.load(STUDY / "bases" / f"{base}.nc").attrs["config_hash"] == expected


def test_the_live_race_decides_as_the_replay_of_the_committed_column():
    """The committed live race (recommend --race at n = 48, sorting) is of the sorting validation
    config, and its decision is the replay's: on the risks it recorded, asking only for cells it
    trained, and on the first seeds of the committed 16-seed column at that budget."""
    race = json.loads((STUDY / "race" / "race_n48.json").read_text())
    assert race["config_hash"] == results.load(STUDY / "sorting_validation.nc").attrs["config_hash"]
    risk = np.array([[np.nan if v is None else v for v in row] for row in race["risk"]])
    d, seeds = race["difficulties"], risk.shape[1]

    def recorded(rows, cells):
        out = risk[rows][:, cells]
        assert np.isfinite(out).all()  # the replay asks only for what the race trained
        return out

    decision = (race["chosen"], tuple(race["survivors"]), race["members"], race["looks"])
    own = racing.run_race(recorded, d, seeds)[0]
    column = predictors.risk_grid(results.load(STUDY / "race" / "sorting_n48.nc"))[:, 0, :seeds]
    grid = racing.race(column, d)
    for found in (own, grid):
        assert (found.chosen, found.survivors, found.members, found.looks) == decision


def test_readme_headline_is_its_result_file():
    text = (ROOT / "README.md").read_text()
    s = report.summary(results.load(RUNS / "tradeoff_v1.nc"))

    def row(label: str) -> list[str]:
        line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
        return [cell.strip() for cell in line.strip("|").split("|")[1:]]

    assert row("d*(n)") == [str(d) for d in s["d_star"]]
    assert row("90% interval") == [f"[{lo},{hi}]" for lo, hi in zip(s["low"], s["high"])]
    assert re.search(r"4 seeds", text)


@pytest.mark.slow  # renders every model's forward validation (20-50 s a report)
@pytest.mark.parametrize("name", ["tradeoff_v1", "mixture", "finetune"])
def test_committed_report_is_current(name):
    assert (
        report.render(results.load(RUNS / f"{name}.nc")) == (RUNS / f"{name}.report.md").read_text()
    )


@pytest.mark.slow  # refits every model forward and by leave-one-out on every grid (about a minute)
def test_study_tables_are_current():
    assert sorted(p.stem for p in STUDY.glob("*.nc") if not p.name.startswith("transfer_")), (
        "no study grid committed"
    )
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "summarize", ROOT / "experiments" / "study" / "summarize.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.HEADER + study.summarize(STUDY) == (ROOT / "docs" / "study_tables.md").read_text()


@pytest.mark.parametrize(
    "label, grid",
    [
        ("addition (nested levels)", "addition"),
        ("addition, fixed epochs", "addition_epochs"),
        ("chain (exact levels, rows trained on 1..d)", "chain"),
        ("chain, mixture training", "chain_mixture"),
        ("sorting (exact levels, rows trained on 2..d)", "sorting"),
    ],
)
def test_readme_study_table_is_its_result_files(label, grid):
    """The README's study table: each row's d*(n), its not-significantly-worse sets and all-pairs
    best sets at the ends are what the analysis computes from the committed grid; its forward
    columns are the grid's row of the forward table in docs/study_tables.md (which
    test_study_tables_are_current regenerates)."""
    line = next(
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith(f"| {label}, n = ")
    )
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    ds = results.load(STUDY / f"{grid}.nc")
    risk = ds["target_risk"].transpose("difficulty", "budget", "seed").values
    cmp = paired_comparison.compare_to_d_star(
        risk, ds["difficulty"].values, method="sign_flip", alpha=study.ALPHA
    )
    best = selection.best_set(risk, ds["difficulty"].values, method="sign_flip", alpha=study.ALPHA)
    budgets = ds["budget"].values
    assert cells[0] == f"{label}, n = {int(budgets[0]):,} → {int(budgets[-1]):,}"
    assert cells[1] == ", ".join(str(int(d)) for d in cmp.d_star)
    ends = (0, len(budgets) - 1)
    assert cells[2] == " / ".join(study._fmt_set(cmp.not_worse_set(j)) for j in ends)
    assert cells[3] == " / ".join(study._fmt_set(best.members(j)) for j in ends)
    tables = (ROOT / "docs" / "study_tables.md").read_text()
    forward = tables[tables.index("### Forward validation across grids") :].splitlines()
    head = [
        c.strip()
        for c in next(r for r in forward if r.startswith("| grid |")).strip("|").split("|")
    ]
    row = [
        c.strip()
        for c in next(r for r in forward if r.startswith(f"| {grid} |")).strip("|").split("|")
    ]
    method, lost = row[1].split(" (")[0].split(": ")
    assert cells[4] == f"{method} {lost}"
    ratios = {head[i]: row[i].split()[0] for i in range(2, len(row))}
    top = min(ratios, key=lambda m: float(ratios[m]))
    assert cells[5] == f"{top} {ratios[top]}"


@pytest.mark.parametrize("run_dir", CERTIFIED, ids=lambda p: p.name)
def test_committed_compression_certificates_are_current(run_dir):
    """Each committed compression run: its config is one of experiments/compression/*.toml, its certificates
    were computed for that config, and compression.md is what the current code renders from them."""
    cfg, ds = compress.load_run(run_dir)
    assert cfg.hash() in {
        configs.load(p).hash() for p in (ROOT / "experiments" / "compression").glob("*.toml")
    }
    c = results.open_netcdf(run_dir / "compression.nc")
    assert c.attrs["config_hash"] == cfg.hash() == ds.attrs["config_hash"]
    assert compress.render(ds, c) == (run_dir / "compression.md").read_text()


def test_committed_best_of_is_current(tmp_path):
    """docs/runs/compression/best_of_addition is the combination of the committed addition runs."""
    best = COMPRESSION / "best_of_addition"
    assert CERTIFIED and best.exists()
    runs = [COMPRESSION / name for name in ("addition", "addition_d1000")]
    compress.best_of(runs, tmp_path)
    assert (tmp_path / "compression.md").read_text() == (best / "compression.md").read_text()
