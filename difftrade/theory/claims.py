"""Claims and the results of checking them: the records the sympy provers return.

A claim is a name and a human-readable statement (:class:`Claim`). A prover
(:mod:`difftrade.theory.provers`) takes the claim and the sympy expressions that make it precise
and returns a :class:`Result` recording whether the claim passed and *how*:
``method == "symbolic"`` when sympy decided it, ``"numeric-fallback"`` when sympy could not and a
dense float64 grid over the domain was used instead (:mod:`difftrade.theory.numeric_fallback`).
A numeric fallback never passes silently: its ``detail`` says that it fell back, how many points
it evaluated and the worst value it saw. :func:`report` and :func:`run_check_script` print
results for the ``theory/check_*.py`` scripts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

SYMBOLIC = "symbolic"
NUMERIC_FALLBACK = "numeric-fallback"


# ---- claims and results -----------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """A named mathematical statement.

    ``expected_method`` records how the check is *meant* to be decided (``"symbolic"`` unless we
    know sympy cannot do it); tests compare it with the method actually used, so a sympy upgrade
    that silently turns a proof into a numeric check is noticed.
    """

    name: str
    statement: str
    expected_method: str = SYMBOLIC

    def __post_init__(self) -> None:
        if self.expected_method not in (SYMBOLIC, NUMERIC_FALLBACK):
            raise ValueError(
                f"expected_method={self.expected_method!r} is unknown; allowed: "
                f"{SYMBOLIC!r}, {NUMERIC_FALLBACK!r}"
            )


@dataclass(frozen=True)
class Result:
    """Outcome of checking a :class:`Claim`.

    ``passed``: the claim was established (symbolically, or numerically on the whole grid).
    ``method``: ``"symbolic"`` or ``"numeric-fallback"`` (the latter whenever any step needed
    numerics). ``detail``: how it was decided, in words. ``steps``: sub-results of composite
    arguments (e.g. the two steps of :func:`prove_nonnegative_by_derivative`).
    """

    claim: Claim
    passed: bool
    method: str
    detail: str
    steps: tuple[Result, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.claim.name

    @property
    def as_expected(self) -> bool:
        """Passed, with the method the claim expects."""
        return self.passed and self.method == self.claim.expected_method

    def __str__(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        return f"[{mark}] {self.claim.name} ({self.method}): {self.claim.statement}\n       {self.detail}"


def as_claim(claim: Claim | str | None, default: str) -> Claim:
    """``claim`` as a :class:`Claim`: a ``Claim`` is returned unchanged, ``None`` becomes
    ``Claim(default, default)``, anything else becomes ``Claim(str(claim), default)`` (its text
    as the name, ``default`` as the statement)."""
    if isinstance(claim, Claim):
        return claim
    if claim is None:
        return Claim(default, default)
    return Claim(str(claim), default)


def report(results: Iterable[Result]) -> str:
    """Multi-line text report of results (one block per result)."""
    return "\n".join(str(r) for r in results)


def run_check_script(
    check: Callable[[], list[Result]], negative_controls: Callable[[], list[Result]]
) -> int:
    """What ``python theory/check_*.py`` does: print both reports; exit status 0 iff every claim passed."""
    results = check()
    print(report(results))
    print("\nnegative controls (must FAIL):")
    print(report(negative_controls()))
    return 0 if all(r.passed for r in results) else 1
