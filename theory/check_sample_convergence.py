"""sympy check for theory/sample_convergence.md: the Chernoff-kl tail holds for averages of
independent, *not identically distributed* [0, 1] variables (Hoeffding 1963, Theorem 1), which is
what one fresh weight draw per bound-set example produces.

Run ``python theory/check_sample_convergence.py``; ``check()`` returns the results,
``negative_controls()`` returns deliberately wrong statements that the same machinery must reject.
"""

from __future__ import annotations

import sys

import sympy as sp

from difftrade.theory.claims import Claim, Result, run_check_script
from difftrade.theory.provers import prove_equal, prove_sign

x, lam, mu, a = sp.symbols("x lambda mu a", positive=True)
UNIT = {x: (0, 1), lam: (0, 10)}
MEAN = {mu: (0, 1), lam: (0, 10)}
ABOVE = {mu: (0, 1), a: (mu, 1)}  # the upper tail: a > mu
BERNOULLI_MGF = 1 - mu + mu * sp.exp(lam)  # E e^(lam X) for X ~ Bernoulli(mu)
LAMBDA_STAR = sp.log(a * (1 - mu) / (mu * (1 - a)))  # the Chernoff optimum, > 0 for a > mu
CHERNOFF_AT_STAR = -LAMBDA_STAR * a + sp.log(BERNOULLI_MGF.subs(lam, LAMBDA_STAR))
KL_A_MU = a * sp.log(a / mu) + (1 - a) * sp.log((1 - a) / (1 - mu))


def check() -> list[Result]:
    return [
        prove_sign(
            sp.diff(1 - x + x * sp.exp(lam) - sp.exp(lam * x), x, 2),
            "<0",
            UNIT,
            claim=Claim(
                "sc.chord_above_exponential",
                "1 - x + x e^lam - e^(lam x) is concave in x and 0 at x = 0, 1, so e^(lam x) <= 1 - x + x e^lam on [0, 1]: "
                "a [0, 1] variable's MGF is at most its mean's Bernoulli MGF",
            ),
        ),
        prove_sign(
            sp.diff(sp.log(BERNOULLI_MGF), mu, 2),
            "<=0",
            MEAN,
            claim=Claim(
                "sc.log_mgf_concave_in_mean",
                "ln(1 - mu + mu e^lam) is concave in mu, so sum_i ln(1 - mu_i + mu_i e^lam) <= n ln(1 - mubar + mubar e^lam): "
                "independent terms with different means are dominated by n Bernoulli(mubar) terms",
            ),
        ),
        prove_equal(
            sp.diff(-lam * a + sp.log(BERNOULLI_MGF), lam).subs(lam, LAMBDA_STAR),
            0,
            ABOVE,
            claim=Claim(
                "sc.chernoff_stationary",
                "lambda* = ln(a(1-mu)/(mu(1-a))) is stationary for -lam a + ln MGF(lam)",
            ),
        ),
        prove_equal(
            CHERNOFF_AT_STAR,
            -KL_A_MU,
            ABOVE,
            claim=Claim(
                "sc.chernoff_is_kl",
                "at lambda*, -lam a + ln(1 - mu + mu e^lam) = -kl(a||mu): P(mean >= a) <= exp(-n kl(a||mu)), the same tail as "
                "for i.i.d. terms, so mubar <= kl^-1(mean, ln(1/delta)/N) (per_example_convergence_bound)",
            ),
        ),
    ]


def negative_controls() -> list[Result]:
    return [
        prove_sign(
            sp.diff(sp.log(BERNOULLI_MGF), mu, 2),
            ">0",
            MEAN,
            claim=Claim(
                "wrong.log_mgf_convex_in_mean", "ln(1 - mu + mu e^lam) is convex in mu (false)"
            ),
        ),
        prove_equal(
            CHERNOFF_AT_STAR,
            -(mu * sp.log(mu / a) + (1 - mu) * sp.log((1 - mu) / (1 - a))),
            ABOVE,
            claim=Claim(
                "wrong.chernoff_is_swapped_kl",
                "the Chernoff exponent is kl(mu||a) (false: kl(a||mu))",
            ),
        ),
        prove_sign(
            sp.diff(1 - x + x * sp.exp(lam) - sp.exp(lam * x), x, 2),
            ">0",
            UNIT,
            claim=Claim(
                "wrong.chord_below_exponential",
                "1 - x + x e^lam - e^(lam x) is convex in x (false)",
            ),
        ),
    ]


if __name__ == "__main__":
    sys.exit(run_check_script(check, negative_controls))
