"""Decide the sign of a sympy expression on a domain, symbolically (sufficient conditions only).

Domains are ordered mappings ``{symbol: (lo, hi)}`` of *open* intervals. A bound may be a number,
``sympy.oo``/``-sympy.oo``, or an expression in symbols listed *before* it, so
``{q: (0, 1), p: (q, 1)}`` means ``0 < q < p < 1``.

How sympy decides a sign (:func:`decide_sign`), in order:

1. sympy's own assumptions, after replacing each domain symbol by a dummy carrying what its
   bounds say (``positive`` when ``lo >= 0``, ...);
2. factor the expression and decide each factor: an even power is non-negative; an odd power
   has the sign of its base; a base is decided by (1), by the *positive reparametrisation*
   below, or -- for a polynomial in one variable with numeric bounds -- by counting its real
   roots in the interval (none means the sign at any interior point is the sign everywhere);
3. the positive reparametrisation: every ``v in (lo, hi)`` becomes ``lo + (hi - lo) u/(1+u)``
   (or ``lo + u``, ``hi - u`` for half-lines) with ``u > 0``; after ``together`` a numerator or
   denominator that is a polynomial with coefficients of one sign in positive generators has
   that sign. All three steps are sufficient conditions: they can fail to decide a true claim,
   never accept a false one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sympy as sp

RELATIONS = (">0", ">=0", "<0", "<=0", "==0")

Domain = Mapping[sp.Symbol, tuple]


# ---- domains ----------------------------------------------------------------------------------
def assumed_dummies(domain: Domain | None) -> dict:
    """Map each domain symbol to a dummy carrying the sign its numeric bounds imply."""
    out = {}
    for v, (lo, hi) in (domain or {}).items():
        lo, hi = sp.sympify(lo), sp.sympify(hi)
        kw = {"real": True}
        if lo.is_number and lo >= 0:
            kw = {"positive": True}
        elif hi.is_number and hi <= 0:
            kw = {"negative": True}
        out[v] = sp.Dummy(v.name, **kw)
    return out


def reparametrise(expr: sp.Expr, domain: Domain | None) -> sp.Expr:
    """Substitute each ``v in (lo, hi)`` by an expression in a fresh positive dummy (see module
    docstring); symbols are substituted last-listed first, since bounds refer to earlier ones."""
    expr = sp.sympify(expr)
    for v, (lo, hi) in reversed(list((domain or {}).items())):
        lo, hi = sp.sympify(lo), sp.sympify(hi)
        u = sp.Dummy("u_" + v.name, positive=True)
        if lo.is_infinite and hi.is_infinite:
            continue
        if hi.is_infinite:
            rep = lo + u
        elif lo.is_infinite:
            rep = hi - u
        else:
            rep = lo + (hi - lo) * u / (1 + u)
        expr = expr.subs(v, rep)
    return expr


def restrict_domain(domain: Domain, var: sp.Symbol, lo, hi) -> dict:
    """A copy of ``domain`` with the interval of ``var`` replaced by ``(lo, hi)`` (``var`` is
    added if absent); the other symbols keep their intervals and order."""
    out = dict(domain)
    out[var] = (lo, hi)
    return out


# ---- deciding signs ---------------------------------------------------------------------------
# A sign is (s, strict): s in {+1, -1}; strict=False means "or zero". None: undecided.
Sign = tuple[int, bool]


def _assumption_sign(e: sp.Expr) -> Sign | None:
    if e.is_positive:
        return (1, True)
    if e.is_negative:
        return (-1, True)
    if e.is_nonnegative:
        return (1, False)
    if e.is_nonpositive:
        return (-1, False)
    return None


def _coefficient_sign(e: sp.Expr) -> Sign | None:
    """Sign of a polynomial whose generators are all provably positive and whose coefficients
    all share one sign (a sufficient condition)."""
    e = sp.expand(e)
    if e.is_number:
        return _assumption_sign(e)
    try:
        poly = sp.Poly(e)
    except sp.PolynomialError:
        return None
    if not all(g.is_positive for g in poly.gens):
        return None
    coeffs = [c for c in poly.coeffs()]
    if not all(c.is_number for c in coeffs):
        return None
    if all(c > 0 for c in coeffs):
        return (1, True)
    if all(c < 0 for c in coeffs):
        return (-1, True)
    return None


def _reparam_sign(e: sp.Expr, domain: Domain | None) -> Sign | None:
    r = sp.together(reparametrise(e, domain))
    s = _assumption_sign(r)
    if s is not None:
        return s
    num, den = sp.fraction(sp.factor(r))
    parts = []
    for part in (num, den):
        sgn, strict = 1, True
        for fac in sp.Mul.make_args(part):
            base, ex = fac.as_base_exp()
            fs = _assumption_sign(fac) or _power_sign(
                base, ex, lambda b: _assumption_sign(b) or _coefficient_sign(b)
            )
            if fs is None:
                return None
            sgn *= fs[0]
            strict = strict and fs[1]
        parts.append((sgn, strict))
    (sn, tn), (sd, _) = parts
    return (sn * sd, tn)


def _univariate_root_sign(e: sp.Expr, domain: Domain | None) -> Sign | None:
    """A polynomial in one variable with numeric bounds and no real root strictly inside the
    interval has the sign of its value at the midpoint."""
    free = e.free_symbols
    if len(free) != 1 or domain is None:
        return None
    (v,) = free
    if v not in domain:
        return None
    lo, hi = (sp.sympify(b) for b in domain[v])
    if not (lo.is_number and hi.is_number):
        return None
    try:
        poly = sp.Poly(e, v)
    except sp.PolynomialError:
        return None
    if not poly.is_univariate or poly.degree() < 1:
        return None
    roots = [r for r in sp.real_roots(poly) if (lo < r) == True and (r < hi) == True]
    if roots:
        return None
    lo_f = lo if lo.is_finite else (hi - 1 if hi.is_finite else sp.Integer(-1))
    hi_f = hi if hi.is_finite else lo_f + 2
    mid = (lo_f + hi_f) / 2
    val = poly.eval(mid)
    if val > 0:
        return (1, True)
    if val < 0:
        return (-1, True)
    return None


def _power_sign(
    base: sp.Expr, ex: sp.Expr, base_sign: Callable[[sp.Expr], Sign | None]
) -> Sign | None:
    if ex.is_integer and ex.is_even:
        s = base_sign(base)
        return (1, bool(s and s[1]))
    s = base_sign(base)
    if ex.is_integer:  # odd power keeps the sign of its base
        return s
    # a non-integer power of a real expression is only real for a non-negative base
    if s is not None and s[0] > 0:
        return (1, s[1])
    return None


def _squares_sign(e: sp.Expr, domain: Domain | None, depth: int) -> Sign | None:
    """``e = P - N`` with ``P``, ``N`` sums of provably positive terms has the sign of
    ``P^2 - N^2`` (= (P - N)(P + N)); this removes one layer of square roots."""
    sub = assumed_dummies(domain)
    pos, neg = [], []
    for term in sp.Add.make_args(e):
        s = _assumption_sign(term.xreplace(sub))
        if s == (1, True):
            pos.append(term)
        elif s == (-1, True):
            neg.append(-term)
        else:
            return None
    if not pos or not neg:
        return None
    P, N = sp.Add(*pos), sp.Add(*neg)
    return _base_sign(sp.expand(P**2 - N**2), domain, depth - 1)


def _base_sign(base: sp.Expr, domain: Domain | None, depth: int = 2) -> Sign | None:
    s = _assumption_sign(base.xreplace(assumed_dummies(domain)))
    if s is not None:
        return s
    s = _univariate_root_sign(base, domain)
    if s is not None:
        return s
    try:
        s = _reparam_sign(base, domain)
    except (sp.PolynomialError, TypeError, ValueError):
        s = None
    if s is not None or depth <= 0 or not isinstance(base, sp.Add):
        return s
    return _squares_sign(base, domain, depth)


def decide_sign(expr: sp.Expr, domain: Domain | None = None) -> tuple[str | None, str]:
    """Try to decide the sign of ``expr`` on ``domain`` symbolically.

    Returns ``(relation, how)`` with relation one of ``">0", ">=0", "<0", "<=0", "==0"`` or
    ``None`` when sympy cannot decide, and ``how`` a short explanation.
    """
    expr = sp.sympify(expr)
    if expr.is_zero:
        return "==0", "identically zero"
    sub = assumed_dummies(domain)
    assumed = expr.xreplace(sub)
    s = _assumption_sign(assumed)
    if s is not None:
        return _rel(s), "sympy assumptions"
    # factor-wise, in the original variables (so even powers are seen as such)
    try:
        fac = sp.factor(sp.together(expr))
    except (sp.PolynomialError, TypeError, ValueError):
        fac = expr
    sgn, strict, ok = 1, True, True
    for f in sp.Mul.make_args(fac):
        base, ex = f.as_base_exp()
        fs = _power_sign(base, ex, lambda b: _base_sign(b, domain))
        if fs is None:
            ok = False
            break
        sgn *= fs[0]
        strict = strict and fs[1]
    if ok:
        return _rel((sgn, strict)), f"factor-wise signs of {fac}"
    try:
        s = _reparam_sign(expr, domain)
    except (sp.PolynomialError, TypeError, ValueError):
        s = None
    if s is not None:
        return _rel(s), "positive reparametrisation of the domain"
    return None, "sympy could not decide"


def _rel(s: Sign) -> str:
    return {(1, True): ">0", (1, False): ">=0", (-1, True): "<0", (-1, False): "<=0"}[s]


# Relations ">0", ">=0", "<0", "<=0", "==0": SIGN_IMPLIES[r] is the set of relations that
# hold whenever r holds; SIGN_CONTRADICTS[r] is the set that cannot hold when r holds.
SIGN_IMPLIES = {
    ">0": {">0", ">=0"},
    ">=0": {">=0"},
    "<0": {"<0", "<=0"},
    "<=0": {"<=0"},
    "==0": {"==0", ">=0", "<=0"},
}
SIGN_CONTRADICTS = {
    ">0": {"<0", "<=0", "==0"},
    "<0": {">0", ">=0", "==0"},
    ">=0": {"<0"},
    "<=0": {">0"},
    "==0": {">0", "<0"},
}
