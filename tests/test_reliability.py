"""Resume keeps every member's own results and weights; diverged members are NaN, flagged and excluded.

One uninterrupted run (8 members in chunks of 2) and one run at learning_rate 1e3 (every member
diverges) are shared by the module; each resume test works on a copy of the first.
"""

import dataclasses
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
import xarray as xr
from conftest import tiny_raw, toml_text

from difftrade.cli import grids
from difftrade.cli import main as cli
from difftrade.config import run_config as config
from difftrade.model.transformer import init_params
from difftrade.recommender import recommend
from difftrade.results import assembly, divergence
from difftrade.results import schema as results
from difftrade.runner import experiment
from difftrade.runner.chunks import load_params
from difftrade.tasks import VOCAB, configs

NAME = re.compile(r"chunk_m(\d+)-(\d+)\.nc")
STABLE_ATTRS = (
    "wall_seconds",
    "sessions",
    "finished_utc",
)  # what a resumed run may change: its sessions


@pytest.fixture(scope="module")
def chunked(tmp_path_factory, tiny_cfg):
    """(config, run directory, results, params [8, ...] by member) of an uninterrupted run in chunks of 2."""
    cfg = dataclasses.replace(tiny_cfg, run=dataclasses.replace(tiny_cfg.run, chunk_size=2))
    out = tmp_path_factory.mktemp("chunked") / "run"
    ds = experiment.run(cfg, out, progress=False)
    members, params = load_params(out, _like(cfg))
    np.testing.assert_array_equal(members, np.arange(8))
    return cfg, out, ds, params


@pytest.fixture(scope="module")
def diverged_run(tmp_path_factory):
    """(config path, run directory, results) of the tiny grid at learning_rate 1e3 in chunks of 2."""
    raw = tiny_raw(grid={"learning_rate": 1e3}, run={"chunk_size": 2})
    tmp = tmp_path_factory.mktemp("diverged")
    (tmp / "lr1e3.toml").write_text(toml_text(raw))
    ds = experiment.run(configs.from_dict(raw), tmp / "run", progress=False)
    return tmp / "lr1e3.toml", tmp / "run", ds


def _like(cfg: config.RunConfig) -> object:
    return init_params(cfg.model, jax.random.key(0))


def _chunk_files(out: Path) -> list[Path]:
    return sorted((out / "chunks").glob("chunk_*.nc"))


def _weights(chunk: Path, kind: str) -> Path:
    """``chunk_X.nc`` -> ``chunk_X.{kind}.npz``."""
    return chunk.with_name(chunk.name.removesuffix(".nc") + f".{kind}.npz")


def _copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    (target / "results.nc").unlink()
    return target


def _chunk_of(out: Path, member: int) -> Path:
    """The chunk file holding ``member``."""
    (path,) = [p for p in _chunk_files(out) if member in results.load(p)["member"].values]
    return path


def _assert_chunks_named_by_members(out: Path, num: int) -> None:
    """Every chunk file holds the members its name says, and together they hold each member once."""
    held = []
    for path in _chunk_files(out):
        named = NAME.fullmatch(path.name)
        assert named, path.name
        ids = results.load(path)["member"].values
        assert (int(named[1]), int(named[2])) == (ids.min(), ids.max()), path.name
        for kind in ("params",):
            np.testing.assert_array_equal(np.load(_weights(path, kind))["member"], ids)
        held += ids.tolist()
    assert sorted(held) == list(range(num))


def _assert_same_run(
    resumed: xr.Dataset, ds: xr.Dataset, out: Path, params: object, cfg: config.RunConfig
) -> None:
    """results.nc and the weights of a resumed run equal the uninterrupted run's, bit for bit."""
    on_disk = results.load(out / "results.nc")
    for got in (resumed, on_disk):
        xr.testing.assert_identical(got.drop_attrs(), ds.drop_attrs())
        assert {k: v for k, v in got.attrs.items() if k not in STABLE_ATTRS} == {
            k: v for k, v in ds.attrs.items() if k not in STABLE_ATTRS
        }
    members, loaded = load_params(out, _like(cfg))
    np.testing.assert_array_equal(members, np.arange(8))
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)


# ---- item 1: resume never overwrites finished work ---------------------------------------------
def test_fresh_run_names_chunks_by_their_members(chunked):
    _, out, _, _ = chunked
    _assert_chunks_named_by_members(out, 8)
    assert [p.name for p in _chunk_files(out)] == [
        "chunk_m000000-000001.nc",
        "chunk_m000002-000003.nc",
        "chunk_m000004-000005.nc",
        "chunk_m000006-000007.nc",
    ]


def test_resume_after_deleting_a_middle_chunk_keeps_every_member_its_own(chunked, tmp_path):
    """A deleted middle chunk (members 2, 3) is retrained into its own file; chunk 6, 7 is untouched,
    results.nc equals the uninterrupted one and every member loads its own weights."""
    cfg, run, ds, params = chunked
    out = _copy(run, tmp_path)
    last = _chunk_of(out, 6)
    before = last.read_bytes(), _weights(last, "params").read_bytes()
    middle = _chunk_of(out, 2)
    for path in (middle, _weights(middle, "params")):
        path.unlink()
    resumed = experiment.run(cfg, out, resume=True, progress=False)
    assert (last.read_bytes(), _weights(last, "params").read_bytes()) == before
    _assert_same_run(resumed, ds, out, params, cfg)
    _assert_chunks_named_by_members(out, 8)


def test_damaged_chunks_are_named_moved_aside_and_retrained(chunked, tmp_path, capsys):
    """An empty chunk .nc, a truncated one and a truncated params .npz: each is named on stderr with
    the reason, moved aside as *.discarded, its members retrained; the results equal the uninterrupted run."""
    cfg, run, ds, params = chunked
    out = _copy(run, tmp_path)
    empty, cut, weights_cut = _chunk_of(out, 0), _chunk_of(out, 4), _chunk_of(out, 6)
    cut_weights = _weights(weights_cut, "params")
    empty.write_bytes(b"")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    cut_weights.write_bytes(cut_weights.read_bytes()[:100])
    capsys.readouterr()
    resumed = experiment.run(cfg, out, resume=True, progress=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if "discarded" in line]
    assert len(lines) == 3, lines
    for path in (empty, cut, weights_cut):
        (line,) = [line for line in lines if f"discarded {path} (" in line]
        assert "unreadable" in line, line
    assert f"{cut_weights} is unreadable" in " ".join(lines)
    for path in (empty, cut, cut_weights):
        assert (path.parent / f"{path.name}.discarded").exists()
    _assert_chunks_named_by_members(out, 8)
    _assert_same_run(resumed, ds, out, params, cfg)


def test_misnamed_overlapping_and_orphan_chunks_are_discarded(chunked, tmp_path, capsys):
    """A chunk whose name disagrees with its stored ids, a second chunk repeating members, and
    weights with no chunk beside them are moved aside with their reasons; the run completes."""
    cfg, run, ds, params = chunked
    out = _copy(run, tmp_path)
    chunks = out / "chunks"
    first, middle, last = _chunk_of(out, 0), _chunk_of(out, 2), _chunk_of(out, 6)
    misnamed = _chunk_of(out, 4)  # replaced by members 2, 3 under the name of 4..5
    for path in (misnamed, _weights(misnamed, "params")):
        path.unlink()
    shutil.copy(middle, misnamed)
    shutil.copy(_weights(middle, "params"), _weights(misnamed, "params"))
    shutil.copy(first, chunks / "chunk_00000.nc")  # an old-style name repeating members 0, 1
    shutil.copy(_weights(first, "params"), chunks / "chunk_00000.params.npz")
    shutil.copy(_weights(last, "params"), chunks / "chunk_m000009-000010.params.npz")
    capsys.readouterr()
    resumed = experiment.run(cfg, out, resume=True, progress=False)
    err = capsys.readouterr().err
    assert f"discarded {misnamed} (its name says members 4..5 but it holds [2, 3])" in err, err
    assert f"discarded {first} (members [0, 1] are also in chunk_00000.nc, which is kept)" in err, (
        err
    )
    assert (
        f"discarded {chunks / 'chunk_m000009-000010.params.npz'} (no chunk .nc beside it" in err
    ), err
    assert (chunks / "chunk_00000.nc").exists()  # old-style names are read by their stored ids
    _assert_same_run(resumed, ds, out, params, cfg)


def test_old_style_chunk_names_still_load_and_resume(chunked, tmp_path, capsys):
    """Count-named chunks (chunk_00000.nc ...) load by their stored ids; after deleting chunk_00001
    (members 2, 3) a resume writes chunk_m000002-000003.nc and leaves chunk_00003 (members 6, 7) alone."""
    cfg, run, ds, params = chunked
    out = _copy(run, tmp_path)
    chunks = out / "chunks"
    for k, path in enumerate(_chunk_files(out)):
        _weights(path, "params").rename(chunks / f"chunk_{k:05d}.params.npz")
        path.rename(chunks / f"chunk_{k:05d}.nc")
    members, loaded = load_params(out, _like(cfg))
    np.testing.assert_array_equal(members, np.arange(8))
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    for name in ("chunk_00001.nc", "chunk_00001.params.npz"):
        (chunks / name).unlink()
    capsys.readouterr()
    resumed = experiment.run(cfg, out, resume=True, progress=False)
    assert "discarded" not in capsys.readouterr().err
    np.testing.assert_array_equal(results.load(chunks / "chunk_00003.nc")["member"].values, [6, 7])
    assert (chunks / "chunk_m000002-000003.nc").exists()
    _assert_same_run(resumed, ds, out, params, cfg)


def test_load_params_refuses_damaged_repeated_or_missing_weights(chunked, tmp_path):
    cfg, run, _, _ = chunked
    like = _like(cfg)
    out = _copy(run, tmp_path)
    weights = _weights(_chunk_of(out, 2), "params")
    good = weights.read_bytes()
    weights.write_bytes(good[:200])
    with pytest.raises(ValueError, match=rf"{re.escape(str(weights))} is unreadable"):
        load_params(out, like)
    weights.unlink()
    with pytest.raises(ValueError, match=rf"{re.escape(str(weights))} does not exist"):
        load_params(out, like)
    arrays = dict(np.load(_weights(_chunk_of(out, 4), "params")))
    np.savez(weights, **arrays)  # another chunk's weights: not the file its chunk recorded
    with pytest.raises(ValueError, match=r"is not the weights file its chunk chunk_m000002-000003"):
        load_params(out, like)
    arrays.pop("experiment")  # as written before identities: members 4, 5 twice, 2, 3 nowhere
    np.savez(weights, **arrays)
    with pytest.raises(
        ValueError,
        match=r"member 4 is in chunk_m000002-000003\.params\.npz and chunk_m000004-000005\.params\.npz",
    ):
        load_params(out, like)
    np.savez(
        weights, **{k: v[:1] for k, v in dict(np.load(weights)).items()} | {"member": np.array([8])}
    )
    with pytest.raises(
        ValueError,
        match=r"lack members \[2, 3\]; hold members \[8\] outside the grid; allowed: exactly",
    ):
        load_params(out, like)
    weights.unlink()
    (weights.parent / weights.name.replace(".params.npz", ".nc")).unlink()
    with pytest.raises(
        ValueError,
        match=r"npz files of .* lack members \[2, 3\]; allowed: exactly the members 0..7$",
    ):
        load_params(out, like)


@pytest.mark.slow
def test_prefix_runs_check_their_prior_weights_on_resume(tmp_path, capsys):
    """With train.prefix_steps > 0 each chunk also needs its .prior.npz: a complete run resumes
    without discarding anything, a chunk whose prior weights are gone is retrained."""
    cfg = configs.from_dict(tiny_raw(train={"prefix_steps": 20}, run={"chunk_size": 4}))
    out = tmp_path / "run"
    ds = experiment.run(cfg, out, progress=False)
    _, prior = load_params(out, _like(cfg), kind="prior")
    (out / "results.nc").unlink()
    capsys.readouterr()
    experiment.run(cfg, out, resume=True, progress=False)
    assert "discarded" not in capsys.readouterr().err
    gone = _weights(_chunk_of(out, 4), "prior")
    gone.unlink()
    (out / "results.nc").unlink()
    resumed = experiment.run(cfg, out, resume=True, progress=False)
    assert f"{gone} does not exist" in capsys.readouterr().err
    xr.testing.assert_identical(resumed.drop_attrs(), ds.drop_attrs())
    members, again = load_params(out, _like(cfg), kind="prior")
    np.testing.assert_array_equal(members, np.arange(8))
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(prior), strict=True):
        np.testing.assert_array_equal(a, b)


# ---- item 2: diverged members ------------------------------------------------------------------
def test_diverged_members_have_nan_risks_and_are_flagged(diverged_run):
    _, out, ds = diverged_run
    assert np.all(ds["nonfinite_steps"].values > 0)
    on_disk = results.load(out / "results.nc")
    for got in (ds, on_disk):
        assert got["diverged"].dtype == bool and got["diverged"].dims == (
            "difficulty",
            "budget",
            "seed",
        )
        assert bool(got["diverged"].all())
        for name in (
            "train_risk",
            "test_risk",
            "target_risk",
            "generalization_gap",
            "extrapolation_gap",
        ):
            assert np.all(np.isnan(got[name].values)), name
        assert np.all(np.isfinite(got["level_exact"].values))  # the raw measurement is kept


def test_healthy_run_has_no_diverged_member(chunked):
    _, _, ds, _ = chunked
    assert not bool(ds["diverged"].any())
    assert np.all(np.isfinite(ds["target_risk"].values))


def _mixed(chunked, diverged_run, bad: list[int]) -> xr.Dataset:
    """Results of the healthy grid with members ``bad`` taken from the diverged run (assembled as a run would)."""
    cfg, out, _, _ = chunked
    _, bad_out, _ = diverged_run
    healthy = xr.concat([results.load(p) for p in _chunk_files(out)], "member")
    broken = xr.concat([results.load(p) for p in _chunk_files(bad_out)], "member")
    keep = [m for m in range(8) if m not in bad]
    return assembly.assemble(
        cfg, [healthy.sel(member=keep), broken.sel(member=bad)], {"chunk_size": 2}
    )


def test_run_summary_skips_and_names_diverged_members(chunked, diverged_run, monkeypatch, capsys):
    """The summary's d*(n) is a NaN-aware seed mean: a cell whose seeds all diverged is never
    chosen, a budget with nothing finite prints None; the diverged members are named."""
    cfg, _, ds, _ = chunked
    risk = ds["target_risk"].mean("seed")
    best = risk.idxmin("difficulty").values  # the healthy d*(n) per budget
    # diverge both seeds of the best cell at budget 32, and every member at budget 1
    d_best = int(np.flatnonzero(ds["difficulty"].values == best[1])[0])
    shape = cfg.grid_shape
    bad = sorted(
        {int(np.ravel_multi_index((d_best, 1, s), shape)) for s in range(2)}
        | {int(np.ravel_multi_index((d, 0, s), shape)) for d in range(2) for s in range(2)}
    )
    mixed = _mixed(chunked, diverged_run, bad)
    other = int(ds["difficulty"].values[1 - d_best])
    monkeypatch.setattr(experiment, "run", lambda *a, **k: mixed)
    cfg_path, _, _ = diverged_run
    grids._run(cfg_path, Path("unused"), resume=True)
    out = capsys.readouterr().out
    assert f"d*(n) = {{1: None, 32: {other}}}" in out, out
    assert (
        "6 diverged member(s)" in out and f"({int(best[1])}, 32, 0), ({int(best[1])}, 32, 1)" in out
    ), out


def test_cli_run_summary_of_an_all_diverged_run(diverged_run, capsys):
    cfg_path, out, _ = diverged_run
    grids._run(cfg_path, out, resume=True)  # every member is on disk: assembles only
    text = capsys.readouterr().out
    assert "d*(n) = {1: None, 32: None}" in text, text
    assert "8 diverged member(s)" in text and "(1, 1, 0), (1, 1, 1), (1, 32, 0)" in text, text


def test_describe_diverged_abbreviates_long_lists():
    bad = np.zeros((3, 2, 2), bool)
    bad.ravel()[:11] = True
    ds = xr.Dataset(
        {"diverged": (("difficulty", "budget", "seed"), bad)},
        coords={"difficulty": [1, 2, 3], "budget": [1, 32], "seed": [0, 1]},
    )
    text = divergence.describe_diverged(ds)
    assert text.startswith("11 diverged member(s)") and text.endswith(
        "(3, 1, 1), ... and 1 more"
    ), text
    assert divergence.describe_diverged(ds.assign(diverged=ds["diverged"] & False)) == ""


def test_recommend_excludes_diverged_members(chunked, diverged_run, capsys):
    """recommend skips diverged members (a cell with no finite seed is never chosen) and says how
    many it excluded; `difftrade recommend` and `difftrade select --results` print it."""
    _, _, ds, _ = chunked
    mixed = _mixed(chunked, diverged_run, [6, 7])  # both seeds of (difficulty 2, budget 32)
    rec = recommend(mixed, 32, n_boot=50, models=())
    assert rec.difficulty == 1 and rec.diverged == 2 and rec.to_dict()["diverged_excluded"] == 2
    assert "excluded 2 diverged member(s)" in str(rec)
    # a results file whose risks were stored as numbers for diverged members is corrected by nonfinite_steps
    stale = mixed.drop_vars("diverged").assign(target_risk=mixed["target_risk"].fillna(0.0))
    assert recommend(stale, 32, n_boot=50, models=()).difficulty == 1
    assert recommend(ds, 32, n_boot=0, models=()).diverged == 0


def test_recommend_and_select_refuse_an_all_diverged_run(diverged_run, tmp_path, capsys):
    _, out, ds = diverged_run
    with pytest.raises(
        ValueError,
        match=r"^no member has a finite target_risk: 8 of 8 diverged \(NaN/inf training steps",
    ):
        recommend(ds, 32)
    assert cli.main(["recommend", str(out), "--budget", "32", "--n-boot", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("difftrade: error: no member has a finite target_risk: 8 of 8 diverged")
        and "\n" not in err
    )
    scores = tmp_path / "scores.npy"
    np.save(scores, np.linspace(0.0, 1.0, 100))
    assert cli.main(["select", str(scores), "--budget", "10", "--results", str(out)]) == 2
    assert "8 of 8 diverged" in capsys.readouterr().err


SWAPPED = {  # a file of the run directory -> the same file of the other run
    "config.json": lambda run: run / "config.json",
    "results.nc": lambda run: run / "results.nc",
    "chunk .nc": lambda run: run / "chunks" / "chunk_m000002-000003.nc",
    "chunk .params.npz": lambda run: run / "chunks" / "chunk_m000002-000003.params.npz",
}


@pytest.mark.parametrize("kind", list(SWAPPED))
def test_a_file_of_another_experiment_is_refused_by_every_reader(
    kind, chunked, diverged_run, tmp_path, capsys
):
    """Each kind of file of a run directory, replaced by the same file of a run of another config
    (learning rate 1e3): every command that reads it exits 2 with one line naming the file, or
    (a resume given a foreign results.nc) rewrites it from the run's own chunks."""
    cfg, run, _, _ = chunked
    _, other, _ = diverged_run
    out = tmp_path / "run"
    shutil.copytree(run, out)
    shutil.copyfile(SWAPPED[kind](other), SWAPPED[kind](out))
    toml = tmp_path / "run.toml"
    toml.write_text(toml_text(tiny_raw(run={"chunk_size": 2})))
    mine, theirs = cfg.hash(), results.load(other / "results.nc").attrs["config_hash"]
    readers = {
        "run --resume": ["run", str(toml), "--out", str(out), "--resume"],
        "bound": ["bound", str(out)],
        "report": ["report", str(out), "--out", str(tmp_path / "report")],
        "recommend": ["recommend", str(out), "--budget", "32", "--n-boot", "0"],
        "merge": ["merge", str(out), str(other), "--out", str(tmp_path / "merged.nc")],
    }
    if kind.startswith("chunk"):  # report, recommend and merge read results.nc alone
        readers = {k: readers[k] for k in ("run --resume", "bound")}
    for name, argv in readers.items():
        if kind == "results.nc" and name == "run --resume":
            assert cli.main(argv) == 0  # results.nc is rebuilt from the run's own chunks
            assert results.load(out / "results.nc").attrs["config_hash"] == mine
            shutil.copyfile(SWAPPED[kind](other), SWAPPED[kind](out))
            capsys.readouterr()
            continue
        assert cli.main(argv) == 2, (kind, name)
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith("difftrade: error: "), (kind, name, err)
        assert mine in err and theirs in err, (kind, name, err)
    assert not (tmp_path / "report").exists() and not (tmp_path / "merged.nc").exists()
    assert not (out / "bounds.nc").exists()


def test_an_edited_config_json_is_refused_and_its_chunks_are_kept(chunked, tmp_path, capsys):
    """The reproduction: config.json's learning rate edited (its hash too, or not), one chunk
    deleted, resumed with the edited TOML. Refused in one line; no chunk is moved or retrained."""
    import json

    cfg, run, _, _ = chunked
    out = tmp_path / "run"
    shutil.copytree(run, out)
    _chunk_of(out, 4).unlink()
    kept = sorted(p.name for p in (out / "chunks").iterdir())
    raw = tiny_raw(run={"chunk_size": 2}, grid={"learning_rate": 1e-3})
    toml = tmp_path / "edited.toml"
    toml.write_text(toml_text(raw))
    edited = configs.from_dict(raw)
    meta = json.loads((out / "config.json").read_text())
    meta["config"] = edited.to_dict()
    for stored_hash in (meta["config_hash"], edited.hash()):  # the hash string edited too, or not
        meta["config_hash"] = stored_hash
        (out / "config.json").write_text(json.dumps(meta))
        for argv in (["run", str(toml), "--out", str(out), "--resume"], ["bound", str(out)]):
            assert cli.main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert f"belongs to experiment {cfg.hash()}, not to this run's {edited.hash()}" in err
            assert "\n" not in err
    assert sorted(p.name for p in (out / "chunks").iterdir()) == kept


def test_score_and_merge_refuse_to_write_into_a_training_run(chunked, tmp_path, capsys):
    """`score --out RUN` and `merge --out RUN/results.nc` would replace the run's results.nc:
    refused in one line before anything is read or written."""
    _, run, _, _ = chunked
    before = (run / "results.nc").read_bytes()
    preds = tmp_path / "p.jsonl"
    preds.write_text("")
    for argv in (
        ["score", "addition", str(preds), "--out", str(run)],
        ["merge", str(run), str(run), "--out", str(run / "results.nc")],
        ["merge", str(run), str(run), "--out", str(run / "chunks" / "merged.nc")],
    ):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "is inside the training run" in err, err
    assert (run / "results.nc").read_bytes() == before
    assert not (run / "chunks" / "merged.nc").exists()


@pytest.mark.parametrize("flag", ["--seeds", "--budgets"])
def test_bound_with_an_empty_list_is_one_line(flag, chunked, capsys):
    _, run, _, _ = chunked
    assert cli.main(["bound", str(run), flag, ""]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"difftrade: error: {flag}=''; allowed: comma-separated integers, e.g. 0,1"


def test_a_finite_loss_explosion_counts_as_diverged():
    """Loss 3 -> 7e4 (learning rate 30) is flagged; the committed study's healthy curves are not."""
    limit = assembly.EXPLOSION_FACTOR * np.log(len(VOCAB))
    curves = np.array([[3.0, 2.0, 1.0], [3.0, 7e4, 6e4], [np.nan] * 3, [3.0, limit + 1e-3, 1.0]])
    np.testing.assert_array_equal(assembly.exploded(curves), [False, True, False, True])
    for path in sorted((Path(__file__).resolve().parents[1] / "docs/runs/study").glob("*.nc")):
        ds = results.load(path)
        assert not assembly.exploded(ds["loss_curve"].values).any(), path.name


def test_a_budget_beyond_a_levels_examples_is_named_before_training(tiny_cfg):
    """Addition level 1 has 100 distinct examples: a budget of 128 exhausts it (and only it)."""
    cfg = dataclasses.replace(tiny_cfg, grid=dataclasses.replace(tiny_cfg.grid, budgets=(8, 128)))
    (line,) = experiment.exhausted_levels(cfg)
    assert line.startswith("difftrade: level 1 of 'addition' has 100 distinct examples, fewer than")
    assert experiment.exhausted_levels(tiny_cfg) == []
