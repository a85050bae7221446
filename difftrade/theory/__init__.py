"""difftrade.theory: tradeoff models for d*(n) and a small sympy claim-checking machinery.

Names are loaded lazily (PEP 562), so ``import difftrade.theory.<module>`` does not pay for
sympy or scipy unless they are used.
"""

from __future__ import annotations

import importlib

_EXPORTS: dict[str, str] = {
    # claims.py
    "Claim": "claims",
    "Result": "claims",
    "SYMBOLIC": "claims",
    "NUMERIC_FALLBACK": "claims",
    "report": "claims",
    # signs.py
    "decide_sign": "signs",
    # numeric_fallback.py
    "NumericReport": "numeric_fallback",
    "numeric_check": "numeric_fallback",
    # provers.py
    "prove_sign": "provers",
    "prove_equal": "provers",
    "prove_nonnegative_by_derivative": "provers",
    "prove_unique_root": "provers",
    "combine": "provers",
    # tradeoff_families.py
    "TradeoffModel": "tradeoff_families",
    "PowerTradeoff": "tradeoff_families",
    "ExponentialTradeoff": "tradeoff_families",
    "PacBayesTradeoff": "tradeoff_families",
    "FAMILIES": "tradeoff_families",
    "numeric_d_star": "tradeoff_families",
    # tradeoff_fitting.py
    "FitResult": "tradeoff_fitting",
    "fit": "tradeoff_fitting",
    "RankedFit": "tradeoff_fitting",
    "compare_models": "tradeoff_fitting",
    "fit_dataset": "tradeoff_fitting",
    # d_star_from_bounds.py
    "d_star_from_bound": "d_star_from_bounds",
    "certified_d_star_set": "d_star_from_bounds",
}

__all__ = [
    "FAMILIES",
    "NUMERIC_FALLBACK",
    "SYMBOLIC",
    "Claim",
    "ExponentialTradeoff",
    "FitResult",
    "NumericReport",
    "PacBayesTradeoff",
    "PowerTradeoff",
    "RankedFit",
    "Result",
    "TradeoffModel",
    "certified_d_star_set",
    "combine",
    "compare_models",
    "d_star_from_bound",
    "decide_sign",
    "fit",
    "fit_dataset",
    "numeric_check",
    "numeric_d_star",
    "prove_equal",
    "prove_nonnegative_by_derivative",
    "prove_sign",
    "prove_unique_root",
    "report",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
