"""difftrade.theory.occam against mpmath (50 digits), on a toy problem with known risk, bad input."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from difftrade.theory import coding
from difftrade.theory import occam as O

mpmath.mp.dps = 50
REL = 1e-9


# ---- mpmath reference: kl(q‖p) = c solved by bisection on a log scale --------------------------
def _mp_kl(q: mpmath.mpf, p: mpmath.mpf, one_minus_p: mpmath.mpf) -> mpmath.mpf:
    """kl(q‖p) with ``1 − p`` passed separately (exact even when p rounds to 1 at 50 digits)."""
    first = 0 if q == 0 else q * mpmath.log(q / p)
    second = 0 if q == 1 else (1 - q) * mpmath.log((1 - q) / one_minus_p)
    return first + second


def _bisect(inside, t_in: mpmath.mpf, t_out: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    """Shrink ``[t_out, t_in]`` (``inside(t_in)``, not ``inside(t_out)``) to width 1e-30."""
    while abs(t_in - t_out) > mpmath.mpf(10) ** -30:
        mid = (t_in + t_out) / 2
        t_in, t_out = (mid, t_out) if inside(mid) else (t_in, mid)
    return t_in, t_out


def mp_kl_inv(q: float, c: mpmath.mpf, upper: bool) -> tuple[mpmath.mpf, mpmath.mpf]:
    """Bracket ``(p_near, p_far)`` of the exact upper (lower) inverse; ``p_far`` lies beyond it.

    Upper: bisect on ``t = ln(1 − p)``; ``kl ≥ (1−q)(ln((1−q)/(1−p)) − 1)`` puts the solution
    above ``t = ln(1−q) − c/(1−q) − 2``. Lower: on ``t = ln p``, ``kl ≥ q(ln(q/p) − 1)``. The
    bracket's relative width is ~1e-30, so far below float64 resolution.
    """
    q = mpmath.mpf(float(q))
    if upper:
        if q == 1:
            return mpmath.mpf(1), mpmath.mpf(1)
        a = 1 - q
        t_in, t_out = _bisect(
            lambda t: _mp_kl(q, -mpmath.expm1(t), mpmath.exp(t)) <= c,
            mpmath.log(a),
            mpmath.log(a) - c / a - 2,
        )
        return -mpmath.expm1(t_in), -mpmath.expm1(t_out)
    if q == 0:
        return mpmath.mpf(0), mpmath.mpf(0)
    t_in, t_out = _bisect(
        lambda t: _mp_kl(q, mpmath.exp(t), -mpmath.expm1(t)) <= c,
        mpmath.log(q),
        mpmath.log(q) - c / q - 2,
    )
    return mpmath.exp(t_in), mpmath.exp(t_out)


def mp_complexity(code_bits: float, n: float, delta: float) -> mpmath.mpf:
    k, n, d = (mpmath.mpf(float(v)) for v in (code_bits, n, delta))
    return (k * mpmath.log(2) + mpmath.log(1 / d)) / n


Q_GRID = [0.0, 1e-9, 1e-3, 0.05, 0.5, 0.9, 1 - 1e-6, 1.0]
N_GRID = [1, 100, 10**6, 10**9]
K_GRID = [0, 1, 300, 10**4, 10**5]
DELTA_GRID = [1e-6, 0.05, 0.9]


def _grid() -> tuple[np.ndarray, ...]:
    q, n, k, d = np.meshgrid(Q_GRID, N_GRID, K_GRID, DELTA_GRID, indexing="ij")
    return q.ravel(), n.ravel(), k.ravel(), d.ravel()


def _check_upper(value: float, q: float, c: mpmath.mpf) -> None:
    near, far = mp_kl_inv(q, c, upper=True)
    v = mpmath.mpf(value)
    assert v >= far, (q, c, value, far)  # never below the exact inverse
    assert v - near <= REL * near, (q, c, value, near)


def _check_lower(value: float, q: float, c: mpmath.mpf) -> None:
    near, far = mp_kl_inv(q, c, upper=False)
    v = mpmath.mpf(value)
    assert v <= far, (q, c, value, far)  # never above the exact inverse
    if near > 1e-290:  # a normal float64 result: also tight
        assert near - v <= REL * near, (q, c, value, near)
    else:
        assert 0 <= v <= 1e-290


def test_occam_bound_matches_mpmath_and_is_conservative() -> None:
    q, n, k, d = _grid()
    bound = O.occam_bound(q, n, k, d)
    complexity = O.occam_complexity(k, n, d)
    assert bound.dtype == np.float64 and bound.shape == q.shape
    for i in range(q.size):
        c = mp_complexity(k[i], n[i], d[i])
        assert abs(mpmath.mpf(complexity[i]) - c) <= 1e-15 * c
        _check_upper(bound[i], q[i], c)


def test_occam_interval_matches_mpmath_at_half_delta() -> None:
    q, n, k, d = (x[::2] for x in _grid())  # every other grid point keeps the test fast
    lower, upper = O.occam_interval(q, n, k, d)
    for i in range(q.size):
        c = mp_complexity(k[i], n[i], d[i] / 2)
        _check_upper(upper[i], q[i], c)
        _check_lower(lower[i], q[i], c)
        assert lower[i] <= q[i] <= upper[i]


def test_closed_forms_and_log_domain() -> None:
    # kl⁻¹(0, c) = 1 − e^{−c}; K = 10⁵ bits: c ≈ 6.9e4, 2^{−K} would underflow
    c = O.occam_complexity(20, 1000, 0.01)
    assert c == pytest.approx((20 * math.log(2) + math.log(100)) / 1000, rel=1e-15)
    assert O.occam_bound(0.0, 1000, 20, 0.01) == pytest.approx(-math.expm1(-c), rel=1e-12)
    assert O.occam_complexity(1e5, 1, 0.5) == pytest.approx(1e5 * math.log(2) + math.log(2))
    assert O.occam_bound(0.3, 1, 1e5, 0.5) == 1.0
    assert O.occam_bound(1.0, 10, 3, 0.1) == 1.0


def test_shapes_types_and_monotonicity() -> None:
    scalar = O.occam_bound(0.1, 1000, 100, 0.05)
    assert isinstance(scalar, np.float64)
    out = O.occam_bound(np.array([[0.0], [0.1], [0.2]]), np.array([100, 1000]), 50, 0.1)
    assert out.shape == (3, 2) and out.dtype == np.float64
    assert np.all(np.diff(out, axis=0) > 0) and np.all(np.diff(out, axis=1) < 0)
    by_bits = O.occam_bound(0.1, 1000, np.array([0, 10, 100, 1000]), 0.1)
    assert np.all(np.diff(by_bits) > 0)
    lower, upper = O.occam_interval(np.array([0.1, 0.2]), 500, 40, 0.1)
    assert lower.shape == upper.shape == (2,)
    assert np.all(upper >= O.occam_bound(np.array([0.1, 0.2]), 500, 40, 0.1))


# ---- coverage on a toy problem with exactly known risks ---------------------------------------
INPUTS = 16
NOISE = 0.2  # P(label flipped), the same at every x
TARGET = (np.arange(INPUTS) >= 8).astype(np.int64)  # f(x) = 1[x ≥ 8]


def _threshold_class() -> tuple[np.ndarray, np.ndarray]:
    """Rules ``h_{t,s}(x) = s ⊕ 1[x ≥ t]``, t ∈ 0..16: labels (34, 16) and code bits (34,).

    Code: ``0`` (a threshold rule), Elias gamma of ``t + 1``, the bit ``s``. Lookup tables get
    ``1`` and their 16 labels (17 bits). Kraft: thresholds ≤ ½·Σ_t 2^{−γ(t+1)} ≤ ½, tables ½.
    """
    rules = [(t, s) for t in range(INPUTS + 1) for s in (0, 1)]
    labels = np.array([[s ^ int(x >= t) for x in range(INPUTS)] for t, s in rules])
    bits = np.array([1 + coding.elias_gamma_bits(t + 1) + 1 for t, _ in rules])
    return labels, bits


TABLE_BITS = 1 + INPUTS


def _true_risk(labels: np.ndarray) -> np.ndarray:
    """Exact 0-1 risk of label vectors (..., 16) under uniform x and symmetric label noise."""
    return np.mean(np.where(labels == TARGET, NOISE, 1 - NOISE), axis=-1)


def _simulate(trials: int, n: int, rng: np.random.Generator):
    """ERM over thresholds ∪ tables on ``trials`` samples of size ``n``; ties → shorter code.

    Returns ``(emp_risk, code_bits, true_risk)`` of the chosen hypothesis, each (trials,).
    """
    x = rng.integers(0, INPUTS, size=(trials, n))
    y = TARGET[x] ^ (rng.random((trials, n)) < NOISE)
    cell = (np.arange(trials)[:, None] * INPUTS + x) * 2 + y
    counts = np.bincount(cell.ravel(), minlength=trials * INPUTS * 2).reshape(trials, INPUTS, 2)
    labels, bits = _threshold_class()
    errors = counts[:, :, 0] @ labels.T + counts[:, :, 1] @ (1 - labels).T  # (T, 34)
    # the ERM table: the majority label in each cell, f(x) on ties (a fixed, sample-free rule)
    table = np.where(counts[:, :, 1] > counts[:, :, 0], 1, 0)
    table = np.where(counts[:, :, 1] == counts[:, :, 0], TARGET, table)
    table_errors = np.where(table == 1, counts[:, :, 0], counts[:, :, 1]).sum(axis=1)
    all_errors = np.concatenate([errors, table_errors[:, None]], axis=1)
    all_bits = np.concatenate([bits, [TABLE_BITS]])
    choice = np.argmin(all_errors * 64 + all_bits, axis=1)  # least errors, then shortest code
    is_table = choice == len(bits)
    true = np.where(
        is_table, _true_risk(table), _true_risk(labels)[np.minimum(choice, len(bits) - 1)]
    )
    emp = all_errors[np.arange(trials), choice] / n
    return emp, all_bits[choice].astype(np.float64), true


def test_toy_class_code_satisfies_kraft() -> None:
    _, bits = _threshold_class()
    assert np.sum(2.0**-bits) + 2.0**INPUTS * 2.0**-TABLE_BITS <= 1.0
    assert bits.max() < TABLE_BITS  # so the 64·errors + bits key orders by errors first


def test_occam_coverage_on_toy_problem_and_power() -> None:
    delta, trials, n = 0.1, 4000, 60
    emp, bits, true = _simulate(trials, n, np.random.default_rng(20240607))
    slack = delta * trials + 3 * math.sqrt(delta * trials)
    upper = O.occam_bound(emp, n, bits, delta)
    lower, upper2 = O.occam_interval(emp, n, bits, delta)
    assert np.sum(true > upper) <= slack
    assert np.sum((true > upper2) | (true < lower)) <= slack
    # power: the ERM's own empirical risk undershoots its true risk far more often than δ, so
    # the coverage check would fail if the bound were replaced by the estimate
    assert np.sum(emp < true) > slack
    # ... and it would fail with the code term dropped (the test-set bound at K = 0 applied to
    # the ERM): selection after seeing the sample must be paid for
    assert np.sum(true > O.occam_bound(emp, n, 0, delta)) > slack
    # and the chosen hypothesis is sometimes a 17-bit table (the code term matters)
    assert 0 < np.mean(bits == TABLE_BITS) < 1


# ---- bad input --------------------------------------------------------------------------------
GOOD = {"emp_risk": 0.1, "n": 100, "code_bits": 50, "delta": 0.05}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("emp_risk", -0.1),
        ("emp_risk", 1.5),
        ("emp_risk", math.nan),
        ("emp_risk", [0.1, 2.0]),
        ("emp_risk", "abc"),
        ("n", 0),
        ("n", 2.5),
        ("n", math.inf),
        ("n", math.nan),
        ("n", [10, -1]),
        ("code_bits", -1.0),
        ("code_bits", math.inf),
        ("code_bits", math.nan),
        ("code_bits", None),
        ("delta", 0.0),
        ("delta", 1.0),
        ("delta", -0.5),
        ("delta", [0.1, 1.2]),
    ],
)
def test_bad_inputs_name_the_field(field: str, value: object) -> None:
    args = {**GOOD, field: value}
    calls = [O.occam_bound, O.occam_interval]
    if field != "emp_risk":
        calls.append(lambda **a: O.occam_complexity(a["code_bits"], a["n"], a["delta"]))
    for fn in calls:
        with pytest.raises(ValueError, match=rf"^{field}=.*allowed: "):
            fn(**args)
