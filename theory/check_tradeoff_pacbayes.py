"""sympy check for theory/tradeoff_pacbayes.md: the PAC-Bayes-shaped family
G(d, n) = sqrt((c d + ln(2 sqrt(n) / delta)) / (2n)) + a / d.

Stationarity is a quartic in d (no useful closed form), so d*(n) is characterised implicitly:
the quartic has exactly one positive root, that root is the global minimiser, and implicit
differentiation of the quartic gives dd*/dn > 0.

Run ``python theory/check_tradeoff_pacbayes.py``; ``check()`` returns the results,
``negative_controls()`` returns deliberately wrong statements that must be rejected.
"""

from __future__ import annotations

import sys

import sympy as sp

from difftrade.theory.claims import Claim, Result, run_check_script
from difftrade.theory.provers import prove_equal, prove_sign

d, n, c, a, delta, t = sp.symbols("d n c a delta t", positive=True)
DOM = {delta: (0, 1), n: (1, sp.oo)}  # a confidence level below 1 and at least one example
LOG_TERM = sp.log(2 * sp.sqrt(n) / delta)  # ln(2 sqrt(n)/delta), the KL-free part of B
U = c * d + LOG_TERM  # B = c d + ln(2 sqrt(n)/delta)
GEN = sp.sqrt(U / (2 * n))  # the generalisation term
RISK = GEN + a / d
G_D = sp.diff(RISK, d)
QUARTIC = c**2 * d**4 - 8 * a**2 * n * U  # G_d = 0  <=>  QUARTIC = 0 (d > 0)
A_AT_ROOT = c * d**2 / (4 * n * GEN)  # the a for which a given d is the stationary point


def check() -> list[Result]:
    h_d, h_n = sp.diff(QUARTIC, d), sp.diff(QUARTIC, n)
    return [
        prove_sign(
            LOG_TERM,
            ">0",
            DOM,
            claim=Claim("pacbayes.log_positive", "ln(2 sqrt(n)/delta) > 0 for n >= 1, delta < 1"),
        ),
        prove_equal(
            G_D,
            (c * d**2 - 4 * a * n * GEN) / (4 * n * GEN * d**2),
            DOM,
            claim=Claim(
                "pacbayes.stationarity",
                "dG/dd = (c d^2 - 4 a n g) / (4 n g d^2), g the generalisation term",
            ),
        ),
        prove_equal(
            (c * d**2 - 4 * a * n * GEN) * (c * d**2 + 4 * a * n * GEN),
            QUARTIC,
            DOM,
            claim=Claim(
                "pacbayes.quartic",
                "(c d^2 - 4ang)(c d^2 + 4ang) = c^2 d^4 - 8 a^2 n (c d + ln(2 sqrt(n)/delta)) =: h(d); "
                "the second factor is > 0, so sign(dG/dd) = sign(h)",
            ),
        ),
        prove_sign(
            QUARTIC.subs(d, 0),
            "<0",
            DOM,
            claim=Claim(
                "pacbayes.quartic_negative_at_zero", "h(0) = -8 a^2 n ln(2 sqrt(n)/delta) < 0"
            ),
        ),
        prove_sign(
            sp.diff(QUARTIC, d, 2),
            ">0",
            DOM,
            claim=Claim(
                "pacbayes.quartic_convex",
                "h''(d) = 12 c^2 d^2 > 0: h is convex with h(0) < 0 and h -> oo, so it has exactly one "
                "positive root d*(n); G decreases before it and increases after (global minimiser)",
            ),
        ),
        prove_equal(
            QUARTIC.subs(a, A_AT_ROOT),
            0,
            DOM,
            claim=Claim(
                "pacbayes.root_parametrisation",
                "every (d, n, c, delta) is the root for exactly one a = c d^2 / (4 n g); "
                "substituting it parametrises all roots",
            ),
        ),
        prove_sign(
            h_n,
            "<0",
            DOM,
            claim=Claim("pacbayes.h_n", "dh/dn = -8 a^2 (c d + ln(2 sqrt(n)/delta) + 1/2) < 0"),
        ),
        prove_sign(
            h_d.subs(a, A_AT_ROOT),
            ">0",
            DOM,
            claim=Claim("pacbayes.h_d_at_root", "dh/dd > 0 at the root (h crosses zero upwards)"),
        ),
        prove_sign(
            (-h_n / h_d).subs(a, A_AT_ROOT),
            ">0",
            DOM,
            claim=Claim(
                "pacbayes.increasing",
                "implicit differentiation of h(d*(n), n) = 0: dd*/dn = -h_n / h_d > 0",
            ),
        ),
        prove_equal(
            sp.limit(LOG_TERM / n ** sp.Rational(1, 3), n, sp.oo),
            0,
            claim=Claim(
                "pacbayes.asymptotics",
                "ln(2 sqrt(n)/delta) / n^(1/3) -> 0, so h(t n^(1/3))/n^(4/3) -> c^2 t^4 - 8 a^2 c t and "
                "d*(n) ~ 2 (a^2 n / c)^(1/3): the same n^(1/3) growth as the power family",
            ),
        ),
    ]


def negative_controls() -> list[Result]:
    h_d, h_n = sp.diff(QUARTIC, d), sp.diff(QUARTIC, n)
    return [
        prove_sign(h_n, ">0", DOM, claim=Claim("wrong.pacbayes_h_n", "dh/dn > 0 (false)")),
        prove_sign(
            (-h_n / h_d).subs(a, A_AT_ROOT),
            "<0",
            DOM,
            claim=Claim("wrong.pacbayes_decreasing", "dd*/dn < 0 (false)"),
        ),
        prove_equal(
            QUARTIC.subs(a, c * d**2 / (2 * n * GEN)),
            0,
            DOM,
            claim=Claim("wrong.pacbayes_root", "a = c d^2 / (2 n g) makes d stationary (false)"),
        ),
    ]


if __name__ == "__main__":
    sys.exit(run_check_script(check, negative_controls))
