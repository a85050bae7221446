"""The Python snippets of README.md and docs/ are valid Python, and every name they import from
difftrade, or use as ``difftrade.<name>``, exists (a snippet a newcomer copies must not fail on
its first line)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def snippets() -> list[tuple[str, str]]:
    return [
        (f"{page.relative_to(ROOT)}#{i}", code)
        for page in PAGES
        for i, code in enumerate(BLOCK.findall(page.read_text()))
    ]


def difftrade_imports(code: str) -> list[tuple[str, str | None]]:
    """(module, name) for each ``from difftrade... import name``; (module, None) for ``import``."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "difftrade":
            found += [(node.module or "", a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.split(".")[0] == "difftrade"]
    return found


def test_the_pages_have_snippets():
    assert len(snippets()) >= 5


@pytest.mark.parametrize(("where", "code"), snippets(), ids=[w for w, _ in snippets()])
def test_a_snippet_imports_what_exists(where, code):
    for module, name in difftrade_imports(code):
        mod = importlib.import_module(module)
        if name is not None and not hasattr(mod, name):
            importlib.import_module(f"{module}.{name}")  # a submodule, or ModuleNotFoundError


@pytest.mark.parametrize(("where", "code"), snippets(), ids=[w for w, _ in snippets()])
def test_a_snippet_calls_what_the_package_exports(where, code):
    """``difftrade.<name>`` in a snippet is one of the package's top-level names."""
    import difftrade

    used = {
        node.attr
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "difftrade"
    }
    missing = sorted(name for name in used if not hasattr(difftrade, name))
    assert not missing and used <= set(dir(difftrade)), missing


def test_the_check_fails_on_a_missing_name():
    with pytest.raises(ModuleNotFoundError):
        test_a_snippet_imports_what_exists("probe", "from difftrade import experiment\n")
