"""Merging grids that differ along one axis equals training the larger grid in one run."""

import json

import numpy as np
import pytest
from conftest import tiny_raw

from difftrade import config, experiment, merge, results
from difftrade.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("merge")
    out = {}
    for name, budgets in (("whole", [1, 8, 32]), ("low", [1, 32]), ("mid", [8])):
        cfg = config.from_dict(tiny_raw(grid={"budgets": budgets}))
        experiment.run(cfg, base / name, progress=False)
        out[name] = base / name / "results.nc"
    return out


def test_merged_budgets_equal_the_whole_grid(runs, tmp_path):
    target = tmp_path / "merged.nc"
    assert main(["merge", str(runs["mid"].parent), str(runs["low"]), "--out", str(target)]) == 0
    merged, whole = results.load(target), results.load(runs["whole"])
    np.testing.assert_array_equal(merged["budget"].values, [1, 8, 32])
    assert merged.attrs["config_hash"] == whole.attrs["config_hash"]
    assert json.loads(merged.attrs["config"]) == json.loads(whole.attrs["config"])
    assert [m["file"] for m in json.loads(merged.attrs["merged_from"])] == [str(runs["mid"]), str(runs["low"])]
    assert set(merged.data_vars) == set(whole.data_vars)
    for name in whole.data_vars:
        np.testing.assert_allclose(merged[name].transpose(*whole[name].dims).values, whole[name].values,
                                   rtol=1e-5, atol=1e-6, err_msg=name)


def test_refusals_name_the_difference(runs, tmp_path, capsys):
    low = results.load(runs["low"])
    with pytest.raises(ValueError, match="differ in grid lists none"):
        merge.merge([low, low], ["a.nc", "b.nc"])
    with pytest.raises(ValueError, match="1 result file"):
        merge.merge([low], ["a.nc"])
    other = low.copy()
    raw = json.loads(low.attrs["config"])
    raw["grid"]["budgets"] = [8, 32]
    other.attrs["config"] = json.dumps(raw)
    with pytest.raises(ValueError, match=r"share grid\.budgets values \[32\]"):
        merge.merge([low, other], ["a.nc", "b.nc"])
    raw["train"]["steps"] = 80
    raw["grid"]["budgets"] = [8]
    other.attrs["config"] = json.dumps(raw)
    with pytest.raises(ValueError, match=r"b\.nc differs from a\.nc in train\.steps; allowed"):
        merge.merge([low, other], ["a.nc", "b.nc"])
    raw["train"]["steps"] = 40
    raw["grid"]["seeds"] = [5]
    other.attrs["config"] = json.dumps(raw)
    with pytest.raises(ValueError, match=r"differ in grid lists \['budgets', 'seeds'\]"):
        merge.merge([low, other], ["a.nc", "b.nc"])
    assert main(["merge", str(runs["low"]), str(runs["mid"]), "--out", str(tmp_path / "m.txt")]) == 2
    assert "--out" in capsys.readouterr().err
    assert not (tmp_path / "m.txt").exists()
