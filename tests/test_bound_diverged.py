"""`difftrade bound` never certifies a member whose training diverged (issue 20, item 2).

One healthy tiny run; each test copies it and marks members diverged in its results.nc as
`difftrade run` does for members with NaN/inf steps (``nonfinite_steps > 0``, ``diverged``, NaN
risks). Their weights stay finite, as a member's can after steps that were skipped: before this
rule, bound certified them like any other member.
"""

import re
import shutil

import numpy as np
import pytest

from difftrade.certify import BoundSettings, certify_run, refresh_shift, render
from difftrade.cli.main import main
from difftrade.results import divergence
from difftrade.results import schema as results
from difftrade.runner import experiment

SMALL = BoundSettings(n_bound=32, sigmas=(0.01, 0.03), prior_sigmas=(0.05,))
RISKS = ("train_risk", "test_risk", "target_risk", "generalization_gap", "extrapolation_gap")
GRID = ("difficulty", "budget", "seed")


@pytest.fixture(scope="module")
def healthy(tmp_path_factory, tiny_cfg):
    out = tmp_path_factory.mktemp("healthy") / "run"
    experiment.run(tiny_cfg, out, progress=False)
    return out


def _diverge(healthy, tmp_path, cells: list[tuple[int, int, int]]):
    """A copy of the run whose members at ``cells`` (d, n, seed) are marked diverged; (directory, results)."""
    out = tmp_path / "run"
    shutil.copytree(healthy, out)
    ds = results.load(out / "results.nc")
    for d, n, s in cells:
        at = {"difficulty": d, "budget": n, "seed": s}
        ds["nonfinite_steps"].loc[at] = 7
        ds["diverged"].loc[at] = True
        for name in RISKS:
            ds[name].loc[at] = np.nan
    results.atomic_write_netcdf(ds, out / "results.nc")
    return out, results.load(out / "results.nc")


def _per_member(b) -> list[str]:
    return [name for name, var in b.data_vars.items() if var.dims == GRID]


@pytest.mark.slow  # certifies a grid (~35 s)
def test_diverged_members_are_left_uncertified_and_named(healthy, tmp_path):
    bad = [(1, 32, 0), (2, 1, 1)]
    out, ds = _diverge(healthy, tmp_path, bad)
    b = certify_run(out, SMALL, progress=False)
    assert int(b.attrs["certified_members"]) == 6 and int(b.attrs["uncertified_diverged"]) == 2
    mask = divergence.diverged_mask(ds).transpose(*GRID).values
    assert mask.sum() == 2
    for name in _per_member(b):  # certificates, held-out bands and shift bounds alike
        values = b[name].transpose(*GRID).values
        assert np.all(np.isnan(values[mask])), name
    for name in ("in_dist_bound", "target_bound", "shift_target_bound", "heldout_target_upper"):
        assert np.all(np.isfinite(b[name].transpose(*GRID).values[~mask])), name
    text = render(ds, b)
    (line,) = [line for line in text.splitlines() if line.startswith("**Left uncertified:**")]
    assert "2 diverged member(s)" in line and "(1, 32, 0), (2, 1, 1)" in line, line
    assert "6 members)" in text.splitlines()[0]
    refreshed = refresh_shift(out)  # recomputes the held-out and shift fields: still NaN for them
    for name in ("shift_target_bound", "heldout_target_upper", "extrap_gap_lower"):
        assert np.all(np.isnan(refreshed[name].transpose(*GRID).values[mask])), name


@pytest.mark.slow
def test_a_diverged_grid_prior_leaves_its_member_uncertified(healthy, tmp_path):
    """prior='grid': member (1, 32, 0) has the diverged (1, 1, 0) as its prior centre: NaN too, and counted."""
    out, ds = _diverge(healthy, tmp_path, [(1, 1, 0)])
    settings = BoundSettings(
        n_bound=32,
        sigmas=(0.01, 0.03),
        prior_sigmas=(0.05,),
        seeds=(0,),
        bound_set="train",
        prior="grid",
    )
    b = certify_run(out, settings, progress=False)
    bound = b["in_dist_bound"]
    assert np.isnan(bound.sel(difficulty=1, budget=32, seed=0)) and np.isfinite(
        bound.sel(difficulty=2, budget=32, seed=0)
    )
    assert int(b.attrs["certified_members"]) == 1 and int(b.attrs["uncertified_diverged"]) == 2
    text = render(ds, b)
    assert (
        "1 diverged member(s)" in text
        and "Also left uncertified 1 member(s) whose grid prior" in text
    )


@pytest.mark.slow  # trains a grid to mark diverged (~30 s)
def test_bound_refuses_a_run_whose_chosen_members_all_diverged(healthy, tmp_path, capsys):
    out, _ = _diverge(healthy, tmp_path, [(d, n, 0) for d in (1, 2) for n in (1, 32)])
    with pytest.raises(ValueError, match=r"every member chosen for certification in .* diverged"):
        certify_run(out, BoundSettings(n_bound=32, seeds=(0,)), progress=False)
    capsys.readouterr()
    assert main(["bound", str(out), "--seeds", "0", "--n-bound", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(r"4 diverged member\(s\)", err), err
    assert not (out / "bounds.nc").exists() and not (out / "bounds.partial").exists()
