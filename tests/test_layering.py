"""The package"s stages and the direction of its imports, read from the syntax trees.

Stages, lowest first; a module may import its own stage and any stage below it, never one above.
Every import counts, the ones inside functions and under ``TYPE_CHECKING`` too, so a fault cannot
hide in a function body. ``KNOWN_UPWARD`` lists the faults not yet removed: the test fails on any
upward import not listed, and on a listed one that no longer exists, so the list only shrinks.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import difftrade

STAGES = ("theory", "config", "tasks", "model", "train", "results", "runner", "analysis",
          "certify", "recommender", "bridge", "cli")
PACKAGE = Path(difftrade.__file__).parent

KNOWN_UPWARD = {  # (importing module, imported module)
    ("difftrade.config.run_config", "difftrade.model.checkpoint"),
    ("difftrade.config.run_config", "difftrade.model.transformer"),
    ("difftrade.config.run_config", "difftrade.recommender.difficulty"),
    ("difftrade.config.run_config", "difftrade.tasks"),
    ("difftrade.config.run_config", "difftrade.tasks.data"),
    ("difftrade.config.run_config", "difftrade.train.evaluate"),
    ("difftrade.config.run_config", "difftrade.train.subspace"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every ``difftrade`` module or package that ``path`` imports, at any depth of its tree."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "difftrade"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "difftrade":
            for alias in node.names:  # `from difftrade.x import y`: y may be a module of x
                sub = f"{node.module}.{alias.name}"
                found.add(sub if is_module(sub) else node.module)
    return found


def is_module(dotted: str) -> bool:
    base = PACKAGE.parent.joinpath(*dotted.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def stage_of(dotted: str) -> int | None:
    """Index of the stage ``dotted`` belongs to; None for the root package (below every stage)."""
    parts = dotted.split(".")
    if len(parts) == 1 or parts[1] in ("__main__",):
        return None
    return STAGES.index(parts[1])


def library_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for path in library_modules():
        source = module_name(path)
        here = stage_of(source)
        for target in imported_modules(path):
            there = stage_of(target)
            if here is not None and there is not None and there > here:
                found.add((source, target))
    return found


def test_every_module_belongs_to_a_stage():
    top = sorted(p.name for p in PACKAGE.iterdir() if p.name != "__pycache__" and (p.suffix == ".py" or p.is_dir()))
    assert len(top) <= 14, top
    assert set(top) == {*STAGES, "__init__.py", "__main__.py"}, set(top) ^ {*STAGES, "__init__.py", "__main__.py"}
    for stage in STAGES:
        assert (PACKAGE / stage / "__init__.py").exists(), stage


def test_imports_run_down_the_stages():
    found = upward_imports()
    new = sorted(found - set(KNOWN_UPWARD))
    fixed = sorted(set(KNOWN_UPWARD) - found)
    assert not new, f"imports against the stage order: {new}"
    assert not fixed, f"listed as known faults but gone (remove them from KNOWN_UPWARD): {fixed}"


def test_the_check_sees_an_import_hidden_in_a_function(tmp_path):
    """The walk reads function bodies: an upward import inside one is reported."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from difftrade.cli.main import main\n    return main\n")
    assert "difftrade.cli.main" in imported_modules(probe)


def test_no_cycle_between_stages():
    """Every cycle between stages runs through a listed fault: with the imports of
    ``KNOWN_UPWARD`` left out, no stage reaches itself. (A stage with no fault of its own can sit
    on such a cycle through downward imports alone, e.g. results -> train -> config ->
    recommender -> results while config's faults remain, so the check is on imports, not on
    the stages the faults name.)"""
    edges: dict[int, set[int]] = {i: set() for i in range(len(STAGES))}
    for path in library_modules():
        source = module_name(path)
        here = stage_of(source)
        for target in imported_modules(path):
            there = stage_of(target)
            if here is not None and there is not None and there != here and (source, target) not in KNOWN_UPWARD:
                edges[here].add(there)
    def reaches(start: int, goal: int, seen: set[int]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges[start])
    cycles = sorted(STAGES[i] for i in edges if reaches(i, i, {i}))
    assert not cycles, cycles


CONFIG_USING_JAX = {  # config modules that still start jax: a fault, listed until removed
    "difftrade.config.run_config",
    "difftrade.config.train_config",
}


def test_config_modules_import_without_jax():
    """Configuration describes; reading and validating it never starts jax (the CLI reads configs
    before it chooses devices). Each module is imported in a fresh process."""
    code = ("import sys, importlib\n"
            "name = sys.argv[1]\n"
            "importlib.import_module(name)\n"
            "print('jax' in sys.modules)")
    using = set()
    for path in sorted((PACKAGE / "config").glob("*.py")):
        name = module_name(path)
        out = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, check=True).stdout
        if out.strip() == "True":
            using.add(name)
    assert using == CONFIG_USING_JAX, using ^ CONFIG_USING_JAX
