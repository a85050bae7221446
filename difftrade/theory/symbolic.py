"""State a mathematical claim and check it with sympy, falling back to dense numerics only when
sympy cannot decide.

A claim is a name and a human-readable statement (:class:`Claim`). A prover takes the claim and
the sympy expressions that make it precise and returns a :class:`Result` recording whether the
claim passed and *how*: ``method == "symbolic"`` when sympy decided it, ``"numeric-fallback"``
when sympy could not and a dense float64 grid over the domain was used instead. A numeric
fallback never passes silently: its ``detail`` says that it fell back, how many points it
evaluated and the worst value it saw.

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

A deliberately wrong statement goes through the same provers and is rejected: symbolically when
sympy proves the opposite, otherwise by a counterexample that the numeric search finds and that is
then re-evaluated with 50-digit arithmetic at the exact (rational) point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

SYMBOLIC = "symbolic"
NUMERIC_FALLBACK = "numeric-fallback"
RELATIONS = (">0", ">=0", "<0", "<=0", "==0")

Domain = Mapping[sp.Symbol, tuple]


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


def _as_claim(claim: Claim | str | None, default: str) -> Claim:
    if isinstance(claim, Claim):
        return claim
    if claim is None:
        return Claim(default, default)
    return Claim(str(claim), default)


def report(results: Iterable[Result]) -> str:
    """Multi-line text report of results (one block per result)."""
    return "\n".join(str(r) for r in results)


def run_check_script(check: Callable[[], list[Result]], negative_controls: Callable[[], list[Result]]) -> int:
    """What ``python theory/check_*.py`` does: print both reports; exit status 0 iff every claim passed."""
    results = check()
    print(report(results))
    print("\nnegative controls (must FAIL):")
    print(report(negative_controls()))
    return 0 if all(r.passed for r in results) else 1


# ---- domains ----------------------------------------------------------------------------------
def _assumed(domain: Domain | None) -> dict:
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


def _reparametrise(expr: sp.Expr, domain: Domain | None) -> sp.Expr:
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


def _restrict(domain: Domain, var: sp.Symbol, lo, hi) -> dict:
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
    r = sp.together(_reparametrise(e, domain))
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
    sub = _assumed(domain)
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
    s = _assumption_sign(base.xreplace(_assumed(domain)))
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
    sub = _assumed(domain)
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


_IMPLIES = {
    ">0": {">0", ">=0"},
    ">=0": {">=0"},
    "<0": {"<0", "<=0"},
    "<=0": {"<=0"},
    "==0": {"==0", ">=0", "<=0"},
}
_CONTRADICTS = {
    ">0": {"<0", "<=0", "==0"},
    "<0": {">0", ">=0", "==0"},
    ">=0": {"<0"},
    "<=0": {">0"},
    "==0": {">0", "<0"},
}


# ---- numeric fallback -------------------------------------------------------------------------
@dataclass(frozen=True)
class NumericReport:
    """Outcome of :func:`numeric_check`.

    ``ok``: no confirmed violation. ``n_points``: points where the expression was finite.
    ``worst``: the most violating (or least satisfying) tolerance-normalised value seen, and
    ``worst_point`` where. ``counterexample``: a point whose violation survived 50-digit
    re-evaluation, else None.
    """

    ok: bool
    n_points: int
    worst: float
    worst_point: dict
    counterexample: dict | None
    note: str


def _unit_grid(m: int) -> np.ndarray:
    """``m`` points in (0, 1): a quarter log-spaced towards each end (down to 1e-10), the rest
    uniform inside."""
    k_end = m // 4
    ends = np.logspace(-10, -1.5, k_end)
    return np.sort(np.concatenate([ends, np.linspace(0.04, 0.96, m - 2 * k_end), 1.0 - ends]))


def _map_unit(t: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float) -> np.ndarray:
    lo_inf, hi_inf = np.isinf(lo), np.isinf(hi)
    if np.all(lo_inf) and np.all(hi_inf):
        s = t / (1.0 - t)  # (0, inf), log-spread
        return np.where(t < 0.5, -1.0 / s, s)
    if np.all(hi_inf):
        return lo + t / (1.0 - t)
    if np.all(lo_inf):
        return hi - t / (1.0 - t)
    return lo + (hi - lo) * t


def _sample(domain: Domain, n_points: int, seed: int) -> dict:
    syms = list(domain)
    k = len(syms)
    m = int(np.floor(n_points ** (1.0 / k) + 1e-9)) if k else 0
    if k == 0:
        grid = np.zeros((1, 0))
    elif m >= 3:  # product grid with at most n_points points
        axes = np.meshgrid(*([_unit_grid(m)] * k), indexing="ij")
        grid = np.stack(axes, axis=-1).reshape(-1, k)
    else:  # too many symbols for a product grid: random points only
        grid = np.zeros((0, k))
    rng = np.random.default_rng(seed)
    extra = rng.uniform(0.0, 1.0, size=(n_points // 2, k))
    # half of the random points log-clustered towards the ends
    logt = 10.0 ** rng.uniform(-10, -0.3, size=(n_points // 4, k))
    flip = rng.random(size=logt.shape) < 0.5
    logt = np.where(flip, 1.0 - logt, logt)
    t = np.clip(np.concatenate([grid, extra, logt]), 1e-12, 1.0 - 1e-12)
    values: dict = {}
    for i, v in enumerate(syms):
        lo, hi = domain[v]
        lo_f = _eval_bound(lo, values, t.shape[0])
        hi_f = _eval_bound(hi, values, t.shape[0])
        values[v] = _map_unit(t[:, i], lo_f, hi_f)
    return values


def _eval_bound(b, values: dict, size: int) -> np.ndarray:
    b = sp.sympify(b)
    if b is sp.oo:
        return np.full(size, np.inf)
    if b is -sp.oo:
        return np.full(size, -np.inf)
    syms = sorted(b.free_symbols, key=lambda s: s.name)
    f = sp.lambdify(syms, b, "numpy")
    return np.broadcast_to(np.asarray(f(*[values[s] for s in syms]), dtype=float), (size,))


def _complete_domain(exprs: Iterable[sp.Expr], domain: Domain | None) -> tuple[dict, list[str]]:
    out = dict(domain or {})
    notes = []
    free = set().union(*(sp.sympify(e).free_symbols for e in exprs))
    for s in sorted(free - set(out), key=lambda s: s.name):
        if s.is_positive:
            out[s] = (0, sp.oo)
        elif s.is_negative:
            out[s] = (-sp.oo, 0)
        else:
            out[s] = (-sp.oo, sp.oo)
        notes.append(f"{s} not in domain, sampled on {out[s]}")
    return out, notes


def _violation(rel: str, val: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """Tolerance-normalised violation: > 0 means the relation fails beyond round-off."""
    if rel in (">0", ">=0"):
        return (-val - tol) / np.maximum(tol, 1e-300)
    if rel in ("<0", "<=0"):
        return (val - tol) / np.maximum(tol, 1e-300)
    return (np.abs(val) - tol) / np.maximum(tol, 1e-300)


def numeric_check(
    lhs: sp.Expr,
    relation: str,
    domain: Domain | None = None,
    *,
    rhs: sp.Expr = 0,
    n_points: int = 100_000,
    rtol: float = 1e-9,
    atol: float = 1e-12,
    seed: int = 0,
) -> NumericReport:
    """Check ``lhs - rhs <relation>`` on a dense float64 grid over ``domain``.

    The grid is a product grid (``floor(n_points**(1/k))`` points per symbol, clustered towards the
    ends of each interval; skipped when that is below 3) plus ``n_points/2`` uniform and ``n_points/4`` end-clustered random points
    (seeded). Round-off tolerance at a point is ``atol + rtol * scale`` where ``scale`` is the sum
    of the absolute values of the additive terms of ``lhs`` and ``rhs``, so strict and non-strict
    relations are not distinguished below it. Up to 20 of the worst violations are re-evaluated
    with 50-digit arithmetic at the exact rational point; only a confirmed one makes ``ok`` False.
    """
    if relation not in RELATIONS:
        raise ValueError(f"relation={relation!r} is unknown; allowed: {', '.join(RELATIONS)}")
    lhs, rhs = sp.sympify(lhs), sp.sympify(rhs)
    dom, notes = _complete_domain([lhs, rhs], domain)
    pts = _sample(dom, n_points, seed)
    syms = list(dom)
    args = [pts[s] for s in syms]
    terms = list(sp.Add.make_args(lhs)) + list(sp.Add.make_args(rhs))
    with np.errstate(all="ignore"):
        f = sp.lambdify(syms, lhs - rhs, "numpy")
        val = np.broadcast_to(np.asarray(f(*args), dtype=complex), args[0].shape if args else ())
        scale = np.zeros(val.shape)
        for t in terms:
            g = sp.lambdify(syms, t, "numpy")
            scale = scale + np.abs(np.broadcast_to(np.asarray(g(*args), dtype=complex), val.shape))
    real = np.isfinite(val) & (np.abs(val.imag) <= atol + rtol * scale)
    val = val.real
    n_ok = int(real.sum())
    if n_ok == 0:
        return NumericReport(
            False, 0, np.nan, {}, None, "expression not finite/real anywhere on the grid"
        )
    tol = atol + rtol * scale
    with np.errstate(all="ignore"):
        viol = np.where(real, _violation(relation, val, tol), -np.inf)
    order = np.argsort(-viol)
    worst_i = int(order[0])
    worst_point = {s.name: float(pts[s][worst_i]) for s in syms}
    counterexample = None
    for i in order[:20]:
        if viol[i] <= 0:
            break
        point = {s: sp.Rational(float(pts[s][i])) for s in syms}
        try:
            ex = complex(sp.N((lhs - rhs).subs(point), 50))
        except (TypeError, ValueError):  # not a finite number at this point
            continue
        if ex.imag != 0 or not np.isfinite(ex.real):
            continue
        ex = ex.real
        fails = {
            ">0": ex <= 0,
            ">=0": ex < -1e-40,
            "<0": ex >= 0,
            "<=0": ex > 1e-40,
            "==0": abs(ex) > 1e-30 * (1.0 + float(scale[i])),
        }[relation]
        if fails:
            counterexample = {s.name: float(pts[s][i]) for s in syms} | {"value": ex}
            break
    note = "; ".join(notes)
    return NumericReport(
        counterexample is None, n_ok, float(viol[worst_i]), worst_point, counterexample, note
    )


def _fallback_detail(rep: NumericReport, why: str) -> str:
    if rep.counterexample is not None:
        return f"{why}; numeric search found a counterexample (confirmed at 50 digits): {rep.counterexample}"
    if rep.n_points == 0:
        return f"{why}; numeric fallback could not evaluate the expression ({rep.note})"
    extra = f" [{rep.note}]" if rep.note else ""
    return (
        f"{why}; FELL BACK to a dense numeric check: no violation at {rep.n_points} float64 points "
        f"(worst normalised margin {rep.worst:.3g} at {rep.worst_point}){extra}"
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
    c = _as_claim(claim, f"{expr} {relation}")
    decided, how = decide_sign(expr, domain)
    if decided is not None and relation in _IMPLIES[decided]:
        return Result(c, True, SYMBOLIC, f"sympy: expression is {decided} ({how})")
    if decided is not None and relation in _CONTRADICTS[decided]:
        return Result(
            c, False, SYMBOLIC, f"sympy proves the opposite: expression is {decided} ({how})"
        )
    why = "sympy could not decide the sign" if decided is None else f"sympy only shows {decided}"
    if not allow_fallback:
        return Result(c, False, SYMBOLIC, why + "; numeric fallback disabled")
    rep = numeric_check(expr, relation, domain, n_points=n_points)
    return Result(c, rep.ok and rep.n_points > 0, NUMERIC_FALLBACK, _fallback_detail(rep, why))


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
    c = _as_claim(claim, f"{a} == {b}")
    sub = _assumed(domain)
    diff = (a - b).xreplace(sub)
    candidates = [("", diff)]
    if domain:
        candidates.append(("reparametrised, ", _reparametrise(a - b, domain)))
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
    return Result(c, rep.ok and rep.n_points > 0, NUMERIC_FALLBACK, _fallback_detail(rep, why))


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
    c = _as_claim(claim, f"{f} >= 0 (derivative in {var})")
    if var not in domain:
        raise ValueError(f"var={var} is not in domain; allowed: one of {list(domain)}")
    lo, hi = (sp.sympify(x) for x in domain[var])
    rest = {k: v for k, v in domain.items() if k != var}
    steps = [
        prove_equal(
            f.subs(var, at_zero),
            0,
            rest,
            claim=f"f({var}={at_zero}) = 0",
            allow_fallback=allow_fallback,
        )
    ]
    fp = sp.diff(f, var)
    if sp.simplify(at_zero - lo) == 0:
        steps.append(
            prove_sign(
                fp,
                ">=0",
                domain,
                claim=f"d/d{var} >= 0 on ({lo}, {hi})",
                allow_fallback=allow_fallback,
            )
        )
    elif sp.simplify(at_zero - hi) == 0:
        steps.append(
            prove_sign(
                fp,
                "<=0",
                domain,
                claim=f"d/d{var} <= 0 on ({lo}, {hi})",
                allow_fallback=allow_fallback,
            )
        )
    else:
        left, right = _restrict(domain, var, lo, at_zero), _restrict(domain, var, at_zero, hi)
        steps.append(
            prove_sign(
                fp,
                "<=0",
                left,
                claim=f"d/d{var} <= 0 on ({lo}, {at_zero})",
                allow_fallback=allow_fallback,
            )
        )
        steps.append(
            prove_sign(
                fp,
                ">=0",
                right,
                claim=f"d/d{var} >= 0 on ({at_zero}, {hi})",
                allow_fallback=allow_fallback,
            )
        )
    passed = all(s.passed for s in steps)
    method = SYMBOLIC if all(s.method == SYMBOLIC for s in steps) else NUMERIC_FALLBACK
    detail = "; ".join(
        f"{s.claim.name}: {'ok' if s.passed else 'FAILED'} ({s.method})" for s in steps
    )
    if not passed and allow_fallback:
        # the argument failed; say whether the statement itself is false
        rep = numeric_check(f, ">=0", domain)
        detail += "; " + (
            f"the statement itself fails: counterexample {rep.counterexample}"
            if rep.counterexample is not None
            else "no counterexample to the statement itself was found, but it is NOT proved"
        )
    return Result(c, passed, method, detail, tuple(steps))


def combine(claim: Claim | str, steps: Iterable[Result], how: str = "") -> Result:
    """A claim that follows from several sub-results: passes iff all pass; symbolic iff all are."""
    steps = tuple(steps)
    c = _as_claim(claim, str(claim))
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
    c = _as_claim(claim, f"{expr} = 0 has the unique root {var} = {expected}")
    roots = sp.solve(sp.sympify(expr), var)
    if len(roots) != 1:
        return Result(c, False, SYMBOLIC, f"sympy.solve returned {len(roots)} roots: {roots}")
    eq = prove_equal(roots[0], expected, domain, claim="solve root == expected")
    detail = f"sympy.solve returned the single root {sp.sstr(roots[0])}; " + eq.detail
    return Result(c, eq.passed, eq.method, detail, (eq,))
