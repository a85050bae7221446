"""One configuration path: a validated RunConfig, serialised once (``to_json`` / ``config.json``),
hashed over every field that changes results, read back by one function; settings stored in
result files read back the same way."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
from conftest import tiny_raw

from difftrade.certify.compress import CompressSettings
from difftrade.certify.settings import ABSENT_MEANS, BoundSettings, stored_settings
from difftrade.config import run_config as config
from difftrade.config import sections as config_sections
from difftrade.config import settings_json
from difftrade.config.model_config import MODEL_FIELDS, NOT_IDENTITY
from difftrade.config.sections import EVAL_FIELDS, SUBSPACE_FIELDS
from difftrade.config.train_config import TRAIN_FIELDS
from difftrade.runner import experiment, rundir
from difftrade.tasks import configs
from difftrade.theory.posterior import FitConfig

SPECS = {
    "grid": config_sections.GRID_FIELDS,
    "run": config_sections.RUN_FIELDS,
    "difficulty": config_sections.DIFFICULTY_FIELDS,
    "model": MODEL_FIELDS,
    "train": TRAIN_FIELDS,
    "eval": EVAL_FIELDS,
    "subspace": SUBSPACE_FIELDS,
}
# Fields that may change without changing results: how members are batched, and the same function
# computed another way.
RESULT_NEUTRAL = {("run", "chunk_size"), *(("model", name) for name in NOT_IDENTITY)}
# Fields whose value cannot change alone (the rest of the section depends on it); each has its own test below.
CHANGED_WITH_OTHERS = {("task", "name"), ("difficulty", "kind"), ("grid", "mixture_main")}

# A config with every optional part on (prefix phase, model-based levels, subspace), and one with epochs.
RICH = tiny_raw(
    train={"prefix_steps": 20, "prefix_fraction": 0.5},
    difficulty={"kind": "model", "reference": "runs/base", "num_levels": 2, "per_level": 64},
    subspace={"dim": 64, "terms": 2},
)
EPOCHS = tiny_raw(
    task={"name": "addition", "d_min": 1, "d_max": 3},
    grid={"difficulties": [2, 3]},
    train={"epochs": 2.0},
)


def _candidates(section: str, name: str, value: object) -> list[object]:
    """Values to try instead of ``value`` (the first one ``from_dict`` accepts is used)."""
    spec = SPECS.get(section, {}).get(name)
    if spec is not None and spec.choices:
        return [c for c in spec.choices if c != value]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, 2 * value, value - 1, value + 10, 2 * value + 2]
    if isinstance(value, float):
        return [value * 1.5 if value else 0.5, value / 2, min(0.9, value + 0.1)]
    if isinstance(value, str):
        return {"levels_kind": ["exact"]}.get(name, ["runs/other"])
    if isinstance(value, list):
        return [[*value, max(value, default=0) + 1], value[:-1], [0.25, 0.75], [0.25, 0.25, 0.5]]
    raise AssertionError(f"no candidates for {section}.{name}={value!r}")


def _perturbed(raw: dict, section: str, name: str) -> config.RunConfig | None:
    """``raw`` with one field changed to a value the config accepts (None when none is accepted)."""
    value = configs.from_dict(raw).to_dict()[section][name]
    for candidate in _candidates(section, name, value):
        if candidate == value:
            continue
        changed = copy.deepcopy(raw)
        changed.setdefault(section, {})[name] = candidate
        try:
            return configs.from_dict(changed)
        except ValueError:
            continue
    return None


@pytest.mark.parametrize("raw", [RICH, EPOCHS], ids=["rich", "epochs"])
def test_the_hash_changes_with_every_field_that_changes_results(raw):
    base = configs.from_dict(raw)
    unchanged, unperturbed = set(), set()
    for section, values in base.to_dict().items():
        for name in values:
            if (section, name) in CHANGED_WITH_OTHERS:
                continue
            other = _perturbed(raw, section, name)
            if other is None:
                unperturbed.add((section, name))
            elif other.hash() == base.hash():
                unchanged.add((section, name))
    assert not unperturbed, f"no accepted value found for {sorted(unperturbed)}"
    assert unchanged == {f for f in RESULT_NEUTRAL if f[0] in base.to_dict()}


def test_the_fields_changed_with_others_change_the_hash():
    chain = tiny_raw(task={"name": "chain", "d_min": 1, "d_max": 2})
    nominal = {k: v for k, v in RICH.items() if k != "difficulty"}
    assert configs.from_dict(chain).hash() != configs.from_dict(tiny_raw()).hash()
    assert configs.from_dict(nominal).hash() != configs.from_dict(RICH).hash()
    mixtures = [
        tiny_raw(grid={"train_distribution": "mixture", "mixture_main": m}) for m in (0.8, 0.6)
    ]
    assert configs.from_dict(mixtures[0]).hash() != configs.from_dict(mixtures[1]).hash()


def test_stating_a_default_is_the_same_config():
    """Task options are resolved: a config that states a default equals one that omits it, and
    the stored form names every option, so a later change of a default cannot keep the hash."""
    implicit = configs.from_dict(tiny_raw(task={"name": "addition", "d_min": 1, "d_max": 2}))
    explicit = configs.from_dict(
        tiny_raw(
            task={
                "name": "addition",
                "d_min": 1,
                "d_max": 2,
                "levels_kind": "nested",
                "scratchpad": False,
            }
        )
    )
    assert implicit == explicit and implicit.hash() == explicit.hash()
    assert set(implicit.to_dict()["task"]) == {
        "name",
        "d_min",
        "d_max",
        "levels_kind",
        "scratchpad",
    }


@pytest.mark.parametrize("raw", [RICH, EPOCHS, tiny_raw()], ids=["rich", "epochs", "tiny"])
def test_the_stored_form_reads_back_to_the_same_config(raw, tmp_path):
    cfg = configs.from_dict(raw)
    assert configs.from_json(cfg.to_json(), "x") == cfg
    rundir.write_meta(tmp_path, cfg)
    assert rundir.read_config(tmp_path) == cfg
    assert rundir.read_meta(tmp_path)["config_hash"] == cfg.hash()


def test_a_stored_config_that_fails_validation_is_named(tmp_path):
    cfg = configs.from_dict(tiny_raw())
    rundir.write_meta(tmp_path, cfg)
    meta = json.loads((tmp_path / rundir.META).read_text())
    meta["config"]["grid"]["budgets"] = [0]
    (tmp_path / rundir.META).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"config\.json: grid\.budgets=\[0\]"):
        rundir.read_config(tmp_path)
    with pytest.raises(ValueError, match="results.nc: its config is not JSON"):
        configs.from_json("{", "results.nc")


def test_resume_compares_configs_not_stored_hash_strings(tmp_path):
    """A run directory whose config.json names options by default (another canonical form, another
    stored hash string) resumes with the same config, and refuses a different one."""
    cfg = configs.from_dict(tiny_raw())
    out = tmp_path / "run"
    (out / "chunks").mkdir(parents=True)
    (out / rundir.META).write_text(
        json.dumps({"config_hash": "0123456789abcdef", "config": tiny_raw()})
    )
    assert experiment.prepare_dir(cfg, out, resume=True) == []
    other = configs.from_dict(tiny_raw(grid={"learning_rate": 1e-3}))
    with pytest.raises(ValueError, match=f"cannot resume .*its config hash is {cfg.hash()}"):
        experiment.prepare_dir(other, out, resume=True)


SETTINGS = [
    BoundSettings(),
    BoundSettings(
        n_bound=64,
        sigmas=(1e-3,),
        prior_sigmas=None,
        seeds=(0,),
        budgets=(32,),
        bound_set="train",
        posterior="fitted",
        prior="grid",
        fit=FitConfig(steps=7, batch_size=4),
        fitted_prior_grid=(1e-3, 1.0, 10),
        importance_weighted=True,
        iw_selection="shared",
        monte_carlo="whole_set",
    ),
    CompressSettings(levels=4, qat_steps=0, delta=0.01, member_chunk=3),
]


@pytest.mark.parametrize(
    "settings", SETTINGS, ids=["bound-defaults", "bound-everything", "compress"]
)
def test_settings_read_back_equal(settings):
    assert (
        settings_json.from_json(type(settings), settings_json.to_json(settings), "f.nc") == settings
    )


def test_settings_absent_from_a_file_read_as_that_file_meant():
    """A stored field that is absent takes what files without it meant (ABSENT_MEANS), else its default."""
    import xarray as xr

    stored = {
        k: v
        for k, v in json.loads(settings_json.to_json(BoundSettings(n_bound=99))).items()
        if k not in ("monte_carlo", "delta_lower")
    }
    got = stored_settings(xr.Dataset(attrs={"settings": json.dumps(stored)}))
    assert got.monte_carlo == ABSENT_MEANS["monte_carlo"] != BoundSettings().monte_carlo
    assert got.delta_lower == BoundSettings().delta_lower and got.n_bound == 99


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"n_bound": 1, "shape": 2}',
            r"f\.nc: its settings are not BoundSettings \(unknown fields \['shape'\]",
        ),
        ('{"n_bound": 0}', r"f\.nc: its settings are not BoundSettings \(n_bound=0"),
        ("[1]", r"f\.nc: its settings are list"),
        ("{", r"f\.nc: its settings are not JSON"),
    ],
)
def test_bad_stored_settings_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        settings_json.from_json(BoundSettings, text, "f.nc")


def test_a_field_added_to_settings_is_stored():
    """Every field of the settings dataclasses reaches the stored JSON (none is dropped on the way)."""
    for settings in SETTINGS:
        assert set(json.loads(settings_json.to_json(settings))) == {
            f.name for f in dataclasses.fields(settings)
        }
