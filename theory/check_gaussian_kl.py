"""sympy check for theory/gaussian_kl.md: KL between a diagonal Gaussian posterior and an
isotropic Gaussian prior, from the general multivariate formula and a 1-D integral.

Run ``python theory/check_gaussian_kl.py``; ``check()`` returns the results,
``negative_controls()`` returns deliberately wrong statements that must be rejected.
"""

from __future__ import annotations

import sys

import sympy as sp

from difftrade.theory.claims import Claim, Result, run_check_script
from difftrade.theory.provers import prove_equal, prove_nonnegative_by_derivative

K = 3  # dimension of the matrix check (the formula is coordinate-wise, so 3 shows the pattern)
x = sp.Symbol("x", real=True)
mu, w0 = sp.symbols("mu w0", real=True)
sigma, sigma_p, r = sp.symbols("sigma sigma_P r", positive=True)
MUS = sp.symbols(f"mu1:{K + 1}", real=True)
W0S = sp.symbols(f"w1:{K + 1}", real=True)
SIGMAS = sp.symbols(f"sigma1:{K + 1}", positive=True)


def normal_pdf(v, mean, var):
    return sp.exp(-((v - mean) ** 2) / (2 * var)) / sp.sqrt(2 * sp.pi * var)


def general_kl(mu0: sp.Matrix, cov0: sp.Matrix, mu1: sp.Matrix, cov1: sp.Matrix) -> sp.Expr:
    """KL(N(mu0, cov0) || N(mu1, cov1)) for k-dimensional Gaussians (the textbook formula)."""
    k = cov0.shape[0]
    inv1 = cov1.inv()
    diff = mu1 - mu0
    return sp.Rational(1, 2) * (
        (inv1 * cov0).trace() + (diff.T * inv1 * diff)[0, 0] - k + sp.log(cov1.det() / cov0.det())
    )


def difftrade_kl(sigmas, mus, w0s, sp_) -> sp.Expr:
    """The formula difftrade implements (the closed form of KL between diagonal Gaussians)."""
    return sp.Rational(1, 2) * sum(
        s**2 / sp_**2 + (m - w) ** 2 / sp_**2 - 1 + sp.log(sp_**2 / s**2)
        for s, m, w in zip(sigmas, mus, w0s)
    )


def check() -> list[Result]:
    q_pdf, p_pdf = normal_pdf(x, mu, sigma**2), normal_pdf(x, w0, sigma_p**2)
    log_ratio = (
        sp.log(sigma_p / sigma) - (x - mu) ** 2 / (2 * sigma**2) + (x - w0) ** 2 / (2 * sigma_p**2)
    )
    integral = sp.integrate(q_pdf * sp.expand(log_ratio), (x, -sp.oo, sp.oo))
    one_d = difftrade_kl([sigma], [mu], [w0], sigma_p)
    cov0 = sp.diag(*[s**2 for s in SIGMAS])
    cov1 = sigma_p**2 * sp.eye(K)
    matrix_kl = general_kl(sp.Matrix(MUS), cov0, sp.Matrix(W0S), cov1)
    return [
        prove_equal(
            sp.log(q_pdf / p_pdf),
            log_ratio,
            claim=Claim("gauss.log_ratio", "ln(q(x)/p(x)) for two 1-D normal densities, expanded"),
        ),
        prove_equal(
            integral,
            one_d,
            claim=Claim(
                "gauss.integral_1d",
                "int N(x; mu, s^2) ln(N(x; mu, s^2)/N(x; w0, sP^2)) dx "
                "= 1/2 [s^2/sP^2 + (mu-w0)^2/sP^2 - 1 + ln(sP^2/s^2)] (symbolic integral)",
            ),
        ),
        prove_equal(
            general_kl(
                sp.Matrix([mu]), sp.Matrix([[sigma**2]]), sp.Matrix([w0]), sp.Matrix([[sigma_p**2]])
            ),
            integral,
            claim=Claim(
                "gauss.general_k1",
                "the general multivariate formula at k = 1 agrees with the integral",
            ),
        ),
        prove_equal(
            matrix_kl,
            difftrade_kl(SIGMAS, MUS, W0S, sigma_p),
            claim=Claim(
                "gauss.diagonal_vs_isotropic",
                f"general formula with cov0 = diag(sigma_i^2), cov1 = sP^2 I (k = {K}) "
                "= 1/2 sum_i [sigma_i^2/sP^2 + (mu_i - w0_i)^2/sP^2 - 1 + ln(sP^2/sigma_i^2)]",
            ),
        ),
        prove_equal(
            difftrade_kl(SIGMAS, W0S, W0S, sigma_p).subs({s: sigma_p for s in SIGMAS}),
            0,
            claim=Claim("gauss.zero_at_prior", "KL = 0 when Q = P (mu = w0, sigma_i = sP)"),
        ),
        prove_nonnegative_by_derivative(
            r - 1 - sp.log(r),
            r,
            {r: (0, sp.oo)},
            at_zero=1,
            claim=Claim(
                "gauss.nonnegative",
                "each coordinate's variance part r - 1 - ln r >= 0 (r = sigma_i^2/sP^2), so KL >= 0",
            ),
        ),
    ]


def negative_controls() -> list[Result]:
    no_minus_one = sp.Rational(1, 2) * sum(
        s**2 / sigma_p**2 + (m - w) ** 2 / sigma_p**2 + sp.log(sigma_p**2 / s**2)
        for s, m, w in zip(SIGMAS, MUS, W0S)
    )
    flipped_log = sp.Rational(1, 2) * sum(
        s**2 / sigma_p**2 + (m - w) ** 2 / sigma_p**2 - 1 + sp.log(s**2 / sigma_p**2)
        for s, m, w in zip(SIGMAS, MUS, W0S)
    )
    matrix_kl = general_kl(
        sp.Matrix(MUS), sp.diag(*[s**2 for s in SIGMAS]), sp.Matrix(W0S), sigma_p**2 * sp.eye(K)
    )
    return [
        prove_equal(
            matrix_kl,
            no_minus_one,
            claim=Claim("wrong.gauss_no_minus_one", "KL without the -1 (false)"),
        ),
        prove_equal(
            matrix_kl,
            flipped_log,
            claim=Claim("wrong.gauss_flipped_log", "KL with ln(s^2/sP^2) (false)"),
        ),
        prove_nonnegative_by_derivative(
            r - 1 + sp.log(r),
            r,
            {r: (0, sp.oo)},
            at_zero=1,
            claim=Claim("wrong.gauss_sign", "r - 1 + ln r >= 0 (false)"),
        ),
    ]


if __name__ == "__main__":
    sys.exit(run_check_script(check, negative_controls))
