"""sympy check for theory/lambda_bound.md: the optimal lambda of the lambda-bound
(Thiemann et al. 2017), its second-order condition, and its optimal value (= the quad bound).

Run ``python theory/check_lambda_bound.py``; ``check()`` returns the results,
``negative_controls()`` returns deliberately wrong statements that must be rejected.
"""

from __future__ import annotations

import sys

import sympy as sp

from difftrade.theory.claims import Claim, Result, run_check_script
from difftrade.theory.provers import prove_equal, prove_sign

lam, Lhat, beta = sp.symbols("lambda Lhat beta", positive=True)  # beta = B/n
DOM = {Lhat: (0, 1), beta: (0, sp.oo)}
BOUND = Lhat / (1 - lam / 2) + beta / (lam * (1 - lam / 2))  # the lambda-bound, B/n = beta
QUADRATIC = Lhat * lam**2 + 2 * beta * lam - 2 * beta  # numerator of dBOUND/dlambda (up to 2)
LAM_STAR = 2 / (1 + sp.sqrt(1 + 2 * Lhat / beta))
LAM_MINUS = (-beta - sp.sqrt(beta**2 + 2 * Lhat * beta)) / Lhat  # the other root
QUAD = (sp.sqrt(Lhat + beta / 2) + sp.sqrt(beta / 2)) ** 2


def check() -> list[Result]:
    return [
        prove_equal(
            sp.diff(BOUND, lam),
            2 * QUADRATIC / (lam**2 * (2 - lam) ** 2),
            DOM | {lam: (0, 2)},
            claim=Claim(
                "lambda.derivative",
                "dB/dlambda = 2(Lhat lambda^2 + 2 beta lambda - 2 beta) / (lambda^2 (2-lambda)^2)",
            ),
        ),
        prove_equal(
            QUADRATIC.subs(lam, LAM_STAR),
            0,
            DOM,
            claim=Claim(
                "lambda.stationary",
                "lambda* = 2 / (1 + sqrt(1 + 2 n Lhat / B)) is a root of the derivative",
            ),
        ),
        prove_equal(
            sp.expand(LAM_STAR * LAM_MINUS),
            -2 * beta / Lhat,
            DOM,
            claim=Claim(
                "lambda.vieta",
                "the two roots multiply to -2 beta / Lhat < 0 (Vieta), so lambda* is the only positive one",
            ),
        ),
        prove_sign(LAM_MINUS, "<0", DOM, claim=Claim("lambda.other_root_negative", "lambda- < 0")),
        prove_sign(LAM_STAR, ">0", DOM, claim=Claim("lambda.positive", "lambda* > 0")),
        prove_sign(
            1 - LAM_STAR,
            ">0",
            DOM,
            claim=Claim(
                "lambda.below_one",
                "lambda* < 1 for Lhat > 0 (lambda* = 1 at Lhat = 0), so in (0, 2)",
            ),
        ),
        prove_sign(
            Lhat * (lam - LAM_STAR) * (lam - LAM_MINUS),
            "<0",
            DOM | {lam: (0, LAM_STAR)},
            claim=Claim("lambda.decreasing_before", "dB/dlambda < 0 on (0, lambda*)"),
        ),
        prove_sign(
            Lhat * (lam - LAM_STAR) * (lam - LAM_MINUS),
            ">0",
            DOM | {lam: (LAM_STAR, 2)},
            claim=Claim(
                "lambda.increasing_after",
                "dB/dlambda > 0 on (lambda*, 2): lambda* is the global minimiser",
            ),
        ),
        prove_equal(
            sp.expand(Lhat * (lam - LAM_STAR) * (lam - LAM_MINUS)),
            QUADRATIC,
            DOM,
            claim=Claim(
                "lambda.factorisation", "Lhat (lambda - lambda*)(lambda - lambda-) = the quadratic"
            ),
        ),
        prove_sign(
            sp.diff(BOUND, lam, 2).subs(lam, LAM_STAR),
            ">0",
            DOM,
            claim=Claim("lambda.second_order", "d2B/dlambda2 > 0 at lambda*"),
        ),
        prove_equal(
            BOUND.subs(lam, LAM_STAR),
            Lhat + beta + sp.sqrt(beta**2 + 2 * Lhat * beta),
            DOM,
            claim=Claim(
                "lambda.optimal_value", "B(lambda*) = Lhat + B/n + sqrt((B/n)^2 + 2 Lhat B/n)"
            ),
        ),
        prove_equal(
            BOUND.subs(lam, LAM_STAR),
            QUAD,
            DOM,
            claim=Claim(
                "lambda.equals_quad",
                "the optimised lambda-bound equals the quad bound (sqrt(Lhat + B/2n) + sqrt(B/2n))^2",
            ),
        ),
    ]


def negative_controls() -> list[Result]:
    return [
        prove_equal(
            QUADRATIC.subs(lam, 1 / (1 + sp.sqrt(1 + 2 * Lhat / beta))),
            0,
            DOM,
            claim=Claim(
                "wrong.lambda_star", "1 / (1 + sqrt(1 + 2 n Lhat / B)) is stationary (false)"
            ),
        ),
        prove_sign(
            sp.diff(BOUND, lam, 2).subs(lam, LAM_STAR),
            "<0",
            DOM,
            claim=Claim("wrong.lambda_maximum", "lambda* is a maximum: d2B/dlambda2 < 0 (false)"),
        ),
        prove_equal(
            BOUND.subs(lam, LAM_STAR),
            Lhat + sp.sqrt(beta / 2),
            DOM,
            claim=Claim(
                "wrong.lambda_is_pinsker", "the optimised lambda-bound equals Pinsker (false)"
            ),
        ),
    ]


if __name__ == "__main__":
    sys.exit(run_check_script(check, negative_controls))
