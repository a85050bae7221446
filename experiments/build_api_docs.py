"""Build the HTML API reference of difftrade from its docstrings with pdoc.

    python experiments/build_api_docs.py [OUT]      # default OUT: docs/reference (not committed)

Then open OUT/index.html. pdoc is in the ``test`` extra (``pip install -e ".[test]"``).

Every module of the package gets a page: they are listed from the package's files here, because
pdoc on its own follows each package's ``__all__``, which names the lazily loaded functions and
classes, not the submodules. Docstrings are read as Google style with reStructuredText markup
(````code````, ``:func:``). pdoc imports every module; a module that fails to import is printed as
a warning and, with ``--strict``, makes the build fail.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "difftrade"


def module_names(package: Path = PACKAGE) -> list[str]:
    """Every public module and package under ``package``, as dotted names, the package first."""
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts):
            continue  # private modules (and __main__)
        names.append(".".join(parts))
    return sorted(names, key=lambda name: (name != package.name, name))


def build(out: Path, strict: bool = False) -> list[str]:
    """Write the reference into ``out``; returns the documented module names."""
    import pdoc
    import pdoc.render

    sys.path.insert(0, str(ROOT))  # this checkout's difftrade, installed or not
    names = module_names()
    pdoc.render.configure(
        docformat="google", show_source=True, search=True, footer_text="difftrade API reference"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*names, output_directory=out)
    # a package without __all__ already brings its submodules, which are listed here too: harmless
    messages = [
        str(w.message).splitlines()[0]
        for w in caught
        if "has already been added" not in str(w.message)
    ]
    problems = [
        m
        for m in messages
        if "import" in m.lower() or "Error loading" in m or "Cannot find spec" in m
    ]
    for message in messages:
        print(f"pdoc warning: {message}", file=sys.stderr)
    if strict and problems:
        raise SystemExit(f"build_api_docs: {len(problems)} import problem(s), first: {problems[0]}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build difftrade's HTML API reference (pdoc).")
    parser.add_argument(
        "out",
        nargs="?",
        type=Path,
        default=ROOT / "docs" / "reference",
        help="output folder (default docs/reference)",
    )
    parser.add_argument("--strict", action="store_true", help="fail when a module does not import")
    args = parser.parse_args(argv)
    names = build(args.out, strict=args.strict)
    print(f"{len(names)} modules -> {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
