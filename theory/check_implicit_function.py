"""sympy check for theory/implicit_function.md: why the optimum moves harder.

General argument: if R_d(d*(n), n) = 0 for all n, then dd*/dn = -R_dn / R_dd, which is > 0
when R_dd > 0 (second-order condition) and R_dn < 0 (more data helps harder data more). For
R = sqrt(C(d)/n) + E(d), R_dn = -C'(d) / (4 sqrt(C(d)) n^(3/2)) < 0 whenever C' > 0. Then the
hypotheses are verified for each closed-form family, and the implicit formula is compared with
the direct derivative of d*(n) where one exists.

Run ``python theory/check_implicit_function.py``; ``check()`` returns the results,
``negative_controls()`` returns deliberately wrong statements that must be rejected.
"""

from __future__ import annotations

import sys

import sympy as sp

from difftrade.theory.claims import Claim, Result, run_check_script
from difftrade.theory.provers import prove_equal, prove_sign

d, n, c, a, b, k, delta = sp.symbols("d n c a b k delta", positive=True)
R_DD, R_DN = sp.symbols("R_dd R_dn", real=True)
C_VAL, C_PRIME = sp.symbols("C C_prime", positive=True)

# the three families (see the tradeoff_*.md notes)
POWER = sp.sqrt(c * d / n) + a / d
POWER_D_STAR = (2 * a) ** sp.Rational(2, 3) * (n / c) ** sp.Rational(1, 3)
EXPO = sp.sqrt(c * sp.exp(k * d) / n) + a * sp.exp(-b * d)
EXPO_D_STAR = sp.log(2 * a * b * sp.sqrt(n) / (k * sp.sqrt(c))) / (b + k / 2)
PAC_DOM = {delta: (0, 1), n: (1, sp.oo)}
PAC_GEN = sp.sqrt((c * d + sp.log(2 * sp.sqrt(n) / delta)) / (2 * n))
PAC = PAC_GEN + a / d
PAC_A_AT_ROOT = c * d**2 / (4 * n * PAC_GEN)  # stationary point of PAC at d <=> a = this
PAC_QUARTIC = c**2 * d**4 - 8 * a**2 * n * (c * d + sp.log(2 * sp.sqrt(n) / delta))


def implicit_derivative() -> sp.Expr:
    """dd*/dn obtained by differentiating F(d*(n), n) = 0 with F = R_d a generic function."""
    F = sp.Function("F")  # F(x, n) = dR/dd (x, n)
    d_star = sp.Function("d_star")(n)
    total = sp.diff(F(d_star, n), n)
    (f_n,) = total.atoms(sp.Subs)  # partial in n at (d*, n)
    f_x = sp.Derivative(F(d_star, n), d_star)  # partial in the first argument at (d*, n)
    (slope,) = sp.solve(total, sp.Derivative(d_star, n))
    return slope.xreplace({f_x: R_DD, f_n: R_DN})


def _family(name: str, risk: sp.Expr, d_star: sp.Expr) -> list[Result]:
    r_dd, r_dn = sp.diff(risk, d, 2), sp.diff(risk, d, n)
    return [
        prove_sign(
            r_dd.subs(d, d_star),
            ">0",
            claim=Claim(f"implicit.{name}.second_order", f"{name}: R_dd(d*) > 0"),
        ),
        prove_sign(
            r_dn,
            "<0",
            claim=Claim(f"implicit.{name}.cross_partial", f"{name}: R_dn < 0 for every d"),
        ),
        prove_equal(
            (-r_dn / r_dd).subs(d, d_star),
            sp.diff(d_star, n),
            claim=Claim(
                f"implicit.{name}.consistent",
                f"{name}: -R_dn/R_dd at d* equals the derivative of the closed-form d*(n)",
            ),
        ),
    ]


def check() -> list[Result]:
    C, E = sp.Function("C", positive=True), sp.Function("E")
    generic = sp.sqrt(C(d) / n) + E(d)
    generic_dn = sp.diff(generic, d, n)
    g_dd, g_dn = sp.diff(PAC, d, 2), sp.diff(PAC, d, n)
    h_d, h_n = sp.diff(PAC_QUARTIC, d), sp.diff(PAC_QUARTIC, n)
    return [
        prove_equal(
            implicit_derivative(),
            -R_DN / R_DD,
            claim=Claim(
                "implicit.theorem",
                "differentiating R_d(d*(n), n) = 0 in n gives dd*/dn = -R_dn / R_dd",
            ),
        ),
        prove_sign(
            -R_DN / R_DD,
            ">0",
            {R_DD: (0, sp.oo), R_DN: (-sp.oo, 0)},
            claim=Claim("implicit.sign", "R_dd > 0 and R_dn < 0 imply dd*/dn > 0"),
        ),
        prove_equal(
            generic_dn,
            -sp.Derivative(C(d), d) / (4 * sp.sqrt(C(d)) * n ** sp.Rational(3, 2)),
            claim=Claim(
                "implicit.generic_cross_partial",
                "for R = sqrt(C(d)/n) + E(d): R_dn = -C'(d) / (4 sqrt(C(d)) n^(3/2)) (E drops out)",
            ),
        ),
        prove_sign(
            generic_dn.subs(sp.Derivative(C(d), d), C_PRIME).subs(C(d), C_VAL),
            "<0",
            claim=Claim(
                "implicit.generic_cross_partial_sign", "R_dn < 0 whenever C > 0 and C' > 0"
            ),
        ),
        *_family("power", POWER, POWER_D_STAR),
        *_family("exponential", EXPO, EXPO_D_STAR),
        prove_sign(
            g_dd.subs(a, PAC_A_AT_ROOT),
            ">0",
            PAC_DOM,
            claim=Claim(
                "implicit.pacbayes.second_order",
                "pacbayes: G_dd > 0 at the stationary point (G itself is not convex: its "
                "generalisation term is concave in d)",
            ),
        ),
        prove_sign(
            sp.diff(PAC_GEN, d, 2),
            "<0",
            PAC_DOM,
            claim=Claim(
                "implicit.pacbayes.gen_concave", "pacbayes: the generalisation term is concave in d"
            ),
        ),
        prove_sign(
            g_dn,
            "<0",
            PAC_DOM,
            claim=Claim("implicit.pacbayes.cross_partial", "pacbayes: G_dn < 0 for every d"),
        ),
        prove_equal(
            (-g_dn / g_dd).subs(a, PAC_A_AT_ROOT),
            (-h_n / h_d).subs(a, PAC_A_AT_ROOT),
            PAC_DOM,
            claim=Claim(
                "implicit.pacbayes.consistent",
                "pacbayes: -G_dn/G_dd equals -h_n/h_d from the stationarity quartic, at every root",
            ),
        ),
    ]


def negative_controls() -> list[Result]:
    return [
        prove_equal(
            implicit_derivative(),
            R_DN / R_DD,
            claim=Claim("wrong.implicit_sign", "dd*/dn = +R_dn / R_dd (false)"),
        ),
        prove_sign(
            sp.diff(POWER, d, 2),
            ">0",
            claim=Claim(
                "wrong.power_convex",
                "the power family is convex in d everywhere (false: only at and near d*)",
            ),
        ),
        prove_sign(
            sp.diff(PAC, d, 2).subs(a, PAC_A_AT_ROOT),
            "<0",
            PAC_DOM,
            claim=Claim(
                "wrong.pacbayes_maximum", "pacbayes: the stationary point is a maximum (false)"
            ),
        ),
    ]


if __name__ == "__main__":
    sys.exit(run_check_script(check, negative_controls))
