"""The Occam bound: PAC-Bayes with a point-mass posterior and a prefix-code prior, with kl⁻¹.

**Theorem** (the Chernoff/kl relaxation of Langford's 2005 Occam's razor bound, as used by the
compression certificates of Lotfi et al. 2022). Let ``H`` be a countable set of
classifiers and ``K : H → ℕ`` the codeword lengths (bits) of a prefix-free code for ``H``, so
that Kraft's inequality ``Σ_h 2^{−K(h)} ≤ 1`` holds. Let ``S`` be ``n`` examples drawn i.i.d.
from a distribution ``𝒟``, ``R(h)`` the 0-1 risk of ``h`` under ``𝒟`` and ``R̂(h)`` its
error rate on ``S``. Then for every ``δ ∈ (0, 1)``, with probability at least ``1 − δ`` over
``S``, simultaneously for every ``h ∈ H``::

    R(h) ≤ kl⁻¹(R̂(h), c(h)),    c(h) = (K(h) ln 2 + ln(1/δ)) / n,

with ``kl⁻¹(q, c) = sup{p ∈ [q, 1] : kl(q‖p) ≤ c}`` (:func:`difftrade.theory.kl_inverse.kl_inv`).
Proof: for a fixed ``h`` the Chernoff bound ``P(R̂ ≤ q) ≤ exp(−n·kl(q‖p))`` (``q ≤ p = R(h)``)
gives ``P(R(h) > kl⁻¹(R̂(h), c(h))) ≤ e^{−n c(h)} = δ·2^{−K(h)}``; a union bound over ``H`` and
Kraft give total failure probability ``≤ δ``. Since it holds for all ``h`` at once, it holds for
the ``h`` a learner picks after seeing ``S``. (It is PAC-Bayes-kl with ``Q = δ_h``,
``P(h) = 2^{−K(h)}``, ``KL(Q‖P) = K(h) ln 2``, without the ``ln ξ(n)`` term.) The two-sided form
(:func:`occam_interval`) spends ``δ/2`` per side.

**Assumptions.** (i) The ``n`` examples are i.i.d. from the member's training distribution and
the bound is on the risk under that same distribution. (ii) The code — hence ``K(h)`` for every
``h`` — is fixed before the sample is seen: it may depend on the random seed, the architecture,
the subspace projection and the quantization scheme, never on the sample (a coding choice made
after seeing the data, e.g. among several quantization grids, must itself be encoded into ``K``).
(iii) ``h`` is the classifier the code *describes* — the network decoded from the quantized
coordinates — and ``R̂`` is that network's error rate on the same ``n`` examples. (iv) ``K`` is
the full self-delimiting length of everything the decoder needs beyond what was fixed before the
data (:func:`difftrade.theory.coding.code_length` ``.total`` plus, e.g., a stored codebook), not
a length that is only prefix-free given side information. The bound is on the 0-1
(exact-match) risk; the Chernoff step also holds for any loss with values in [0, 1].

**Numerics.** ``2^{−K}`` is never formed: ``c`` is computed in the log domain, so ``K ~ 10⁵``
bits is fine. ``kl⁻¹`` is the conservative float64 inverse of :mod:`difftrade.theory.kl_inverse`
(never below the exact value, within ~1e-13 relative). Inputs broadcast like numpy arrays;
results are numpy float64 (a scalar for scalar inputs).
"""

from __future__ import annotations

import math

import numpy as np

from difftrade.theory.kl_inverse import kl_inv, kl_inv_lower

LN2: float = math.log(2.0)


def _as_float64(field: str, x: object) -> np.ndarray:
    """``x`` as a float64 array; ``ValueError`` naming ``field`` if it is not numeric."""
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{field}={x!r} is not numeric; allowed: numbers or arrays") from None


def _require(field: str, x: np.ndarray, ok: np.ndarray, allowed: str) -> np.ndarray:
    """Raise ``ValueError`` naming ``field`` and its first bad entry unless ``ok`` everywhere."""
    if not np.all(ok):
        first = float(x[~ok].flat[0]) if x.ndim else float(x)
        raise ValueError(f"{field}={first!r} is out of range; allowed: {allowed}")
    return x


def _check_emp_risk(emp_risk: object) -> np.ndarray:
    q = _as_float64("emp_risk", emp_risk)
    return _require("emp_risk", q, (q >= 0) & (q <= 1), "values in [0, 1]")


def _check_n(n: object) -> np.ndarray:
    v = _as_float64("n", n)
    ok = np.isfinite(v) & (v >= 1) & (np.floor(v) == v)
    return _require("n", v, ok, "integers >= 1")


def _check_code_bits(code_bits: object) -> np.ndarray:
    k = _as_float64("code_bits", code_bits)
    return _require("code_bits", k, np.isfinite(k) & (k >= 0), "finite values >= 0")


def _check_delta(delta: object) -> np.ndarray:
    d = _as_float64("delta", delta)
    return _require("delta", d, (d > 0) & (d < 1), "values in (0, 1)")


def _out(x: object) -> np.float64 | np.ndarray:
    """float64 numpy result: an ``np.float64`` for 0-d, else an array."""
    return np.asarray(x, dtype=np.float64)[()]


def occam_complexity(code_bits: object, n: object, delta: object) -> np.float64 | np.ndarray:
    """``c = (K ln 2 + ln(1/δ)) / n``: the kl budget of a hypothesis with a ``K``-bit codeword.

    Args: ``code_bits`` K (finite, ``>= 0``), ``n`` (integers ``>= 1``), ``delta`` in (0, 1);
    broadcastable. Returns: the broadcast shape, float64.
    """
    k, nn, d = _check_code_bits(code_bits), _check_n(n), _check_delta(delta)
    return _out((k * LN2 - np.log(d)) / nn)


def occam_bound(
    emp_risk: object, n: object, code_bits: object, delta: object
) -> np.float64 | np.ndarray:
    """Upper bound ``kl⁻¹(R̂, c)`` on the 0-1 risk, valid w.p. ``≥ 1 − δ`` for all ``h`` at once.

    Args: ``emp_risk`` R̂ in [0, 1] (errors / n on the training sample), ``n`` integers
    ``>= 1``, ``code_bits`` K, ``delta`` in (0, 1); broadcastable. Returns: the broadcast
    shape, float64, never below the exact ``kl⁻¹``. See the module docstring for the theorem.
    """
    q = _check_emp_risk(emp_risk)
    c = occam_complexity(code_bits, n, delta)
    return _out(kl_inv(q, c))


def occam_interval(
    emp_risk: object, n: object, code_bits: object, delta: object
) -> tuple[np.float64 | np.ndarray, np.float64 | np.ndarray]:
    """``(lower, upper)`` with ``lower ≤ R(h) ≤ upper`` for all ``h`` jointly w.p. ``≥ 1 − δ``.

    Each side uses ``δ/2``: ``c = (K ln 2 + ln(2/δ))/n``, ``lower = kl⁻¹_lower(R̂, c)``,
    ``upper = kl⁻¹(R̂, c)`` (the two Chernoff tails, each ``≤ (δ/2)·2^{−K(h)}`` per ``h``).
    Same arguments and shapes as :func:`occam_bound`.
    """
    q = _check_emp_risk(emp_risk)
    c = occam_complexity(code_bits, n, _check_delta(delta) / 2.0)
    return _out(kl_inv_lower(q, c)), _out(kl_inv(q, c))
