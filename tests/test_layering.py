"""The package"s stages and the direction of its imports, read from the syntax trees.

Stages, lowest first; a module may import its own stage and any stage below it, never one above.
Every import counts, the ones inside functions and under ``TYPE_CHECKING`` too, so a fault cannot
hide in a function body.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import difftrade

STAGES = (
    "theory",
    "config",
    "tasks",
    "model",
    "train",
    "results",
    "runner",
    "analysis",
    "certify",
    "recommender",
    "bridge",
    "cli",
)
PACKAGE = Path(difftrade.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every ``difftrade`` module or package that ``path`` imports, at any depth of its tree."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "difftrade"}
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and node.module.split(".")[0] == "difftrade"
        ):
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
    top = sorted(
        p.name
        for p in PACKAGE.iterdir()
        if p.name != "__pycache__" and (p.suffix == ".py" or p.is_dir())
    )
    assert len(top) <= 14, top
    assert set(top) == {*STAGES, "__init__.py", "__main__.py"}, set(top) ^ {
        *STAGES,
        "__init__.py",
        "__main__.py",
    }
    for stage in STAGES:
        assert (PACKAGE / stage / "__init__.py").exists(), stage


def test_imports_run_down_the_stages():
    assert not sorted(upward_imports()), "imports against the stage order"


def test_the_check_sees_an_import_hidden_in_a_function(tmp_path):
    """The walk reads function bodies: an upward import inside one is reported."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from difftrade.cli.main import main\n    return main\n")
    assert "difftrade.cli.main" in imported_modules(probe)


def test_no_import_cycle_between_modules():
    """No module reaches itself through imports, those inside functions included (a cycle hidden in
    a function body, such as a report importing the study that imports the report, counts)."""
    edges: dict[str, set[str]] = {}
    for path in library_modules():
        source = module_name(path)
        targets = {t for t in imported_modules(path) if t != source}
        edges[source] = {
            t for t in targets if not source.startswith(t + ".")
        }  # a package's own __init__

    def on_cycle(start: str) -> bool:
        seen, todo = set(), list(edges.get(start, ()))
        while todo:
            node = todo.pop()
            if node == start:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(edges.get(node, ()))
        return False

    assert not sorted(m for m in edges if on_cycle(m))


def test_the_cycle_check_sees_a_hidden_cycle(tmp_path, monkeypatch):
    """The import walk that feeds the cycle check reads function bodies (a cycle through one would count)."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os\n\ndef f():\n    from difftrade.analysis import study\n    return study\n"
    )
    assert "difftrade.analysis.study" in imported_modules(probe)


def test_config_modules_import_without_jax():
    """Configuration describes; reading and validating it never starts jax (the CLI reads configs
    before it chooses devices). Each module is imported in a fresh process."""
    code = (
        "import sys, importlib\n"
        "name = sys.argv[1]\n"
        "importlib.import_module(name)\n"
        "print('jax' in sys.modules)"
    )
    using = set()
    for path in sorted((PACKAGE / "config").glob("*.py")):
        name = module_name(path)
        out = subprocess.run(
            [sys.executable, "-c", code, name], capture_output=True, text=True, check=True
        ).stdout
        if out.strip() == "True":
            using.add(name)
    assert not using, sorted(using)


def test_one_key_scheme():
    """Every random stream derives from difftrade.tasks.keys: ``jax.random.key(`` is written once."""
    calls = [
        str(p.relative_to(PACKAGE))
        for p in library_modules()
        for _ in range(p.read_text().count("jax.random.key("))
    ]
    assert calls == ["tasks/keys.py"], calls


def test_the_top_level_names_the_core_loop_without_starting_jax():
    code = (
        "import sys, difftrade\n"
        "names = ['load', 'run', 'd_star', 'recommend', 'certify_run', 'compress_run', 'select', 'load_weights']\n"
        "assert set(names) <= set(difftrade.__all__)\n"
        "print('jax' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"
    assert (
        difftrade.load("quick").task_name == "addition"
        and callable(difftrade.run)
        and callable(difftrade.certify_run)
    )


def test_no_module_level_mutable_containers_beyond_the_task_registry():
    """An empty dict, list or set (or a Counter) at module level exists to be filled as the
    process runs, carrying state from one call to the next; the task registry (filled by
    ``@register`` and entry points) is the one such table. Compiled programs and progress
    listeners live in explicit objects (``difftrade.train.programs``)."""
    mutable = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
    found = []
    for path in library_modules():
        for node in ast.parse(path.read_text()).body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            is_counter = isinstance(value, ast.Call) and "Counter" in ast.unparse(value.func)
            empty = isinstance(value, (ast.Dict, ast.List, ast.Set)) and not (
                getattr(value, "keys", None) or getattr(value, "elts", None)
            )
            if (empty and isinstance(value, mutable)) or is_counter:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                found += [f"{path.relative_to(PACKAGE)}:{ast.unparse(t)}" for t in targets]
    assert sorted(found) == ["tasks/registry.py:REGISTRY", "tasks/registry.py:_BROKEN_ENTRY_POINTS"]
