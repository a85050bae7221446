"""Merging grids that differ along one axis equals training the larger grid in one run."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_raw

from difftrade.cli.main import main
from difftrade.results import schema as results
from difftrade.runner import experiment, merge
from difftrade.tasks import configs

STUDY = Path(__file__).resolve().parents[1] / "docs" / "runs" / "study"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("merge")
    out = {}
    for name, budgets in (("whole", [1, 8, 32]), ("low", [1, 32]), ("mid", [8])):
        cfg = configs.from_dict(tiny_raw(grid={"budgets": budgets}))
        experiment.run(cfg, base / name, progress=False)
        out[name] = base / name / "results.nc"
    return out


@pytest.mark.slow
def test_merged_budgets_equal_the_whole_grid(runs, tmp_path):
    target = tmp_path / "merged.nc"
    assert main(["merge", str(runs["mid"].parent), str(runs["low"]), "--out", str(target)]) == 0
    merged, whole = results.load(target), results.load(runs["whole"])
    np.testing.assert_array_equal(merged["budget"].values, [1, 8, 32])
    assert merged.attrs["config_hash"] == whole.attrs["config_hash"]
    assert json.loads(merged.attrs["config"]) == json.loads(whole.attrs["config"])
    assert [m["file"] for m in json.loads(merged.attrs["merged_from"])] == [
        str(runs["mid"]),
        str(runs["low"]),
    ]
    assert set(merged.data_vars) == set(whole.data_vars)
    for name in whole.data_vars:
        np.testing.assert_allclose(
            merged[name].transpose(*whole[name].dims).values,
            whole[name].values,
            rtol=1e-5,
            atol=1e-6,
            err_msg=name,
        )


def _part(ds, budgets):
    """A committed grid cut to ``budgets``, with its config saying so (as a run of them would)."""
    part = ds.sel(budget=budgets)
    raw = json.loads(ds.attrs["config"])
    raw["grid"]["budgets"] = list(budgets)
    part.attrs = {
        **ds.attrs,
        "config": json.dumps(raw),
        "config_hash": configs.from_dict(raw).hash(),
    }
    return part


def test_parts_of_a_grid_merge_back_into_it():
    whole = results.load(STUDY / "chain.nc")
    budgets = [int(n) for n in whole["budget"].values]
    merged = merge.merge(
        [_part(whole, budgets[1::2]), _part(whole, budgets[::2])], ["odd.nc", "even.nc"]
    )
    assert merged.attrs["config_hash"] == whole.attrs["config_hash"]
    for name in whole.data_vars:
        np.testing.assert_array_equal(
            merged[name].transpose(*whole[name].dims).values, whole[name].values, err_msg=name
        )
    assert merged.attrs["wall_seconds"] == pytest.approx(
        2 * whole.attrs["wall_seconds"]
    )  # each part carries the whole's


def test_a_seed_merge_counts_overlap_on_the_first_seed_as_the_larger_grid_would():
    """A run counts duplicates and test/train overlap on its first seed only: merged along seeds,
    the counts are those of the part holding the merged grid's first seed, whatever the order."""
    low, high = (
        results.load(STUDY / "parts" / f"addition_validation_seeds{s}.nc") for s in ("0-7", "8-15")
    )
    assert not np.array_equal(low["duplicate_fraction"], high["duplicate_fraction"])
    merged = merge.merge([high, low], ["high.nc", "low.nc"])
    assert [int(s) for s in merged["seed"]] == list(range(16))
    for name in merge.FIRST_SEED_VARIABLES:
        np.testing.assert_array_equal(merged[name].values, low[name].values)
    committed = results.load(STUDY / "addition_validation.nc")
    assert committed.attrs["config_hash"] == merged.attrs["config_hash"]
    for name in committed.data_vars:
        np.testing.assert_array_equal(
            merged[name].transpose(*committed[name].dims).values, committed[name].values
        )


def _set_config(ds, raw: dict) -> None:
    """Give ``ds`` the config ``raw`` as a run of it would record it (config and its hash)."""
    ds.attrs["config"] = json.dumps(raw)
    ds.attrs["config_hash"] = configs.from_stored(raw, "test").hash()


def test_refusals_name_the_difference(tmp_path, capsys):
    low = _part(results.load(STUDY / "chain.nc"), [32, 2048])
    with pytest.raises(ValueError, match="differ in grid lists none"):
        merge.merge([low, low], ["a.nc", "b.nc"])
    with pytest.raises(ValueError, match="1 result file"):
        merge.merge([low], ["a.nc"])
    other = low.copy()
    raw = json.loads(low.attrs["config"])
    raw["grid"]["budgets"] = [8, 32]
    _set_config(other, raw)
    with pytest.raises(ValueError, match=r"share grid\.budgets values \[32\]"):
        merge.merge([low, other], ["a.nc", "b.nc"])
    raw["train"]["steps"] = 1200
    raw["grid"]["budgets"] = [8]
    _set_config(other, raw)
    with pytest.raises(ValueError, match=r"b\.nc differs from a\.nc in train\.steps; allowed"):
        merge.merge([low, other], ["a.nc", "b.nc"])
    raw["train"]["steps"] = 600
    raw["grid"]["seeds"] = [50]
    _set_config(other, raw)
    with pytest.raises(ValueError, match=r"differ in grid lists \['budgets', 'seeds'\]"):
        merge.merge([low, other], ["a.nc", "b.nc"])
    path = tmp_path / "low.nc"
    results.atomic_write_netcdf(low, path)
    assert main(["merge", str(path), str(path), "--out", str(tmp_path / "m.txt")]) == 2
    assert "--out" in capsys.readouterr().err
    assert not (tmp_path / "m.txt").exists()


def test_parts_fine_tuned_from_different_bases_are_refused():
    whole = results.load(STUDY / "chain.nc")
    budgets = [int(n) for n in whole["budget"].values]
    odd, even = _part(whole, budgets[1::2]), _part(whole, budgets[::2])
    odd.attrs[merge.BASE_HASH] = "a" * 16
    with pytest.raises(
        ValueError, match=r"different bases \(base_config_hash odd.nc: a+, even.nc: none\)"
    ):
        merge.merge([odd, even], ["odd.nc", "even.nc"])
    even.attrs[merge.BASE_HASH] = "a" * 16  # one base: merged, and the base recorded
    assert merge.merge([odd, even], ["odd.nc", "even.nc"]).attrs[merge.BASE_HASH] == "a" * 16
