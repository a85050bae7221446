"""sympy check for theory/pinsker.md: the Pinsker relaxation dominates the kl bound.

Run ``python theory/check_pinsker.py``; ``check()`` returns the results, ``negative_controls()``
returns deliberately wrong statements that the same machinery must reject.
"""

from __future__ import annotations

import sys

import sympy as sp

from difftrade.theory.claims import Claim, Result, run_check_script
from difftrade.theory.provers import prove_equal, prove_nonnegative_by_derivative, prove_sign

q, p, c, t = sp.symbols("q p c t", positive=True)
KL = q * sp.log(q / p) + (1 - q) * sp.log((1 - q) / (1 - p))  # binary kl(q || p)
UPPER = {q: (0, 1), p: (q, 1)}  # 0 < q < p < 1: the side kl^-1 searches
BOTH = {q: (0, 1), p: (0, 1)}


def check() -> list[Result]:
    gap = KL - 2 * (p - q) ** 2
    return [
        prove_equal(
            sp.diff(gap, p),
            -(p - q) * (2 * p - 1) ** 2 / (p * (p - 1)),
            UPPER,
            claim=Claim(
                "pinsker.derivative",
                "d/dp [kl(q||p) - 2(p-q)^2] = -(p-q)(2p-1)^2 / (p(p-1))",
            ),
        ),
        prove_nonnegative_by_derivative(
            gap,
            p,
            UPPER,
            at_zero=q,
            claim=Claim(
                "pinsker.upper_side",
                "kl(q||p) >= 2(p-q)^2 for 0 < q <= p < 1 (zero at p=q, derivative >= 0)",
            ),
        ),
        prove_nonnegative_by_derivative(
            gap,
            p,
            BOTH,
            at_zero=q,
            claim=Claim(
                "pinsker.both_sides",
                "kl(q||p) >= 2(p-q)^2 for all 0 < p, q < 1 (derivative <= 0 below q, >= 0 above)",
            ),
        ),
        prove_nonnegative_by_derivative(
            -sp.log(1 - p) - 2 * p**2,
            p,
            {p: (0, 1)},
            at_zero=0,
            claim=Claim(
                "pinsker.q_zero", "kl(0||p) = -ln(1-p) >= 2p^2 on 0 < p < 1 (the edge q = 0)"
            ),
        ),
        prove_sign(
            (2 * (p - q) ** 2 - c).subs(p, q + sp.sqrt(c / 2) + t),
            ">0",
            {q: (0, 1), c: (0, sp.oo), t: (0, sp.oo)},
            claim=Claim(
                "pinsker.dominates_kl_bound",
                "for p > q + sqrt(c/2): 2(p-q)^2 > c, hence kl(q||p) > c and "
                "kl^-1(q, c) <= q + sqrt(c/2) (with c = B/n: L <= L_hat + sqrt(B/(2n)))",
            ),
        ),
    ]


def negative_controls() -> list[Result]:
    return [
        prove_nonnegative_by_derivative(
            KL - 3 * (p - q) ** 2,
            p,
            UPPER,
            at_zero=q,
            claim=Claim(
                "wrong.pinsker_constant_3", "kl(q||p) >= 3(p-q)^2 (false: the constant is 2)"
            ),
        ),
        prove_sign(
            KL - 3 * (p - q) ** 2,
            ">=0",
            UPPER,
            claim=Claim("wrong.pinsker_constant_3_direct", "kl(q||p) - 3(p-q)^2 >= 0 (false)"),
        ),
        prove_sign(
            (2 * (p - q) ** 2 - c).subs(p, q + sp.sqrt(c) / 2 + t),
            ">0",
            {q: (0, 1), c: (0, sp.oo), t: (0, sp.oo)},
            claim=Claim("wrong.pinsker_radius", "p > q + sqrt(c)/2 implies 2(p-q)^2 > c (false)"),
        ),
    ]


if __name__ == "__main__":
    sys.exit(run_check_script(check, negative_controls))
