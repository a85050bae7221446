"""sympy check for theory/tradeoff_exponential.md: R(d, n) = sqrt(c e^(kd) / n) + a e^(-bd).

Derives d*(n) = ln(2ab sqrt(n) / (k sqrt(c))) / (b + k/2), shows R is convex in d (so d* is the
unique global minimiser) and dd*/dn = 1 / ((2b + k) n) > 0: d* grows like ln(n) / (2b + k).

Run ``python theory/check_tradeoff_exponential.py``; ``check()`` returns the results,
``negative_controls()`` returns deliberately wrong statements that must be rejected.
"""

from __future__ import annotations

import sys

import sympy as sp

from difftrade.theory.claims import Claim, Result, run_check_script
from difftrade.theory.provers import prove_equal, prove_sign, prove_unique_root

d, n, c, a, b, k = sp.symbols("d n c a b k", positive=True)
RISK = sp.sqrt(c * sp.exp(k * d) / n) + a * sp.exp(-b * d)
R_D = sp.diff(RISK, d)
D_REAL = sp.Symbol("d", real=True)  # d* can be negative for small n; solve on the real line
D_STAR = sp.log(2 * a * b * sp.sqrt(n) / (k * sp.sqrt(c))) / (b + k / 2)


def check() -> list[Result]:
    return [
        prove_sign(
            sp.diff(RISK, d, 2),
            ">0",
            claim=Claim(
                "exponential.convex",
                "d2R/dd2 > 0 for every d: R is strictly convex, so a stationary point is the unique "
                "global minimiser",
            ),
        ),
        prove_unique_root(
            R_D.subs(d, D_REAL),
            D_REAL,
            D_STAR,
            claim=Claim(
                "exponential.d_star",
                "sympy derives d*(n) = ln(2ab sqrt(n) / (k sqrt(c))) / (b + k/2) (d real)",
            ),
        ),
        prove_equal(
            R_D.subs(d, D_STAR), 0, claim=Claim("exponential.stationary", "dR/dd = 0 at d*")
        ),
        prove_equal(
            sp.diff(D_STAR, n),
            1 / ((2 * b + k) * n),
            claim=Claim("exponential.derivative", "dd*/dn = 1 / ((2b + k) n)"),
        ),
        prove_sign(sp.diff(D_STAR, n), ">0", claim=Claim("exponential.increasing", "dd*/dn > 0")),
        prove_equal(
            n * sp.diff(D_STAR, n),
            1 / (2 * b + k),
            claim=Claim(
                "exponential.log_slope",
                "dd*/d(ln n) = 1/(2b + k): d* = (ln(n)/2 + const) / (b + k/2)",
            ),
        ),
        prove_equal(
            (sp.sqrt(c * sp.exp(k * d) / n) / (a * sp.exp(-b * d))).subs(d, D_STAR),
            2 * b / k,
            claim=Claim(
                "exponential.gap_balance",
                "at d*, generalisation term / extrapolation term = 2b/k",
            ),
        ),
    ]


def negative_controls() -> list[Result]:
    return [
        prove_sign(
            sp.diff(D_STAR, n),
            "<0",
            claim=Claim("wrong.exponential_decreasing", "dd*/dn < 0 (false)"),
        ),
        prove_equal(
            n * sp.diff(D_STAR, n),
            1 / (b + k / 2),
            claim=Claim(
                "wrong.exponential_log_slope",
                "dd*/d(ln n) = 1/(b + k/2) (false: a literal reading of 'd* ~ ln n/(b + k/2)'; "
                "the slope is half that)",
            ),
        ),
    ]


if __name__ == "__main__":
    sys.exit(run_check_script(check, negative_controls))
