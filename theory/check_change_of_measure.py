"""sympy check for theory/change_of_measure.md: which argument of kl data processing bounds, and
why the exact worst case over losses is a fractional knapsack.

Run ``python theory/check_change_of_measure.py``; ``check()`` returns the results,
``negative_controls()`` returns deliberately wrong statements that the same machinery must reject.
"""

from __future__ import annotations

import sys

import sympy as sp

from difftrade.theory.claims import Claim, Result, run_check_script
from difftrade.theory.provers import prove_equal, prove_sign

q, p, e1, e2, eps, r1, r2 = sp.symbols("q p e1 e2 epsilon rho1 rho2", positive=True)
T = sp.symbols("t1:4", positive=True)  # target weights of three components
S = sp.symbols("s1:4", positive=True)  # training weights (all covered)
R = sp.symbols("R1:4", positive=True)  # per-component risks
B = sp.Symbol("B", positive=True)  # any positive scale, e.g. max t/s
TARGET_RISK = sum(t * r for t, r in zip(T, R))


def kl(a, b):
    """Binary kl(a || b)."""
    return a * sp.log(a / b) + (1 - a) * sp.log((1 - a) / (1 - b))


ABOVE = {p: (0, 1), q: (p, 1)}  # p < q < 1: where sup{q : kl(q||p) <= c} searches
HALF, NINETY_NINE = sp.Rational(1, 2), sp.Rational(99, 100)
ORDER = q * (1 - p) - p * (1 - q)  # the sign of d/dq kl(q||p) = ln(q(1-p) / (p(1-q)))
SWAP_GAP = kl(HALF, NINETY_NINE) - kl(
    NINETY_NINE, HALF
)  # kl(R_S||R_T) - KL(T||S) in the two-atom example


def check() -> list[Result]:
    return [
        prove_equal(
            sp.diff(kl(q, p), q),
            sp.log(q * (1 - p) / (p * (1 - q))),
            ABOVE,
            claim=Claim("com.kl_first_derivative", "d/dq kl(q||p) = ln(q(1-p) / (p(1-q)))"),
        ),
        prove_sign(
            ORDER,
            ">0",
            ABOVE,
            claim=Claim(
                "com.kl_first_increasing",
                "q(1-p) > p(1-q) for p < q, so d/dq kl(q||p) > 0: kl(q||p) <= c is an interval [p, q_max] "
                "and bisection finds q_max (kl_inv_reverse)",
            ),
        ),
        prove_equal(
            kl(NINETY_NINE, HALF),
            sp.Rational(99, 100) * sp.log(sp.Rational(99, 50))
            + sp.Rational(1, 100) * sp.log(sp.Rational(1, 50)),
            None,
            claim=Claim(
                "com.two_atoms_tight",
                "t = (0.99, 0.01), s = (0.5, 0.5), loss = 1 on atom 1: KL(T||S) = kl(R_T||R_S) = kl(0.99||0.5), "
                "so data processing holds with equality",
            ),
        ),
        prove_sign(
            SWAP_GAP,
            ">0",
            None,
            claim=Claim(
                "com.swapped_inverse_fails",
                "kl(0.5||0.99) > KL(T||S): the true R_T = 0.99 lies outside {q : kl(R_S||q) <= KL}, so "
                "sup of that set (kl_inv(R_S, KL)) is below R_T and is not a bound",
            ),
        ),
        prove_equal(
            (r1 * (e1 + eps) + r2 * (e2 - eps)) - (r1 * e1 + r2 * e2),
            eps * (r1 - r2),
            None,
            claim=Claim(
                "com.knapsack_exchange",
                "moving S-error mass eps from an atom of ratio rho2 to one of ratio rho1 changes R_T by "
                "eps(rho1 - rho2): filling atoms in decreasing T/S is optimal (lp_shift_bound)",
            ),
        ),
        prove_equal(
            B * sum(s_ * (t / s_ / B) * r for t, s_, r in zip(T, S, R)),
            TARGET_RISK,
            None,
            claim=Claim(
                "com.importance_weighting_unbiased",
                "B E_S[(t_L/s_L)/B * loss] = sum_l t_l R_l for mixtures of the same components: the weighted "
                "training loss certifies the target risk (change_of_measure.importance_weights)",
            ),
        ),
    ]


def negative_controls() -> list[Result]:
    return [
        prove_equal(
            kl(q, p),
            kl(p, q),
            ABOVE,
            claim=Claim("wrong.kl_symmetric", "kl(q||p) = kl(p||q) (false)"),
        ),
        prove_sign(
            SWAP_GAP,
            "<=0",
            None,
            claim=Claim(
                "wrong.swapped_inverse_is_a_bound", "kl(0.5||0.99) <= kl(0.99||0.5) (false)"
            ),
        ),
        prove_sign(
            ORDER,
            "<0",
            ABOVE,
            claim=Claim("wrong.kl_first_decreasing", "kl(q||p) decreases in q above p (false)"),
        ),
        prove_equal(
            sum(s_ * (s_ / t) * r for t, s_, r in zip(T, S, R)),
            TARGET_RISK,
            None,
            claim=Claim(
                "wrong.importance_weights_inverted",
                "weighting by s/t recovers the target risk (false)",
            ),
        ),
    ]


if __name__ == "__main__":
    sys.exit(run_check_script(check, negative_controls))
