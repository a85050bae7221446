"""difftrade.theory: tradeoff models for d*(n) and a small sympy claim-checking machinery.

Names are loaded lazily (PEP 562), so ``import difftrade.theory.<module>`` does not pay for
sympy or scipy unless they are used.
"""

from __future__ import annotations

import importlib

_EXPORTS: dict[str, str] = {
    # symbolic.py
    "Claim": "symbolic",
    "Result": "symbolic",
    "NumericReport": "symbolic",
    "SYMBOLIC": "symbolic",
    "NUMERIC_FALLBACK": "symbolic",
    "decide_sign": "symbolic",
    "numeric_check": "symbolic",
    "prove_sign": "symbolic",
    "prove_equal": "symbolic",
    "prove_nonnegative_by_derivative": "symbolic",
    "prove_unique_root": "symbolic",
    "combine": "symbolic",
    "report": "symbolic",
    # tradeoff.py
    "TradeoffModel": "tradeoff",
    "PowerTradeoff": "tradeoff",
    "ExponentialTradeoff": "tradeoff",
    "PacBayesTradeoff": "tradeoff",
    "FAMILIES": "tradeoff",
    "numeric_d_star": "tradeoff",
    "FitResult": "tradeoff",
    "fit": "tradeoff",
    "RankedFit": "tradeoff",
    "compare_models": "tradeoff",
    "fit_dataset": "tradeoff",
    "d_star_from_bound": "tradeoff",
    "certified_d_star_set": "tradeoff",
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
