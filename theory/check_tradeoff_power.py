"""sympy check for theory/tradeoff_power.md: R(d, n) = sqrt(c d / n) + a / d.

Derives d*(n) = (2a)^(2/3) (n/c)^(1/3), shows it is the unique global minimiser and that
dd*/dn > 0 (d* grows like n^(1/3)).

Run ``python theory/check_tradeoff_power.py``; ``check()`` returns the results,
``negative_controls()`` returns deliberately wrong statements that must be rejected.
"""

from __future__ import annotations

import sys

import sympy as sp

from difftrade.theory.claims import Claim, Result, run_check_script
from difftrade.theory.provers import prove_equal, prove_sign, prove_unique_root

d, n, c, a = sp.symbols("d n c a", positive=True)
RISK = sp.sqrt(c * d / n) + a / d
R_D = sp.diff(RISK, d)
PHI = sp.sqrt(c / n) * d ** sp.Rational(3, 2) / 2 - a  # d^2 R_d: same sign as R_d
D_STAR = (2 * a) ** sp.Rational(2, 3) * (n / c) ** sp.Rational(1, 3)


def check() -> list[Result]:
    return [
        prove_equal(
            R_D,
            PHI / d**2,
            claim=Claim("power.stationarity", "dR/dd = (sqrt(c/n) d^(3/2) / 2 - a) / d^2"),
        ),
        prove_sign(
            sp.diff(PHI, d),
            ">0",
            claim=Claim(
                "power.unique_minimum",
                "d^2 dR/dd is increasing in d (from -a at d=0 to +inf): one sign change - to +, "
                "so the stationary point is the unique global minimiser on d > 0",
            ),
        ),
        prove_unique_root(
            R_D,
            d,
            D_STAR,
            claim=Claim("power.d_star", "sympy derives d*(n) = (2a)^(2/3) (n/c)^(1/3)"),
        ),
        prove_equal(R_D.subs(d, D_STAR), 0, claim=Claim("power.stationary", "dR/dd = 0 at d*")),
        prove_sign(sp.diff(D_STAR, n), ">0", claim=Claim("power.increasing", "dd*/dn > 0")),
        prove_equal(
            n * sp.diff(D_STAR, n) / D_STAR,
            sp.Rational(1, 3),
            claim=Claim("power.cube_root", "n (dd*/dn) / d* = 1/3: d* is proportional to n^(1/3)"),
        ),
        prove_equal(
            sp.sqrt(c * D_STAR / n),
            2 * a / D_STAR,
            claim=Claim(
                "power.gap_balance",
                "at d*, the generalisation term sqrt(c d/n) is exactly twice the extrapolation term a/d",
            ),
        ),
        prove_equal(
            RISK.subs(d, D_STAR),
            3 * a ** sp.Rational(1, 3) * (c / n) ** sp.Rational(1, 3) / 2 ** sp.Rational(2, 3),
            claim=Claim(
                "power.optimal_risk",
                "R(d*, n) = 3 a^(1/3) (c/n)^(1/3) / 2^(2/3): decays like n^(-1/3)",
            ),
        ),
    ]


def negative_controls() -> list[Result]:
    return [
        prove_sign(
            sp.diff(D_STAR, n), "<0", claim=Claim("wrong.power_decreasing", "dd*/dn < 0 (false)")
        ),
        prove_equal(
            n * sp.diff(D_STAR, n) / D_STAR,
            sp.Rational(1, 2),
            claim=Claim("wrong.power_sqrt", "d* is proportional to n^(1/2) (false)"),
        ),
        prove_equal(
            R_D.subs(d, (a * n / c) ** sp.Rational(1, 3)),
            0,
            claim=Claim("wrong.power_d_star", "(a n / c)^(1/3) is stationary (false)"),
        ),
    ]


if __name__ == "__main__":
    sys.exit(run_check_script(check, negative_controls))
