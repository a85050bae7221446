"""The installable package: packaged configs, help text, a jax-free ``--help``, metadata files."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from difftrade.cli import main as cli
from difftrade.config import files
from difftrade.tasks import configs

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_packaged_quick_config_is_the_experiments_copy():
    """experiments/quick.toml (README, docs) and the shipped difftrade/config/presets/quick.toml must not diverge."""
    assert (ROOT / "difftrade" / "config" / "presets" / "quick.toml").read_bytes() == (
        ROOT / "experiments" / "quick.toml"
    ).read_bytes()
    assert set(files.packaged_configs()) == {"quick"}
    for path in files.packaged_configs().values():
        configs.load(path)  # every shipped config is valid


def test_config_argument_is_a_file_or_a_packaged_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = files.CONFIG_DIR / "quick.toml"
    assert cli.config_path("quick") == shipped and cli.config_path("quick.toml") == shipped
    assert cli.build_parser().parse_args(["run", "quick"]).config == shipped
    assert cli.build_parser().parse_args(["demo"]).config == shipped  # works outside the repository
    (tmp_path / "quick.toml").write_text("")
    assert cli.config_path("quick.toml") == Path("quick.toml")  # an existing file wins
    assert cli.config_path("sub/quick.toml") == Path("sub/quick.toml")  # a path is never a name
    assert cli.config_path("nope") == Path("nope")


def test_unknown_config_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert (
        cli.main(["pretrain", "nope"]) == 2
    )  # (not run: it would set this process's CPU device count)
    assert "config file 'nope' does not exist" in capsys.readouterr().err


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_argument_of_every_command_has_help():
    commands = subcommands()
    assert {
        "tasks",
        "run",
        "pretrain",
        "report",
        "transfer",
        "demo",
        "bound",
        "difficulty",
        "recommend",
        "select",
    } <= set(commands)
    missing = [
        f"{name} {action.dest}"
        for name, p in commands.items()
        for action in p._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert missing == []
    for name, p in commands.items():
        assert any("--import" in a.option_strings for a in p._actions), name
    run_help = commands["run"].format_help()
    assert "runs/CONFIG_STEM" in run_help and "quick" in run_help


HELP_WITHOUT_JAX = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("cli_alone", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
for argv in (["--help"], ["run", "--help"], ["demo", "--help"], ["bound", "--help"]):
    try:
        module.main(argv)
    except SystemExit as stop:
        assert stop.code == 0, argv
print("jax imported:", "jax" in sys.modules)
"""


def test_cli_help_does_not_import_jax():
    """cli/main.py and its command modules (``difftrade.cli.common``) import jax and the library only inside
    the commands: ``--help`` builds every parser without them (cli/main.py loaded here from its file)."""
    code = HELP_WITHOUT_JAX.format(path=str(ROOT / "difftrade" / "cli" / "main.py"))
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "jax imported: False" in done.stdout and "usage: difftrade run" in done.stdout


def test_difftrade_help_does_not_import_jax():
    code = (
        "import sys\nfrom difftrade.cli.main import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit:\n"
        "    pass\nprint('jax imported:', 'jax' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "jax imported: False" in done.stdout


def test_package_metadata():
    project = PYPROJECT["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "License :: OSI Approved :: Apache Software License" in project["classifiers"]
    assert (ROOT / "difftrade" / "py.typed").exists()
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]["difftrade"]
    assert "py.typed" in package_data and "config/presets/*.toml" in package_data
    extras = project["optional-dependencies"]
    assert "difftrade[test]" in extras["dev"]  # one test extra; dev adds the tools
    assert any(
        dep.startswith("orbax-checkpoint") for dep in project["dependencies"]
    )  # difftrade.model.checkpoint imports it


def test_tested_floors_are_the_declared_floors():
    """experiments/floors.txt (what experiments/test_floors.sh installs and tests) pins every
    dependency at the ``>=`` floor pyproject.toml declares, and nothing else (jaxlib follows jax)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    pins = {}
    for line in (ROOT / "experiments" / "floors.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(req.name)] = Version(spec.version)
    floors = {}
    for dep in PYPROJECT["project"]["dependencies"]:
        req = Requirement(dep)
        lower = [s.version for s in req.specifier if s.operator == ">="]
        assert len(lower) == 1, f"{dep}: one '>=' floor expected"
        floors[canonicalize_name(req.name)] = Version(lower[0])
    assert pins.pop("jaxlib") == pins["jax"]
    assert pins == floors


@pytest.mark.slow  # imports and documents every module
def test_api_reference_builds_with_pdoc(tmp_path):
    """experiments/build_api_docs.py renders a page per module of the package (pdoc imports each
    one; --strict fails on a module that does not import), docstrings included."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments" / "build_api_docs.py"),
            str(tmp_path),
            "--strict",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    page = lambda module: tmp_path / (module.replace(".", "/") + ".html")
    for module in (
        "difftrade",
        "difftrade.runner.experiment",
        "difftrade.theory.member_certificate",
        "difftrade.tasks",
        "difftrade.cli.main",
    ):
        assert page(module).is_file(), module
    files = sorted(p.relative_to(ROOT / "difftrade") for p in (ROOT / "difftrade").rglob("*.py"))
    public = [
        f
        for f in files
        if not any(part.startswith("_") and part != "__init__.py" for part in f.parts)
    ]
    missing = [
        str(f)
        for f in public
        if not page(
            ".".join(("difftrade",) + f.with_suffix("").parts).removesuffix(".__init__")
        ).is_file()
    ]
    assert missing == [], missing  # every public module has its page
    assert (tmp_path / "index.html").is_file() and (tmp_path / "search.js").is_file()
    assert "Task families with a tunable difficulty." in page("difftrade.tasks").read_text()
    assert (
        "Every finished chunk is on disk before the next one starts"
        in page("difftrade.runner.experiment").read_text()
    )
    assert (
        "PAC-Bayes certificate: the generic, vmappable recipe"
        in page("difftrade.theory.member_certificate").read_text()
    )
