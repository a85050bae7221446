"""Transfer matrix: the numbers against a direct computation, diverged members left out, the
coverage summary, the CLI on a finished run and on a config it trains first."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import tiny_raw, toml_text

from difftrade.analysis import transfer
from difftrade.cli.main import main
from difftrade.results import schema as results


def _synthetic(seed: int = 0) -> xr.Dataset:
    """A results-like dataset: 3 difficulties x 2 budgets x 4 seeds x 3 levels, one diverged member."""
    rng = np.random.default_rng(seed)
    level_exact = rng.uniform(size=(3, 2, 4, 3))
    nonfinite = np.zeros((3, 2, 4), np.int32)
    nonfinite[1, 1, 2] = 7  # difficulty 2, budget 256, seed 2
    return xr.Dataset(
        {
            "level_exact": (("difficulty", "budget", "seed", "level"), level_exact),
            "nonfinite_steps": (("difficulty", "budget", "seed"), nonfinite),
        },
        coords={
            "difficulty": [1, 2, 3],
            "budget": [64, 256],
            "seed": [0, 1, 2, 3],
            "level": [1, 2, 3],
        },
        attrs={"task": "synthetic"},
    )


def test_matrix_is_the_seed_mean_without_diverged_members():
    ds = _synthetic()
    tm = transfer.transfer_matrix(ds)  # the largest budget
    assert tm.attrs["budget"] == 256
    acc = ds["level_exact"].values[:, 1]  # [D, S, L]
    keep = np.ones((3, 4), bool)
    keep[1, 2] = False
    for i in range(3):
        rows = acc[i][keep[i]]
        np.testing.assert_allclose(tm["accuracy"].values[i], rows.mean(0), rtol=0, atol=1e-15)
        np.testing.assert_array_equal(tm["accuracy_low"].values[i], rows.min(0))
        np.testing.assert_array_equal(tm["accuracy_high"].values[i], rows.max(0))
    np.testing.assert_array_equal(tm["seeds"].values, [4, 3, 4])
    small = transfer.transfer_matrix(ds, 64)
    np.testing.assert_allclose(
        small["accuracy"].values, ds["level_exact"].values[:, 0].mean(1), atol=1e-15
    )


def test_every_seed_diverged_gives_nan_not_a_number():
    ds = _synthetic()
    ds["nonfinite_steps"][0, 1, :] = 1
    tm = transfer.transfer_matrix(ds)
    assert np.all(np.isnan(tm["accuracy"].values[0])) and tm["seeds"].values[0] == 0
    assert "| 1 | 0 | – | – | – | – | – |" in transfer.render(tm)


def test_coverage_below_and_above_the_diagonal():
    ds = _synthetic()
    ds["level_exact"][:] = np.eye(3)[:, None, None, :]  # each row solves only its own level
    ds["level_exact"][2, :, :, :] = 1.0  # the hardest row solves everything
    down, up = transfer.coverage(transfer.transfer_matrix(ds))
    np.testing.assert_array_equal(down, [np.nan, 0.0, 1.0])
    np.testing.assert_array_equal(up, [0.0, 0.0, np.nan])


def test_budget_not_in_the_run_is_refused():
    with pytest.raises(ValueError, match=r"budget=100 is not in this run; allowed: 64, 256"):
        transfer.transfer_matrix(_synthetic(), 100)


def test_cli_on_a_run_directory(tmp_path, capsys):
    results.atomic_write_netcdf(_synthetic(), tmp_path / "results.nc")
    assert main(["transfer", str(tmp_path), "--budget", "64"]) == 0
    out = capsys.readouterr().out
    assert "Transfer matrix: synthetic at n = 64" in out
    assert {"transfer.md", "transfer.png", "transfer.pdf"} <= {p.name for p in tmp_path.iterdir()}
    assert (tmp_path / "transfer.md").read_text() in out
    assert main(["transfer", str(tmp_path), "--budget", "65"]) == 2
    assert "budget=65 is not in this run" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_trains_a_config_then_reads_its_matrix(tmp_path, capsys):
    config = tmp_path / "t.toml"
    config.write_text(toml_text(tiny_raw()))
    out = tmp_path / "run"
    assert main(["transfer", str(config), "--out", str(out)]) == 0
    ds = results.load(out)
    tm = transfer.transfer_matrix(ds)
    np.testing.assert_allclose(
        tm["accuracy"].values, ds["level_exact"].sel(budget=32).mean("seed").values
    )
    assert "| 2 | 2 |" in capsys.readouterr().out  # row d = 2 with both seeds
    assert (out / "transfer.png").stat().st_size > 0
