"""What a finished grid shows: d*(n) with its bootstrap, paired comparisons, transfer,
study tables, the report and figures. Arrays in, arrays and text out.

:mod:`~difftrade.analysis.optimum` (``d_star``, ``bootstrap_d_star``),
:mod:`~difftrade.analysis.paired_comparison` (``compare_to_d_star``),
:mod:`~difftrade.analysis.transfer`, :mod:`~difftrade.analysis.study`,
:mod:`~difftrade.analysis.report`, :mod:`~difftrade.analysis.tables`,
:mod:`~difftrade.analysis.certified` (d*(n) from a run's certificates),
:mod:`~difftrade.analysis.plots`.

The names below are importable from ``difftrade.analysis`` itself; each submodule is imported
when first used."""

from __future__ import annotations

from difftrade.config.lazy import lazy_exports

_EXPORTS = {
    "d_star": "optimum",
    "bootstrap_d_star": "optimum",
    "compare_to_d_star": "paired_comparison",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
