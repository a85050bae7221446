"""The dense float64 check the provers fall back on when sympy cannot decide a claim.

:func:`numeric_check` evaluates ``lhs - rhs <relation>`` on a grid over the domain (product grid
plus seeded random points, clustered towards the ends of each interval), and re-evaluates the
worst violations with 50-digit arithmetic at the exact rational point: only a confirmed
counterexample rejects the claim. Domains are as in :mod:`difftrade.theory.signs`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import sympy as sp

from difftrade.theory.signs import RELATIONS, Domain


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


def fallback_detail(rep: NumericReport, why: str) -> str:
    """The ``detail`` text of a :class:`~difftrade.theory.claims.Result` decided by the numeric
    fallback: ``why`` (the reason sympy gave up) followed by what the numeric check of ``rep``
    found, a counterexample, no evaluable point, or the number of points checked and the
    worst normalised margin."""
    if rep.counterexample is not None:
        return f"{why}; numeric search found a counterexample (confirmed at 50 digits): {rep.counterexample}"
    if rep.n_points == 0:
        return f"{why}; numeric fallback could not evaluate the expression ({rep.note})"
    extra = f" [{rep.note}]" if rep.note else ""
    return (
        f"{why}; FELL BACK to a dense numeric check: no violation at {rep.n_points} float64 points "
        f"(worst normalised margin {rep.worst:.3g} at {rep.worst_point}){extra}"
    )
