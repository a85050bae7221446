"""Task plugins: ``--import MODULE`` and the ``difftrade.tasks`` entry-point group.

The worked example of docs/tasks.md ("Your own task family") is read from the docs, written to a
temporary directory and trained, reported and certified through the CLI, so the docs cannot
drift from what works.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import tiny_raw, toml_text

from difftrade.cli.main import main
from difftrade.results import schema as results
from difftrade.tasks import REGISTRY, configs, make_task, registry, split_prompt_answer, task_names

DOCS = Path(__file__).resolve().parents[1] / "docs" / "tasks.md"
PLUGIN_MODULES = ("reverse_task", "plugin_kinds")


def doc_block(language: str) -> str:
    """The first ``language`` code block of the docs' "Your own task family" section."""
    section = DOCS.read_text().split("## Your own task family", 1)[1]
    return re.search(rf"```{language}\n(.*?)```", section, re.DOTALL).group(1)


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    """Each test starts from the built-in families and leaves them so: plugin tasks, loaded entry
    points, plugin modules and sys.path changes are undone."""
    before, loaded = dict(REGISTRY), set(registry._LOADED_ENTRY_POINTS)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    REGISTRY.clear()
    REGISTRY.update(before)
    registry._LOADED_ENTRY_POINTS.clear()
    registry._LOADED_ENTRY_POINTS.update(loaded)
    registry._BROKEN_ENTRY_POINTS.clear()
    for name in PLUGIN_MODULES:
        sys.modules.pop(name, None)


@pytest.fixture
def plugin_dir(tmp_path) -> Path:
    """A directory holding the docs' reverse_task.py (not on sys.path yet)."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "reverse_task.py").write_text(doc_block("python"))
    return folder


def test_docs_example_is_about_40_lines_and_solves_its_examples(plugin_dir, monkeypatch):
    assert len(doc_block("python").splitlines()) <= 45
    monkeypatch.syspath_prepend(str(plugin_dir))
    import reverse_task  # noqa: F401 - registers "reverse"

    task = make_task("reverse")
    for d in task.levels:
        tokens, mask = jax.jit(task.sample)(jax.random.key(d), d)
        prompt, answer = split_prompt_answer(np.asarray(tokens), np.asarray(mask))
        assert len(prompt) == d and answer == prompt[::-1] == task.solve(prompt)
    monkeypatch.chdir(plugin_dir)
    (plugin_dir / "rev.toml").write_text(doc_block("toml"))
    assert configs.load("rev.toml").population().size == 24  # the docs' config is valid as written


@pytest.mark.slow  # trains, reports and certifies through the CLI (~35 s)
def test_run_report_bound_from_the_command_line(plugin_dir, tmp_path, monkeypatch, capsys):
    """The docs' workflow end to end: unknown without --import, then run, report and bound."""
    monkeypatch.chdir(plugin_dir)  # --import finds modules in the working directory
    raw = tiny_raw(
        task={"name": "reverse", "d_min": 1, "d_max": 2},
        train={"steps": 20},
        grid={"seeds": [0], "train_distribution": "up_to"},
    )
    cfg = plugin_dir / "rev.toml"
    cfg.write_text(toml_text(raw))
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out)]) == 2
    assert "task='reverse' is unknown" in capsys.readouterr().err
    assert main(["tasks", "show", "reverse", "-d", "2", "-n", "2", "--import", "reverse_task"]) == 0
    assert main(["tasks", "check", "reverse", "-n", "50", "--import", "reverse_task"]) == 0
    assert "<bos> " in capsys.readouterr().out  # the family's defaults (d_max=6), not the config's
    assert main(["run", str(cfg), "--out", str(out), "--import", "reverse_task"]) == 0
    assert "done: 4 members" in capsys.readouterr().out
    REGISTRY.pop("reverse")  # a new session: the run's recorded module is imported, no --import
    sys.modules.pop("reverse_task")
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").exists() and (out / "heatmap.png").exists()
    assert (
        main(
            [
                "bound",
                str(out),
                "--import",
                "reverse_task",
                "--n-bound",
                "32",
                "--budgets",
                "32",
                "--sigmas",
                "0.01",
                "--prior-sigmas",
                "0.05",
            ]
        )
        == 0
    )
    bounds = results.load(out / "bounds.nc")
    assert np.all(np.isfinite(bounds["in_dist_bound"].sel(budget=32).values))


def test_import_errors_name_the_module(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["tasks", "--import", "no_such_plugin_module"]) == 2
    err = capsys.readouterr().err
    assert (
        "cannot import module 'no_such_plugin_module' (ModuleNotFoundError" in err
        and err.count("\n") == 1
    )
    (tmp_path / "plugin_kinds.py").write_text("raise RuntimeError('broken at import')\n")
    assert main(["tasks", "--import", "plugin_kinds"]) == 2
    assert "'plugin_kinds' (RuntimeError: broken at import)" in capsys.readouterr().err
    assert main(["--import", "no_such_plugin_module", "tasks"]) == 2  # before the command too
    assert "cannot import module 'no_such_plugin_module'" in capsys.readouterr().err


PLUGIN_KINDS = textwrap.dedent("""
    import abc
    import dataclasses
    from typing import ClassVar

    from difftrade.tasks.sorting import Sorting


    @dataclasses.dataclass(frozen=True)
    class SortA(Sorting):
        name: ClassVar[str] = "sort_a"


    @dataclasses.dataclass(frozen=True)
    class SortB(Sorting):
        name: ClassVar[str] = "sort_b"


    @dataclasses.dataclass(frozen=True)
    class Clash(Sorting):
        name: ClassVar[str] = "addition"


    def factory():
        return [SortB]


    def broken():
        raise RuntimeError("boom")


    @dataclasses.dataclass(frozen=True)
    class Unfinished(Sorting):  # a plugin that forgot to define level_structure
        name: ClassVar[str] = "unfinished"

        @property
        @abc.abstractmethod
        def level_structure(self) -> str: ...
""")


def fake_entry_points(monkeypatch, tmp_path, *specs: str) -> None:
    """Installed packages' ``difftrade.tasks`` entry points, as ``"name = module:attr"``."""
    (tmp_path / "plugin_kinds.py").write_text(PLUGIN_KINDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [
        metadata.EntryPoint(*map(str.strip, spec.split("=")), registry.ENTRY_POINT_GROUP)
        for spec in specs
    ]
    monkeypatch.setattr(
        registry.metadata, "entry_points", lambda group: [e for e in eps if e.group == group]
    )


def test_entry_points_name_a_class_or_a_factory_and_load_on_first_need(
    monkeypatch, tmp_path, capsys
):
    fake_entry_points(monkeypatch, tmp_path, "a = plugin_kinds:SortA", "b = plugin_kinds:factory")
    assert "sort_b" not in REGISTRY
    assert make_task("sort_b", d_max=3).d_max == 3  # an unknown name loads the entry points
    assert {"sort_a", "sort_b", "addition"} <= set(task_names())
    assert main(["tasks"]) == 0
    assert "sort_a [d=1..8" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "bad = plugin_kinds:broken",
            (
                "entry point 'bad = plugin_kinds:broken' in group 'difftrade.tasks' failed "
                "to load (RuntimeError: boom)"
            ),
        ),
        ("gone = plugin_kinds:Missing", "entry point 'gone = plugin_kinds:Missing'"),
        (
            "unfinished = plugin_kinds:Unfinished",
            "plugin_kinds.Unfinished cannot be registered: it does not define ['level_structure']",
        ),
        (
            "clash = plugin_kinds:Clash",
            (
                "task name 'addition' is already registered by "
                "difftrade.tasks.addition.Addition, so plugin_kinds.Clash cannot take it"
            ),
        ),
    ],
)
def test_a_failing_entry_point_is_named_and_every_other_task_still_lists(
    monkeypatch, tmp_path, capsys, spec, message
):
    fake_entry_points(monkeypatch, tmp_path, spec, "a = plugin_kinds:SortA")
    assert main(["tasks"]) == 0
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1
    assert "sort_a [d=1..8" in captured.out and "addition" in captured.out
    assert REGISTRY["addition"].__module__ == "difftrade.tasks.addition"  # never replaced
    assert main(["tasks", "show", "no_such_task"]) == 2
    assert "1 plugin(s) failed to load, first: entry point" in capsys.readouterr().err


def test_an_installed_package_adds_its_task(plugin_dir, tmp_path):
    """A real install: a dist-info with entry_points.txt on PYTHONPATH, read by importlib.metadata
    in a fresh process; ``difftrade tasks`` lists the family and ``tasks show`` renders it."""
    dist = plugin_dir / "reverse_task-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: reverse-task\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[difftrade.tasks]\nreverse = reverse_task\n")
    code = "from difftrade.cli.main import main; import sys; sys.exit(main(['tasks']) or main(sys.argv[1:]))"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code, "tasks", "show", "reverse", "-d", "3", "-n", "1"],
        cwd=tmp_path,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "reverse [d=1..6, seq_len=15]: length of the digit string to reverse" in done.stdout
    prompt, answer = re.search(r"\[0\] <bos> (\d+)=\[(\d+) <eos> \]", done.stdout).groups()
    assert len(prompt) == 3 and answer == prompt[::-1]


def test_a_run_records_its_task_module_and_readers_import_it(plugin_dir, tmp_path, monkeypatch):
    """config.json (and results.nc) name the module of a family from outside difftrade; reading
    the stored config imports it when the family is not registered, and names it when it cannot."""
    import json

    import xarray as xr

    from difftrade.runner import rundir

    monkeypatch.syspath_prepend(str(plugin_dir))
    registry.import_modules(["reverse_task"])
    raw = tiny_raw(
        task={"name": "reverse", "d_min": 1, "d_max": 2}, grid={"train_distribution": "up_to"}
    )
    cfg = configs.from_dict(raw)
    assert configs.task_module(cfg) == "reverse_task"
    assert configs.task_module(configs.from_dict(tiny_raw())) is None  # built-in: nothing recorded
    rundir.write_meta(tmp_path, cfg)
    assert json.loads((tmp_path / "config.json").read_text())["task_module"] == "reverse_task"

    def forget() -> None:
        REGISTRY.pop("reverse")
        sys.modules.pop("reverse_task")

    forget()
    assert rundir.read_config(tmp_path).hash() == cfg.hash() and "reverse" in REGISTRY
    forget()
    ds = xr.Dataset(attrs={"config": cfg.to_json(), "task_module": "reverse_task"})
    assert configs.stored(ds, "results.nc").hash() == cfg.hash()
    forget()
    sys.path.remove(str(plugin_dir))
    with pytest.raises(ValueError, match="cannot import module 'reverse_task'"):
        rundir.read_config(tmp_path)
