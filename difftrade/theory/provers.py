"""Provers: check a :class:`~difftrade.theory.claims.Claim` with sympy, numerics only as fallback.

:func:`prove_sign` (via :func:`~difftrade.theory.signs.decide_sign`), :func:`prove_equal`
(simplify ``a - b`` to 0), :func:`prove_nonnegative_by_derivative` (a zero and the sign of the
derivative on each side), :func:`prove_unique_root` (``sympy.solve`` derives the closed form) and
:func:`combine` (a claim from several sub-results). Each returns a
:class:`~difftrade.theory.claims.Result` that says whether sympy decided the claim or the dense
numeric check of :mod:`difftrade.theory.numeric_fallback` did.

A deliberately wrong statement goes through the same provers and is rejected: symbolically when
sympy proves the opposite, otherwise by a counterexample that the numeric search finds and that is
then re-evaluated with 50-digit arithmetic at the exact (rational) point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

import sympy as sp

from difftrade.theory.claims import NUMERIC_FALLBACK, SYMBOLIC, Claim, Result, as_claim
from difftrade.theory.numeric_fallback import fallback_detail, numeric_check
from difftrade.theory.signs import (
    RELATIONS,
    SIGN_CONTRADICTS,
    SIGN_IMPLIES,
    Domain,
    assumed_dummies,
    decide_sign,
    reparametrise,
    restrict_domain,
)


# ---- provers ----------------------------------------------------------------------------------
def prove_sign(
    expr: sp.Expr,
    relation: str = ">=0",
    domain: Domain | None = None,
    *,
    claim: Claim | str | None = None,
    allow_fallback: bool = True,
    n_points: int = 100_000,
) -> Result:
    """Prove ``expr <relation>`` (one of ``">0", ">=0", "<0", "<=0"``) on ``domain``.

    Symbolic via :func:`decide_sign`; if sympy proves the opposite the claim is rejected
    symbolically; if sympy cannot decide and ``allow_fallback``, :func:`numeric_check` decides and
    the result says ``method="numeric-fallback"``.
    """
    if relation not in RELATIONS[:4]:
        raise ValueError(f"relation={relation!r} is unknown; allowed: {', '.join(RELATIONS[:4])}")
    expr = sp.sympify(expr)
    c = as_claim(claim, f"{expr} {relation}")
    decided, how = decide_sign(expr, domain)
    if decided is not None and relation in SIGN_IMPLIES[decided]:
        return Result(c, True, SYMBOLIC, f"sympy: expression is {decided} ({how})")
    if decided is not None and relation in SIGN_CONTRADICTS[decided]:
        return Result(
            c, False, SYMBOLIC, f"sympy proves the opposite: expression is {decided} ({how})"
        )
    why = "sympy could not decide the sign" if decided is None else f"sympy only shows {decided}"
    if not allow_fallback:
        return Result(c, False, SYMBOLIC, why + "; numeric fallback disabled")
    rep = numeric_check(expr, relation, domain, n_points=n_points)
    return Result(c, rep.ok and rep.n_points > 0, NUMERIC_FALLBACK, fallback_detail(rep, why))


_SIMPLIFIERS: tuple[tuple[str, Callable[[sp.Expr], sp.Expr]], ...] = (
    ("expand", sp.expand),
    ("cancel", lambda e: sp.cancel(sp.together(e))),
    ("simplify", sp.simplify),
    ("expand_log+simplify", lambda e: sp.simplify(sp.expand_log(sp.expand(e)))),
    ("powdenest+radsimp", lambda e: sp.simplify(sp.radsimp(sp.powdenest(e)))),
)


def prove_equal(
    a: sp.Expr,
    b: sp.Expr,
    domain: Domain | None = None,
    *,
    claim: Claim | str | None = None,
    allow_fallback: bool = True,
    n_points: int = 20_000,
) -> Result:
    """Prove ``a == b`` on ``domain``: some simplifier reduces ``a - b`` to 0, with domain symbols
    carrying the signs their bounds imply (and again after the positive reparametrisation).
    Rejected symbolically when ``a - b`` simplifies to a non-zero number; otherwise, if allowed,
    a numeric fallback compares both sides on a grid."""
    a, b = sp.sympify(a), sp.sympify(b)
    c = as_claim(claim, f"{a} == {b}")
    sub = assumed_dummies(domain)
    diff = (a - b).xreplace(sub)
    candidates = [("", diff)]
    if domain:
        candidates.append(("reparametrised, ", reparametrise(a - b, domain)))
    last = diff
    for prefix, d in candidates:
        for name, fn in _SIMPLIFIERS:
            try:
                z = fn(d)
            except (sp.PolynomialError, TypeError, ValueError, NotImplementedError):
                continue
            if z == 0:
                return Result(c, True, SYMBOLIC, f"sympy: {prefix}{name}(a - b) = 0")
            last = z
            if z.is_number and z.is_zero is False:
                return Result(
                    c, False, SYMBOLIC, f"sympy: a - b simplifies to the non-zero number {z}"
                )
    back = {dummy: v for v, dummy in sub.items()}
    try:
        simplified = sp.simplify(diff).xreplace(back)
    except (sp.PolynomialError, TypeError, ValueError, NotImplementedError):
        simplified = a - b
    sign, how = decide_sign(simplified, domain)
    if sign in (">0", "<0"):
        return Result(
            c, False, SYMBOLIC, f"sympy: a - b = {sp.sstr(simplified)[:120]} is {sign} ({how})"
        )
    why = f"sympy could not reduce a - b to 0 (got {sp.sstr(last)[:120]})"
    if not allow_fallback:
        return Result(c, False, SYMBOLIC, why + "; numeric fallback disabled")
    rep = numeric_check(a, "==0", domain, rhs=b, n_points=n_points, rtol=1e-8)
    return Result(c, rep.ok and rep.n_points > 0, NUMERIC_FALLBACK, fallback_detail(rep, why))


def prove_nonnegative_by_derivative(
    f: sp.Expr,
    var: sp.Symbol,
    domain: Domain,
    at_zero: sp.Expr,
    *,
    claim: Claim | str | None = None,
    allow_fallback: bool = True,
) -> Result:
    """Prove ``f >= 0`` on ``domain`` from ``f(at_zero) = 0`` and the sign of ``df/dvar``.

    ``domain[var] = (lo, hi)``. If ``at_zero`` is ``lo`` the derivative must be ``>= 0`` on the
    domain; if it is ``hi``, ``<= 0``; if it lies strictly inside, ``<= 0`` on ``(lo, at_zero)``
    and ``>= 0`` on ``(at_zero, hi)`` (f decreases to its zero, then increases).
    Both steps are sub-results; the method is symbolic only if both are. ``f`` must be
    continuous on the closed interval at ``at_zero`` (``f.subs(var, at_zero)`` is its value there).
    """
    f, at_zero = sp.sympify(f), sp.sympify(at_zero)
    c = as_claim(claim, f"{f} >= 0 (derivative in {var})")
    if var not in domain:
        raise ValueError(f"var={var} is not in domain; allowed: one of {list(domain)}")
    rest = {k: v for k, v in domain.items() if k != var}
    zero = prove_equal(
        f.subs(var, at_zero),
        0,
        rest,
        claim=f"f({var}={at_zero}) = 0",
        allow_fallback=allow_fallback,
    )
    steps = [zero, *_derivative_sign_steps(f, var, domain, at_zero, allow_fallback)]
    result = combine(c, steps)
    if result.passed or not allow_fallback:
        return result
    # the argument failed; say whether the statement itself is false
    return replace(result, detail=result.detail + "; " + _statement_verdict(f, domain))


def _derivative_sign_steps(
    f: sp.Expr, var: sp.Symbol, domain: Domain, at_zero: sp.Expr, allow_fallback: bool
) -> list[Result]:
    """The monotonicity steps of :func:`prove_nonnegative_by_derivative`: ``df/dvar`` is ``<= 0``
    on the part of ``domain[var] = (lo, hi)`` left of ``at_zero`` and ``>= 0`` on the part right
    of it (one step when ``at_zero`` is an end of the interval, two when it lies inside)."""
    lo, hi = (sp.sympify(x) for x in domain[var])
    if sp.simplify(at_zero - lo) == 0:
        pieces = [(">=0", domain, lo, hi)]
    elif sp.simplify(at_zero - hi) == 0:
        pieces = [("<=0", domain, lo, hi)]
    else:
        left, right = (
            restrict_domain(domain, var, lo, at_zero),
            restrict_domain(domain, var, at_zero, hi),
        )
        pieces = [("<=0", left, lo, at_zero), (">=0", right, at_zero, hi)]
    fp = sp.diff(f, var)
    return [
        prove_sign(
            fp,
            relation,
            where,
            claim=f"d/d{var} {relation[:-1]} 0 on ({a}, {b})",
            allow_fallback=allow_fallback,
        )
        for relation, where, a, b in pieces
    ]


def _statement_verdict(f: sp.Expr, domain: Domain) -> str:
    """Whether a dense numeric search finds a counterexample to ``f >= 0`` itself."""
    rep = numeric_check(f, ">=0", domain)
    return (
        f"the statement itself fails: counterexample {rep.counterexample}"
        if rep.counterexample is not None
        else "no counterexample to the statement itself was found, but it is NOT proved"
    )


def combine(claim: Claim | str, steps: Iterable[Result], how: str = "") -> Result:
    """A claim that follows from several sub-results: passes iff all pass; symbolic iff all are."""
    steps = tuple(steps)
    c = as_claim(claim, str(claim))
    passed = all(s.passed for s in steps)
    method = SYMBOLIC if all(s.method == SYMBOLIC for s in steps) else NUMERIC_FALLBACK
    detail = (how + "; " if how else "") + "; ".join(
        f"{s.claim.name}: {'ok' if s.passed else 'FAILED'} ({s.method})" for s in steps
    )
    return Result(c, passed, method, detail, steps)


def prove_unique_root(
    expr: sp.Expr,
    var: sp.Symbol,
    expected: sp.Expr,
    domain: Domain | None = None,
    *,
    claim: Claim | str | None = None,
) -> Result:
    """``sympy.solve(expr = 0, var)`` returns exactly one root, and it equals ``expected``.

    ``var`` should carry the assumptions that restrict the root (e.g. ``positive=True``).
    ``solve`` can miss roots of transcendental equations, so for rigour pair this with a
    monotonicity (sign of derivative) claim; this one shows sympy *derives* the closed form.
    """
    c = as_claim(claim, f"{expr} = 0 has the unique root {var} = {expected}")
    roots = sp.solve(sp.sympify(expr), var)
    if len(roots) != 1:
        return Result(c, False, SYMBOLIC, f"sympy.solve returned {len(roots)} roots: {roots}")
    eq = prove_equal(roots[0], expected, domain, claim="solve root == expected")
    detail = f"sympy.solve returned the single root {sp.sstr(roots[0])}; " + eq.detail
    return Result(c, eq.passed, eq.method, detail, (eq,))
