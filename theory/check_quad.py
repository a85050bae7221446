"""sympy check for theory/quad.md: the quad bound dominates the kl bound.

Run ``python theory/check_quad.py``; ``check()`` returns the results, ``negative_controls()``
returns deliberately wrong statements that the same machinery must reject.
"""

from __future__ import annotations

import sys

import sympy as sp

from difftrade.theory.claims import Claim, Result, run_check_script
from difftrade.theory.provers import prove_equal, prove_nonnegative_by_derivative, prove_sign

q, p, c, t = sp.symbols("q p c t", positive=True)
KL = q * sp.log(q / p) + (1 - q) * sp.log((1 - q) / (1 - p))
UPPER = {q: (0, 1), p: (q, 1)}
QC = {q: (0, 1), c: (0, sp.oo)}
P_PLUS = q + c + sp.sqrt(c**2 + 2 * q * c)  # larger root of (p-q)^2 = 2cp
QUAD = (sp.sqrt(q + c / 2) + sp.sqrt(c / 2)) ** 2  # the quad bound with c = B/n
CROSS = sp.Rational(1, 4) - sp.sqrt(2 * c) / 2  # quad = Pinsker where 2q + sqrt(2c) = 1/2


def check() -> list[Result]:
    lower = (p - q) ** 2 / (2 * p)
    return [
        prove_equal(
            sp.diff(KL - lower, p),
            (p - q) * (p**2 + p * q + p - q) / (2 * p**2 * (1 - p)),
            UPPER,
            claim=Claim(
                "quad.derivative",
                "d/dp [kl(q||p) - (p-q)^2/(2p)] = (p-q)(p^2 + pq + p - q) / (2p^2 (1-p))",
            ),
        ),
        prove_nonnegative_by_derivative(
            KL - lower,
            p,
            UPPER,
            at_zero=q,
            claim=Claim("quad.kl_lower_bound", "kl(q||p) >= (p-q)^2/(2p) for 0 < q <= p < 1"),
        ),
        prove_nonnegative_by_derivative(
            -sp.log(1 - p) - p / 2,
            p,
            {p: (0, 1)},
            at_zero=0,
            claim=Claim(
                "quad.q_zero", "kl(0||p) = -ln(1-p) >= p/2 = (p-0)^2/(2p) (the edge q = 0)"
            ),
        ),
        prove_equal(
            ((p - q) ** 2 - 2 * c * p).subs(p, P_PLUS),
            0,
            QC,
            claim=Claim(
                "quad.root",
                "p+ = q + c + sqrt(c^2 + 2qc) solves (p-q)^2 = 2cp (the larger root)",
            ),
        ),
        prove_equal(
            P_PLUS,
            QUAD,
            QC,
            claim=Claim("quad.closed_form", "p+ = (sqrt(q + c/2) + sqrt(c/2))^2, the quad bound"),
        ),
        prove_sign(
            ((p - q) ** 2 - 2 * c * p).subs(p, P_PLUS + t),
            ">0",
            QC | {t: (0, sp.oo)},
            claim=Claim(
                "quad.dominates_kl_bound",
                "for p > p+: (p-q)^2/(2p) > c, hence kl(q||p) > c and kl^-1(q, c) <= p+",
            ),
        ),
        prove_sign(
            QUAD - (q + sp.sqrt(c / 2)),
            "<=0",
            {c: (0, sp.Rational(1, 8)), q: (0, CROSS)},
            claim=Claim(
                "quad.tighter_than_pinsker",
                "quad <= Pinsker (q + sqrt(c/2)) when 2q + sqrt(2c) <= 1/2",
                expected_method="numeric-fallback",
            ),
        ),
        prove_sign(
            QUAD - (q + sp.sqrt(c / 2)),
            ">=0",
            {c: (0, sp.Rational(1, 8)), q: (CROSS, 1)},
            claim=Claim(
                "quad.looser_than_pinsker",
                "quad >= Pinsker when 2q + sqrt(2c) >= 1/2 (c < 1/8; for c >= 1/8 always)",
                expected_method="numeric-fallback",
            ),
        ),
    ]


def negative_controls() -> list[Result]:
    return [
        prove_nonnegative_by_derivative(
            KL - (p - q) ** 2 / p,
            p,
            UPPER,
            at_zero=q,
            claim=Claim(
                "wrong.quad_constant", "kl(q||p) >= (p-q)^2/p (false: the constant is 1/2)"
            ),
        ),
        prove_equal(
            ((p - q) ** 2 - 2 * c * p).subs(p, q + c + sp.sqrt(c**2 + q * c)),
            0,
            QC,
            claim=Claim("wrong.quad_root", "q + c + sqrt(c^2 + qc) solves (p-q)^2 = 2cp (false)"),
        ),
    ]


if __name__ == "__main__":
    sys.exit(run_check_script(check, negative_controls))
