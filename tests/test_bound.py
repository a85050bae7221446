"""difftrade bound: certificates and shift bounds next to a finished run."""

import dataclasses

import numpy as np
import pytest
from conftest import tiny_raw

from difftrade.certify import BoundSettings, certify_run, level_bands, render, shift_atoms
from difftrade.cli.main import main
from difftrade.results import schema as results
from difftrade.runner import experiment
from difftrade.tasks import configs, make_task
from difftrade.train.run_task import run_task


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("boundrun")
    cfg = configs.from_dict(tiny_raw(train={"steps": 80}))
    experiment.run(cfg, out, progress=False)
    return out


@pytest.mark.slow  # certifies every member of a trained grid
def test_certificates_are_valid_bounds(run_dir):
    b = certify_run(run_dir, BoundSettings(n_bound=64, num_draws=2, seeds=(0,)), progress=False)
    certified = b["in_dist_bound"].sel(seed=0).values
    assert np.all(np.isfinite(certified)) and np.all(
        np.isnan(b["in_dist_bound"].sel(seed=1).values)
    )
    for name in ("in_dist", "target"):
        bound = b[f"{name}_bound"].sel(seed=0).values
        mc = b[f"{name}_mc_risk_estimate"].sel(seed=0).values
        assert np.all(b[f"{name}_valid"].sel(seed=0).values == 1)
        assert np.all((bound >= mc) & (bound <= 1.0))  # a bound is never below its own estimate
        lower = b[f"{name}_lower_bound"].sel(seed=0).values  # ... and the lower end never above it
        assert np.all((lower >= 0) & (lower <= mc))
        assert np.all(b[f"{name}_kl"].sel(seed=0).values >= 0)
    assert "confidence" in b.attrs["delta_budget"]
    assert (run_dir / "bounds.nc").exists()


@pytest.mark.slow
def test_extrapolation_band_contains_measured_gap(run_dir):
    b = certify_run(run_dir, BoundSettings(n_bound=32, num_draws=1, seeds=(1,)), progress=False)
    from difftrade.results import schema as results

    ds = results.load(run_dir / "results.nc")
    gap = ds["extrapolation_gap"].values
    assert np.all(b["extrap_gap_lower"].values <= gap + 1e-12) and np.all(
        gap <= b["extrap_gap_upper"].values + 1e-12
    )
    # the held-out interval of each deterministic network's target risk brackets the measured one
    target = ds["target_risk"].values
    assert np.all(b["heldout_target_lower"].values <= target + 1e-12) and np.all(
        target <= b["heldout_target_upper"].values + 1e-12
    )
    assert np.all(b["heldout_target_upper"].values - b["heldout_target_lower"].values > 0)
    shift = b["shift_target_bound"].values
    assert np.all((shift >= 0) & (shift <= 1))
    # the target mass outside the training support can never be certified: the bound is at
    # least π for every row (π > 0 for the level-1 rows of this nested 2-level task)
    pi = b["uncoverable_mass"].values
    assert pi[0] > 0.4 and pi[-1] == 0.0
    assert np.all(shift >= pi[:, None, None] - 1e-12)


def test_shift_atoms_nested_and_exact():
    nested = make_task("addition", d_max=3)
    w = np.array([0.0, 1.0, 0.0])  # all mass on level 2 = operands below 100
    atoms = shift_atoms(nested, w)
    # shells: 100 problems in level 1, 10^4 - 100 new ones in level 2
    np.testing.assert_allclose(atoms, [100 / 1e4, 1 - 100 / 1e4, 0.0])
    exact = make_task("addition", d_max=3, levels_kind="exact")
    np.testing.assert_array_equal(shift_atoms(exact, w), w)


def test_shift_atoms_follow_the_declared_level_structure():
    """Every registered task gets atoms from its own declaration (no default): exact tasks keep
    their level weights; a nested task that cannot size its levels is refused, not treated as exact."""
    from difftrade.tasks import REGISTRY
    from difftrade.tasks.addition import Addition

    w = np.array([0.25, 0.75, 0.0])
    for name in REGISTRY:
        task = make_task(name, d_min=1, d_max=3)
        if task.level_structure == "exact":
            np.testing.assert_array_equal(shift_atoms(task, w), w)
        else:
            assert not np.array_equal(shift_atoms(task, w), w)

    class Unsized(Addition):
        def sample_space_size(self, d: int) -> None:
            return None

    with pytest.raises(ValueError, match="nested levels but not every level's sample_space_size"):
        shift_atoms(Unsized(d_max=3), w)


def test_level_bands_bracket_estimates():
    acc = np.array([[0.5, 0.9, 1.0]])
    lo, hi = level_bands(acc, 100, 0.05)
    risk = 1 - acc
    assert np.all(lo <= risk) and np.all(risk <= hi)
    assert lo[0, 2] == 0.0 and hi[0, 2] > 0.0


@pytest.mark.slow
def test_cli_bound_and_errors(run_dir, capsys, tmp_path):
    assert (
        main(
            [
                "bound",
                str(run_dir),
                "--n-bound",
                "32",
                "--draws",
                "1",
                "--seeds",
                "0",
                "--budgets",
                "32",
                "--sigmas",
                "0.01,0.02",
                "--prior-sigmas",
                "0.05",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Non-vacuous certificates" in out and (run_dir / "bounds.png").exists()
    b = results.load(run_dir / "bounds.nc")  # the chosen σ and σ_P come from the grids given
    assert set(np.unique(b["in_dist_sigma"].sel(seed=0, budget=32).values)) <= {0.01, 0.02}
    assert set(np.unique(b["in_dist_prior_sigma"].sel(seed=0, budget=32).values)) == {0.05}
    assert np.all(
        np.isnan(b["in_dist_sigma"].sel(budget=1).values)
    )  # --budgets 32 left n = 1 alone
    assert (
        "ln(K·K_P)" in b.attrs["delta_budget"]
        and "2 posterior σ × 1 prior σ_P" in b.attrs["delta_budget"]
    )
    assert main(["bound", str(tmp_path)]) == 2
    assert "not a finished run" in capsys.readouterr().err
    assert main(["bound", str(run_dir), "--seeds", "7"]) == 2
    assert main(["bound", str(run_dir), "--budgets", "64"]) == 2
    assert "--budgets [64] are not in the run's grid.budgets [1, 32]" in capsys.readouterr().err
    assert main(["bound", str(run_dir), "--budgets", "1e3"]) == 2
    assert "--budgets='1e3'; allowed: comma-separated integers" in capsys.readouterr().err
    assert main(["bound", str(run_dir), "--sigmas", "0.01,x"]) == 2
    assert "--sigmas='0.01,x'" in capsys.readouterr().err
    assert main(["bound", str(run_dir), "--prior-sigmas", "0"]) == 2
    assert "prior_sigmas=[0.0]" in capsys.readouterr().err


@pytest.mark.slow
def test_train_bound_set_with_fitted_posterior(run_dir):
    """bound_set="train": each member is certified on its own n = budget training examples, and
    L_T(Q) is the change of measure applied to the certified L_S(Q); the posterior is fitted."""
    from difftrade.runner.rundir import load_run
    from difftrade.theory.change_of_measure import lp_shift_bound
    from difftrade.theory.posterior import FitConfig

    settings = BoundSettings(
        num_draws=2, seeds=(0,), bound_set="train", posterior="fitted", fit=FitConfig(steps=5)
    )
    b = certify_run(run_dir, settings, progress=False)
    cfg, _ = load_run(run_dir)
    n = b["in_dist_num_examples"].sel(seed=0).values
    np.testing.assert_array_equal(n, np.broadcast_to(b["budget"].values[None, :], n.shape))
    bound, mc = (
        b["in_dist_bound"].sel(seed=0).values,
        b["in_dist_mc_risk_estimate"].sel(seed=0).values,
    )
    assert np.all(b["in_dist_valid"].sel(seed=0).values == 1) and np.all(
        (bound >= mc) & (bound <= 1.0)
    )
    assert np.all(b["in_dist_sigma"].sel(seed=0).values == 1.0)  # the fitted σ is used unscaled
    assert set(np.unique(b["in_dist_prior_sigma"].sel(seed=0).values)) <= set(
        settings.fitted_prior_sigmas
    )
    assert np.all(np.isfinite(b["fit_objective"].sel(seed=0).values))
    # 5 steps at μ's step 1e-4 barely move μ: it keeps ~all of training's displacement
    np.testing.assert_allclose(b["fit_retained"].sel(seed=0).values, 1.0, atol=0.05)
    target = b["target_bound"].values
    s_atoms = shift_atoms(run_task(cfg), cfg.train_weights())[:, None, None, :]
    certified = np.nan_to_num(b["in_dist_bound"].values, nan=1.0)
    expected = np.asarray(
        lp_shift_bound(certified, shift_atoms(run_task(cfg), cfg.target_weights()), s_atoms)
    )
    np.testing.assert_allclose(target[..., 0], expected[..., 0])
    assert np.all(np.isnan(target[..., 1]))  # seed 1 not certified
    assert np.all(target[..., 0] >= b["uncoverable_mass"].values[:, None] - 1e-12)
    text = render(results.load(run_dir / "results.nc"), b)
    assert "own n training examples" in text
    assert "of 4 in-distribution" in text  # shares count the 4 certified members, not seed 1's NaNs
    assert "μ keeps" in text


def test_retained_displacement_closed_form():
    from difftrade.certify import retained_displacement

    w0 = {"a": np.zeros((2, 3)), "b": np.ones((2, 4))}
    w = {"a": np.ones((2, 3)), "b": np.stack([3 * np.ones(4), -np.ones(4)])}
    mean = {"a": 0.25 * w["a"], "b": w0["b"] + 0.25 * (w["b"] - w0["b"])}
    np.testing.assert_allclose(retained_displacement(mean, w, w0), [0.25, 0.25])
    np.testing.assert_allclose(retained_displacement(w0, w, w0), [0.0, 0.0])


@pytest.mark.slow  # needs the module's trained run (about 20 s), which only slow tests share
def test_bound_settings_errors(run_dir, capsys):
    with pytest.raises(ValueError, match="bound_set"):
        BoundSettings(bound_set="test")
    with pytest.raises(ValueError, match="n_bound"):
        BoundSettings(n_bound=0)
    assert main(["bound", str(run_dir), "--posterior", "fitted", "--fit-steps", "0"]) == 2
    assert "steps" in capsys.readouterr().err


def _check_kl_against_closed_form(b, params, members, prior_params, prior_members):
    """The certified KL of members ``[d, 1, 0]`` (budget index 1, seed 0) equals the Gaussian KL of
    N(w, σ²I) to N(w₀, σ_P²I) at the chosen σ, σ_P, in float64 from the saved weights; the reported
    distance is ‖w − w₀‖."""
    import jax

    for i, (m, p) in enumerate(zip(members, prior_members)):
        w = np.concatenate(
            [np.ravel(np.asarray(x[m], np.float64)) for x in jax.tree.leaves(params)]
        )
        w0 = np.concatenate(
            [np.ravel(np.asarray(x[p], np.float64)) for x in jax.tree.leaves(prior_params)]
        )
        s, sp = (
            float(b["in_dist_sigma"].values[i, 1, 0]),
            float(b["in_dist_prior_sigma"].values[i, 1, 0]),
        )
        kl = np.sum(np.log(sp / s) + (s**2 + (w - w0) ** 2) / (2 * sp**2) - 0.5)
        np.testing.assert_allclose(b["in_dist_kl"].values[i, 1, 0], kl, rtol=1e-4)
        np.testing.assert_allclose(
            b["prior_distance"].values[i, 1, 0], np.linalg.norm(w - w0), rtol=1e-9
        )


@pytest.mark.slow
def test_prefix_prior_is_the_member_after_its_prefix_phase(tmp_path, run_dir):
    """prior="prefix": the prior centre is the member's own weights after its prefix phase (saved
    as chunk_*.prior.npz), the bound set is its training examples [n', n) with n' = prefix_budget(n),
    and the certified KL is the Gaussian KL to that centre."""
    import jax

    from difftrade.model.transformer import init_params
    from difftrade.runner.chunks import load_params

    raw = tiny_raw(train={"steps": 80, "prefix_steps": 40})
    cfg = configs.from_dict(raw)
    assert (
        cfg.train.prefix_steps == 40
        and cfg.hash() != configs.from_dict(tiny_raw(train={"steps": 80})).hash()
    )
    assert (
        "prefix_steps" not in configs.from_dict(tiny_raw()).to_dict()["train"]
    )  # off: older configs keep their hash
    out = tmp_path / "prefix"
    experiment.run(cfg, out, progress=False)
    b = certify_run(
        out,
        BoundSettings(num_draws=2, seeds=(0,), bound_set="train", prior="prefix"),
        progress=False,
    )
    assert np.all(
        np.isnan(b["in_dist_bound"].values[:, 0, :])
    )  # n = 1: n' = 1, nothing left to certify on
    np.testing.assert_array_equal(b["in_dist_num_examples"].values[:, 1, 0], [16, 16])  # [16, 32)
    bound, mc = b["in_dist_bound"].values[:, 1, 0], b["in_dist_mc_risk_estimate"].values[:, 1, 0]
    assert np.all((bound >= mc) & (bound <= 1.0))
    like = init_params(cfg.model, jax.random.key(0))
    members, params = load_params(out, like)
    prior_members, prior = load_params(out, like, kind="prior")
    np.testing.assert_array_equal(members, prior_members)
    big = np.ravel_multi_index(
        (np.array([0, 1]), np.array([1, 1]), np.array([0, 0])), cfg.grid_shape
    )
    _check_kl_against_closed_form(b, params, big, prior, big)
    assert "prefix phase" in render(results.load(out / "results.nc"), b)
    with pytest.raises(ValueError, match="prior='prefix' needs bound_set='train'"):
        BoundSettings(prior="prefix")
    with pytest.raises(ValueError, match="train.prefix_steps > 0"):
        certify_run(run_dir, BoundSettings(bound_set="train", prior="prefix"), progress=False)


@pytest.mark.slow
def test_grid_prior_is_the_smaller_budget_member(run_dir):
    """prior="grid": the prior centre of a member (d, n, seed) is the grid's member (d, n', seed) at
    the next smaller budget, the bound set is the member's training examples [n', n), and the
    certified KL is the Gaussian KL to that centre (closed form, float64, from the saved weights)."""
    import jax

    from difftrade.certify import grid_prior_members
    from difftrade.model.transformer import init_params
    from difftrade.runner.chunks import load_params
    from difftrade.runner.rundir import load_run

    cfg, _ = load_run(run_dir)
    shape = cfg.grid_shape  # (difficulty 2, budget [1, 32], seed 2)
    big = np.ravel_multi_index((np.array([0, 1]), np.array([1, 1]), np.array([0, 0])), shape)
    start, partners = grid_prior_members(cfg, big)
    assert start == 1
    np.testing.assert_array_equal(
        partners,
        np.ravel_multi_index((np.array([0, 1]), np.array([0, 0]), np.array([0, 0])), shape),
    )
    assert grid_prior_members(cfg, partners)[0] == 0  # the smallest budget has no prior member

    b = certify_run(
        run_dir,
        BoundSettings(num_draws=2, seeds=(0,), bound_set="train", prior="grid"),
        progress=False,
    )
    assert np.all(np.isnan(b["in_dist_bound"].values[:, 0, :]))  # n = 1: uncertified
    np.testing.assert_array_equal(b["in_dist_num_examples"].values[:, 1, 0], [31, 31])  # [1, 32)
    bound, mc = b["in_dist_bound"].values[:, 1, 0], b["in_dist_mc_risk_estimate"].values[:, 1, 0]
    assert np.all((bound >= mc) & (bound <= 1.0))
    _, params = load_params(run_dir, init_params(cfg.model, jax.random.key(0)))
    _check_kl_against_closed_form(b, params, big, params, partners)
    assert "next smaller budget" in render(results.load(run_dir / "results.nc"), b)
    with pytest.raises(ValueError, match="prior='grid' needs bound_set='train'"):
        BoundSettings(prior="grid")
    with pytest.raises(ValueError, match="allowed: 'init', 'grid'"):
        BoundSettings(prior="mean")


@pytest.mark.slow
def test_budgets_flag_and_report_over_certified_members(run_dir):
    """--budgets certifies only those budgets; the report sets each certificate against the
    measured risks of the same seeds and budgets, not the mean over all of them."""
    b = certify_run(
        run_dir, BoundSettings(n_bound=32, num_draws=1, seeds=(1,), budgets=(32,)), progress=False
    )
    cert = b["in_dist_bound"]
    assert np.all(np.isfinite(cert.sel(seed=1, budget=32).values))
    assert np.all(np.isnan(cert.sel(budget=1).values)) and np.all(np.isnan(cert.sel(seed=0).values))
    ds = results.load(run_dir / "results.nc")
    poisoned = ds.copy(deep=True)
    poisoned["train_risk"].loc[{"seed": 0}] = 5.0  # would show in any mean that includes seed 0
    rows = [
        line for line in render(poisoned, b).splitlines() if line.startswith(("| 1 | ", "| 2 | "))
    ]
    assert len(rows) == 2 and all(
        row.split("|")[2].strip() == "32" for row in rows
    )  # only the certified budget
    shown = [float(row.split("|")[3]) for row in rows]
    np.testing.assert_allclose(shown, ds["train_risk"].sel(seed=1, budget=32).values, atol=5e-4)
    with pytest.raises(
        ValueError, match=r"--budgets \[7\] are not in the run's grid.budgets \[1, 32\]"
    ):
        certify_run(run_dir, BoundSettings(budgets=(7,)), progress=False)


def test_d_star_table_per_seed_agreement():
    """Certified d* per seed against the seed's own measured d*; vacuous bounds name nothing."""
    import json

    import xarray as xr

    from difftrade.analysis.certified import d_star_table

    coords = {"difficulty": [1, 2, 3], "budget": [10, 20], "seed": [0, 1, 2]}
    dims = ("difficulty", "budget", "seed")
    risk = np.full((3, 2, 3), 0.5)
    bound = np.ones((3, 2, 3))  # n = 10: every bound vacuous
    risk[1, 1, 0], bound[1, 1, 0] = 0.1, 0.6  # seed 0 at n = 20: both pick d = 2 (agree)
    risk[0, 1, 1], bound[2, 1, 1] = 0.1, 0.7  # seed 1: measured d = 1, certified d = 3 (disagree)
    risk[2, 1, 2] = 0.1  # seed 2: vacuous everywhere, names no d*
    ds = xr.Dataset({"target_risk": (dims, risk)}, coords=coords)
    b = xr.Dataset(
        {"target_bound": (dims, bound), "shift_target_bound": (dims, bound)},
        coords=coords,
        attrs={"settings": json.dumps({"seeds": None, "budgets": None})},
    )
    t = d_star_table(ds, b)
    np.testing.assert_array_equal(t["seeds_agree"], [0, 1])
    np.testing.assert_array_equal(t["seeds_informative"], [0, 2])
    # seed means at n = 20: bounds (1, 0.867, 0.9) -> d = 2; risks (0.367, 0.367, 0.367) tie -> d = 1
    np.testing.assert_array_equal(t["certified"], [np.nan, 2.0])
    np.testing.assert_array_equal(t["empirical"], [1.0, 1.0])
    assert "certified_set" not in t  # no lower ends: no certified comparison
    # with lower ends: seed 0 at n = 20 rules out d = 1 and 3 (lower ends 0.65 > d = 2's 0.6, their
    # own bounds 0.9 informative); seed 1's d = 1 has a high lower end under a vacuous bound (its σ
    # an arbitrary pick among ties): it is not ruled out
    upper = bound.copy()
    upper[[0, 2], 1, 0] = 0.9
    lower = np.zeros((3, 2, 3))
    lower[[0, 2], 1, 0] = 0.65
    lower[0, 1, 1] = 0.95
    b["target_bound"], b["target_lower_bound"] = (dims, upper), (dims, lower)
    b.attrs.update(
        certified_members=18,
        config_hash="x",
        delta_budget="",
        settings=json.dumps(
            {
                "seeds": None,
                "budgets": None,
                "delta": 0.01,
                "delta_prime": 0.01,
                "delta_lower": 0.01,
                "bound_set": "fresh",
                "n_bound": 8,
            }
        ),
    )
    t = d_star_table(ds, b)
    assert (
        t["certified_set"][:, 1, 0].tolist() == [False, True, False]
        and t["certified_set"][:, 0].all()
    )
    for name in ("in_dist_bound", "in_dist_kl"):
        b[name] = (dims, bound)
    b["uncoverable_mass"] = (("difficulty",), np.zeros(3))
    ds["train_risk"] = ds["test_risk"] = (dims, risk)
    text = render(ds, b)
    assert "| 20 | 0: 2; 1: 1; 2: 3 | 0: {2}; 1: {1, 2, 3}; 2: {1, 2, 3} |" in text
    assert "1 − 3 × 0.03 = 0.91" in text


@pytest.mark.slow
def test_refresh_shift_recomputes_only_the_change_of_measure(run_dir, capsys):
    """A bounds.nc from before the kl fix (no shift_bound attribute) is flagged in the report;
    --refresh-shift rewrites its shift fields from results.nc and keeps every certificate."""
    from difftrade.certify import SHIFT_BOUND

    settings = BoundSettings(n_bound=32, num_draws=1, seeds=(0,), budgets=(32,), bound_set="train")
    fresh = certify_run(run_dir, settings, progress=False)
    assert fresh.attrs["shift_bound"] == SHIFT_BOUND
    stale = fresh.copy(deep=True)
    del stale.attrs["shift_bound"]
    stale["shift_target_bound"] = (
        stale["shift_target_bound"] * 0.5
    )  # what an invalid bound could say
    stale["target_bound"] = stale["target_bound"] * 0.5
    results.atomic_write_netcdf(stale, run_dir / "bounds.nc")
    ds = results.load(run_dir / "results.nc")
    assert "Stale shift bounds" in render(ds, results.load(run_dir / "bounds.nc"))
    assert main(["bound", str(run_dir), "--refresh-shift"]) == 0
    assert "Stale shift bounds" not in capsys.readouterr().out
    refreshed = results.load(run_dir / "bounds.nc")
    for name in (
        "shift_target_bound",
        "target_bound",
        "in_dist_bound",
        "in_dist_kl",
        "extrap_gap_lower",
    ):
        np.testing.assert_array_equal(refreshed[name].values, fresh[name].values)
    assert refreshed.attrs["shift_bound"] == SHIFT_BOUND


@pytest.mark.slow
def test_importance_weighted_target_certificate(tmp_path, run_dir):
    """importance_weighted: a second certificate on the training bound set, each example
    weighted by (t/s of the level it was drawn at)/B; L_T(Q) ≤ B·bound + π. Checked on the
    deterministic network against the weighted error recomputed here from the examples. It
    shares the in-distribution certificate's forward passes without changing that certificate."""
    import jax
    import jax.numpy as jnp

    from difftrade.model.transformer import graphdef, init_params
    from difftrade.runner.chunks import load_params
    from difftrade.tasks import data
    from difftrade.train.evaluate import example_metrics
    from difftrade.train.trainer import member_data_root

    raw = tiny_raw(
        grid={"budgets": [64], "seeds": [0], "train_distribution": "mixture", "mixture_main": 0.6}
    )
    cfg = configs.from_dict(raw)
    out = tmp_path / "mixture"
    experiment.run(cfg, out, progress=False)
    b = certify_run(
        out, BoundSettings(num_draws=1, bound_set="train", importance_weighted=True), progress=False
    )
    s, t = (
        cfg.train_weights(),
        cfg.target_weights(),
    )  # [D, L] = 0.6 + 0.4 uniform mixtures, [L] uniform
    np.testing.assert_allclose(b["iw_scale"].values[:, 0, 0], (t / s).max(axis=1))
    np.testing.assert_allclose(b["iw_uncovered"].values, 0.0)
    like = init_params(cfg.model, jax.random.key(0))
    _, params = load_params(out, like)
    run_key = jax.random.key(cfg.run.seed)
    for i in range(len(cfg.grid.difficulties)):
        member = jax.tree.map(lambda x, i=i: x[i], params)
        tokens, mask, levels = data.examples(
            run_task(cfg),
            member_data_root(run_key, 0),
            data.SPLITS["train"],
            jnp.asarray(s[i], jnp.float32),
            jnp.arange(64),
        )
        exact, _ = example_metrics(graphdef(cfg.model), member, tokens, mask)
        ratio = (t / s[i])[np.asarray(levels) - run_task(cfg).d_min]
        assert (
            len(set(np.asarray(levels).tolist())) == 2
        )  # both levels drawn: the lookup is exercised
        expected = np.mean(
            ratio * (1 - np.asarray(exact))
        )  # an unbiased estimate of the target risk
        np.testing.assert_allclose(
            b["target_iw_deterministic_risk"].values[i, 0, 0], expected, rtol=1e-6
        )
    bound, mc = b["target_iw_bound"].values, b["target_iw_mc_risk_estimate"].values
    assert np.all((bound >= mc) & (bound <= 1.0)) and np.all(b["target_iw_valid"].values == 1)
    # the lower end: B·(lower end of the weighted loss), no π (the uncovered part is ≥ 0)
    lower = b["target_iw_lower_bound"].values
    assert np.all((lower >= 0) & (lower <= mc))
    # LP-composed target interval from the in-distribution one: best case ≤ worst case
    assert np.all(b["target_lower_bound"].values <= b["target_bound"].values)
    text = render(results.load(out / "results.nc"), b)
    assert "importance-weighted" in text and "Certified sets of optimal difficulties" in text
    assert "importance-weighted set per seed" in text and "held-out test sets, per seed" in text
    assert "own δ + δ′" in b.attrs["delta_budget"]
    alone = certify_run(out, BoundSettings(num_draws=1, bound_set="train"), progress=False)
    for name in ("in_dist_bound", "in_dist_mc_risk_estimate", "in_dist_sigma", "in_dist_kl"):
        np.testing.assert_array_equal(b[name].values, alone[name].values, err_msg=name)
    # iw_selection="shared": the weighted certificate at the in-distribution (σ, σ_P), the same Q;
    # never below its own choice, which minimises its bound over the same grid and draws
    shared = certify_run(
        out,
        BoundSettings(
            num_draws=1, bound_set="train", importance_weighted=True, iw_selection="shared"
        ),
        progress=False,
    )
    for name in ("sigma", "prior_sigma"):
        np.testing.assert_array_equal(
            shared[f"target_iw_{name}"].values, shared[f"in_dist_{name}"].values
        )
    assert np.all(shared["target_iw_bound"].values >= b["target_iw_bound"].values)
    assert "at the σ, σ_P of cert. L_S(Q)" in render(results.load(out / "results.nc"), shared)
    with pytest.raises(ValueError, match="iw_selection='shared' needs importance_weighted=True"):
        BoundSettings(bound_set="train", iw_selection="shared")
    with pytest.raises(ValueError, match="importance_weighted=True needs bound_set='train'"):
        BoundSettings(importance_weighted=True)


@pytest.mark.slow
def test_interrupted_certification_resumes_without_recomputing(run_dir, tmp_path, monkeypatch):
    """A certification that fails part way keeps its finished chunks; the rerun certifies only
    the rest and writes the same bounds.nc as an uninterrupted run, then drops the chunks."""
    import shutil

    from difftrade.certify import run as bound
    from difftrade.runner.rundir import load_run

    settings = BoundSettings(
        n_bound=32,
        num_draws=1,
        seeds=(0,),
        budgets=(32,),
        member_chunk=1,
        sigmas=(0.01, 0.03),
        prior_sigmas=(0.05,),
    )
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    for d in (whole, broken):
        shutil.copytree(run_dir, d)
        (d / "bounds.nc").unlink(missing_ok=True)  # other tests certify run_dir too
    expected = certify_run(whole, settings, progress=False)
    assert not (whole / "bounds.partial").exists()

    real, calls = bound.certify_population, []

    def failing_on_third(*args, **kwargs):  # each chunk makes two calls (S and T bound sets)
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(bound, "certify_population", failing_on_third)
    with pytest.raises(RuntimeError, match="simulated failure"):
        certify_run(broken, settings, progress=False)
    saved = list((broken / "bounds.partial").rglob("*.npz"))
    assert len(saved) == 1 and not (broken / "bounds.nc").exists()  # the first chunk survived

    calls.clear()
    monkeypatch.setattr(
        bound, "certify_population", lambda *a, **k: (calls.append(1), real(*a, **k))[1]
    )
    got = certify_run(broken, settings, progress=False)
    num_chunks = int(np.isfinite(expected["in_dist_bound"].values).sum())  # one member each
    assert num_chunks >= 2 and len(calls) == 2 * (num_chunks - 1)  # the saved chunk was not redone
    for name in expected.data_vars:
        np.testing.assert_array_equal(got[name].values, expected[name].values, err_msg=name)
    assert not (broken / "bounds.partial").exists()
    # every member draws from the run's one key: chunking does not change the numbers
    rechunked = certify_run(whole, dataclasses.replace(settings, member_chunk=2), progress=False)
    np.testing.assert_array_equal(
        rechunked["in_dist_bound"].values, expected["in_dist_bound"].values
    )
    # another settings' chunks are never picked up: a different folder
    cfg = load_run(broken)[0]
    assert bound._partial_dir(broken, cfg, settings) == saved[0].parent
    assert (
        bound._partial_dir(broken, cfg, dataclasses.replace(settings, sigmas=(0.02, 0.03)))
        != saved[0].parent
    )


@pytest.mark.slow
def test_cli_whole_set_monte_carlo(run_dir, tmp_path, capsys):
    """--monte-carlo whole_set (the fallback if per-example draws misbehave somewhere) runs end to
    end with one key for all members and reaches the certificate: the δ budget names m whole-set
    draws. (Its numbers are checked against closed forms in test_certificate.py.)"""
    import json
    import shutil

    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    assert (
        main(
            [
                "bound",
                str(out),
                "--n-bound",
                "32",
                "--draws",
                "2",
                "--monte-carlo",
                "whole_set",
                "--seeds",
                "0",
                "--budgets",
                "32",
                "--sigmas",
                "0.01,0.02",
                "--prior-sigmas",
                "0.05",
            ]
        )
        == 0
    )
    assert "Langford–Caruana" in capsys.readouterr().out
    b = results.load(out / "bounds.nc")
    assert json.loads(b.attrs["settings"])["monte_carlo"] == "whole_set"
    assert "m=2 draws on the whole set" in b.attrs["delta_budget"]
    certified = b.sel(seed=0, budget=32)
    assert np.all(certified["in_dist_valid"].values == 1) and np.all(
        certified["target_valid"].values == 1
    )
    assert np.all(certified["in_dist_bound"].values >= certified["in_dist_mc_risk_estimate"].values)


@pytest.mark.slow  # needs the module's trained run (about 20 s), which only slow tests share
def test_a_run_directory_another_process_writes_is_refused(run_dir, tmp_path, capsys):
    """bound takes the run directory's lock: while another writer holds it, it refuses in one line
    naming the directory and the holder, before certifying anything; a path that is not a run is
    refused without creating it."""
    import os

    from difftrade.runner import rundir

    with rundir.DirLock(run_dir):
        with pytest.raises(
            ValueError,
            match=rf"RUN '.*' is being written by another difftrade process \(pid {os.getpid()}",
        ):
            certify_run(run_dir, BoundSettings(n_bound=16, num_draws=1, seeds=(0,)), progress=False)
        assert main(["bound", str(run_dir)]) == 2
        assert "is being written by another difftrade process" in capsys.readouterr().err
    missing = tmp_path / "no_such_run"
    assert main(["bound", str(missing)]) == 2
    assert not missing.exists()


@pytest.mark.slow
def test_certification_on_two_devices_equals_one(run_dir, tmp_path):
    """The certifier splits each chunk's members over every device: 4 members in chunks of 3 and 1
    on one device, one chunk of 4 split over 2 devices, give the same bounds.nc."""
    import os
    import shutil
    import subprocess
    import sys

    settings = {
        "n_bound": 32,
        "num_draws": 1,
        "seeds": (0, 1),
        "budgets": (32,),
        "member_chunk": 3,
        "sigmas": (0.01, 0.03),
        "prior_sigmas": (0.05,),
        "bound_set": "train",
        "importance_weighted": True,
    }
    one, two = tmp_path / "one", tmp_path / "two"
    for d in (one, two):
        shutil.copytree(run_dir, d)
        (d / "bounds.nc").unlink(missing_ok=True)
    expected = certify_run(one, BoundSettings(**settings), progress=False)
    code = (
        f"from difftrade.certify import BoundSettings, certify_run\nimport jax\nassert jax.device_count() == 2\n"
        f"certify_run({str(two)!r}, BoundSettings(**{settings!r}), progress=False)\n"
    )
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = results.load(two / "bounds.nc")
    assert int(np.isfinite(expected["in_dist_bound"].values).sum()) == 4
    for name in expected.data_vars:
        np.testing.assert_allclose(
            got[name].values, expected[name].values, rtol=1e-6, atol=1e-7, err_msg=name
        )
