"""What produced a result: library versions, the source revision and the devices.

:func:`versions` and :func:`device_kind` are attributes of every ``results.nc``
(:func:`difftrade.results.assembly.assemble`); :func:`source_revision` and :func:`device_kind` are
recorded per session in ``sessions.json`` (:mod:`difftrade.runner.rundir`).
"""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import jax


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("difftrade", "jax", "jaxlib", "flax", "optax", "numpy", "xarray"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


@functools.cache
def source_revision() -> str:
    """``git rev-parse HEAD`` of the checkout the package runs from (``+dirty`` when the package's
    tracked files differ from it), else ``"difftrade <version>"`` (an installed package)."""
    pkg = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=pkg, capture_output=True, text=True, timeout=20, check=True
        ).stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "__init__.py")  # the package is tracked by this checkout
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".")
        return git("rev-parse", "HEAD") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return f"difftrade {versions()['difftrade']}"


def device_kind() -> str:
    d = jax.devices()
    return f"{len(d)}x {d[0].platform}:{d[0].device_kind}"
