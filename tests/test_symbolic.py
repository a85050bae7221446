"""difftrade.theory's sympy machinery (claims, signs, numeric_fallback, provers) and every
derivation check under theory/.

Each theory/check_*.py must pass every claim with the method its Claim records (so a sympy
upgrade that silently turns a proof into a numeric check is noticed), and every deliberately
wrong statement (its negative_controls) must be rejected by the same machinery.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import pytest
import sympy as sp

ROOT = Path(__file__).resolve().parents[1]

from difftrade.theory.claims import NUMERIC_FALLBACK, SYMBOLIC, Claim
from difftrade.theory.numeric_fallback import numeric_check
from difftrade.theory.provers import (
    combine,
    prove_equal,
    prove_nonnegative_by_derivative,
    prove_sign,
    prove_unique_root,
)
from difftrade.theory.signs import decide_sign

CHECKS = sorted((ROOT / "theory").glob("check_*.py"))


@functools.cache
def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"theory_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def results(path: Path):
    return tuple(load(path).check())


def test_there_are_checks():
    names = {p.stem for p in CHECKS}
    for expected in (
        "check_pinsker",
        "check_quad",
        "check_lambda_bound",
        "check_gaussian_kl",
        "check_tradeoff_power",
        "check_tradeoff_exponential",
        "check_tradeoff_pacbayes",
        "check_implicit_function",
        "check_change_of_measure",
        "check_sample_convergence",
    ):
        assert expected in names


@pytest.mark.parametrize("path", CHECKS, ids=lambda p: p.stem)
def test_check_passes_with_recorded_method(path):
    res = results(path)
    assert res, f"{path.name}: check() returned nothing"
    for r in res:
        assert r.passed, str(r)
        assert r.method == r.claim.expected_method, f"method changed: {r}"


@pytest.mark.slow
@pytest.mark.parametrize("path", CHECKS, ids=lambda p: p.stem)
def test_negative_controls_are_rejected(path):
    controls = load(path).negative_controls()
    assert controls
    for r in controls:
        assert not r.passed, f"a deliberately wrong statement was accepted: {r}"


@pytest.mark.parametrize("path", CHECKS, ids=lambda p: p.stem)
def test_every_check_has_a_note_in_the_index(path):
    note = path.with_name(path.stem.removeprefix("check_") + ".md")
    assert note.exists(), f"{note.name} is missing"
    index = (ROOT / "theory" / "README.md").read_text()
    assert path.name in index and note.name in index


def test_claim_names_are_unique():
    names = [r.name for p in CHECKS for r in results(p)]
    assert len(names) == len(set(names))


# ---- the machinery itself ---------------------------------------------------------------------
q, p, c, d, n, a = sp.symbols("q p c d n a", positive=True)
x = sp.Symbol("x", real=True)
KL = q * sp.log(q / p) + (1 - q) * sp.log((1 - q) / (1 - p))


def test_wrong_pinsker_constant_rejected():
    r = prove_nonnegative_by_derivative(KL - 3 * (p - q) ** 2, p, {q: (0, 1), p: (q, 1)}, at_zero=q)
    assert not r.passed
    assert "counterexample" in r.detail


def test_true_pinsker_accepted_symbolically():
    r = prove_nonnegative_by_derivative(KL - 2 * (p - q) ** 2, p, {q: (0, 1), p: (q, 1)}, at_zero=q)
    assert r.passed and r.method == SYMBOLIC
    assert len(r.steps) == 2 and all(s.method == SYMBOLIC for s in r.steps)


def test_wrong_direction_of_d_star_rejected():
    d_star = (2 * a) ** sp.Rational(2, 3) * (n / c) ** sp.Rational(1, 3)  # C = c d, E = a/d
    r = prove_sign(sp.diff(d_star, n), "<0")
    assert not r.passed and r.method == SYMBOLIC and "opposite" in r.detail


def test_sign_by_univariate_root_counting():
    assert prove_sign(x**2 - 1, ">0", {x: (1, 2)}).method == SYMBOLIC
    r = prove_sign(x**2 - 1, ">0", {x: (0, 2)})
    assert not r.passed and "counterexample" in r.detail


def test_sign_by_positive_reparametrisation():
    # p - q > 0 needs the relation between p and q, not just signs
    assert decide_sign(p - q, {q: (0, 1), p: (q, 1)})[0] == ">0"
    assert decide_sign(p - q, {q: (0, 1), p: (0, q)})[0] == "<0"
    assert decide_sign(p - q, {q: (0, 1), p: (0, 1)})[0] is None


def test_sign_by_squaring_square_roots():
    assert decide_sign(sp.sqrt(1 + c) - 1)[0] == ">0"


def test_fallback_is_used_and_reported_when_sympy_cannot_decide():
    r = prove_sign(sp.exp(x) - 1 - x, ">=0", {x: (-5, 5)})
    assert r.passed and r.method == NUMERIC_FALLBACK
    assert "FELL BACK" in r.detail
    r = prove_sign(sp.exp(x) - 1 - 2 * x, ">=0", {x: (-5, 5)})
    assert not r.passed and r.method == NUMERIC_FALLBACK and "counterexample" in r.detail


def test_fallback_can_be_disabled():
    r = prove_sign(sp.exp(x) - 1 - x, ">=0", {x: (-5, 5)}, allow_fallback=False)
    assert not r.passed and "disabled" in r.detail


def test_prove_equal():
    assert prove_equal(sp.sqrt(c**2), c).method == SYMBOLIC
    r = prove_equal(c + 1, c)
    assert not r.passed and r.method == SYMBOLIC
    r = prove_equal(sp.log(c), c - 1, {c: (0, 3)})  # equal only at c = 1
    assert not r.passed


def test_derivative_argument_with_zero_at_the_upper_end():
    r = prove_nonnegative_by_derivative(1 - x**2, x, {x: (0, 1)}, at_zero=1)
    assert r.passed and r.method == SYMBOLIC
    r = prove_nonnegative_by_derivative(x**2 - 1, x, {x: (0, 1)}, at_zero=1)
    assert not r.passed


def test_derivative_argument_rejects_a_wrong_zero():
    r = prove_nonnegative_by_derivative(x**2 - 1, x, {x: (0, 2)}, at_zero=0)
    assert not r.passed


def test_unique_root():
    r = prove_unique_root(d**2 - 4, d, 2)
    assert r.passed and r.method == SYMBOLIC
    assert not prove_unique_root(x**2 - 4, x, 2).passed  # two real roots


def test_numeric_check_confirms_counterexamples_only():
    rep = numeric_check(KL - 2 * (p - q) ** 2, ">=0", {q: (0, 1), p: (q, 1)}, n_points=5_000)
    assert rep.ok and rep.counterexample is None and rep.n_points > 4_000
    rep = numeric_check(KL - 3 * (p - q) ** 2, ">=0", {q: (0, 1), p: (q, 1)}, n_points=5_000)
    assert not rep.ok and rep.counterexample["value"] < 0


def test_combine_and_claim():
    ok = prove_sign(c, ">0")
    fb = prove_sign(sp.exp(x) - 1 - x, ">=0", {x: (-1, 1)}, n_points=2_000)
    r = combine(Claim("both", "c > 0 and e^x >= 1 + x"), [ok, fb])
    assert r.passed and r.method == NUMERIC_FALLBACK
    with pytest.raises(ValueError, match="expected_method"):
        Claim("x", "y", expected_method="guess")
    with pytest.raises(ValueError, match="relation"):
        prove_sign(c, "=>0")
