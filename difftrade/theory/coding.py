"""Prefix-free codes for quantized network coordinates: Elias codes and an exact arithmetic coder.

What a PAC-Bayes *compression* certificate (Lotfi et al. 2022) needs from coding: a network's
quantized subspace coordinates ``z`` (``D`` integer symbols in ``{0, …, L−1}``) are written as a
self-delimiting bit string, and its length ``K`` in bits is the complexity term of the Occam
bound (:mod:`difftrade.theory.occam`). Only the *length* of a real encoding matters for the bound,
but every code here also decodes, so tests can check that it is a code and not just a number.

**The whole message** (:func:`encode`, :func:`decode`, :func:`code_length`):

1. ``D`` in Elias delta (:func:`elias_delta_encode`);
2. ``L`` in Elias delta;
3. the symbol counts ``c_0, …, c_{L−2}``, each in ``w = ⌈log₂(D+1)⌉`` bits, most significant bit
   first (``c_{L−1} = D − Σ`` is implied);
4. the payload: :func:`arithmetic_encode` of the symbols under the static model ``c / D``.

Each field is prefix-free given the fields before it, so the message is prefix-free over all
``D ≥ 1``, ``L ≥ 1`` and all sequences, and its lengths satisfy Kraft: ``Σ 2^{−K} ≤ 1``.

**The arithmetic coder** is the integer coder of Witten, Neal and Cleary (1987): the interval
``[low, high]`` of ``P``-bit integers, ``P = max(32, bitlen(T) + 24)`` for total count ``T``
(:func:`arithmetic_precision`; Python integers, so any ``T`` works), is narrowed per symbol in
proportion to its count and renormalised by emitting settled leading bits; underflow (the interval
straddling the midpoint inside ``[¼, ¾)``) is handled by deferring "pending" bits. Its payload
length lies in ``(D·Ĥ − ε, D·Ĥ + 2 + ε]`` bits with ``D·Ĥ`` the empirical entropy
(:func:`empirical_entropy_bits`) when the model is the empirical counts, and
``ε ≤ (#levels used)·T/(2^{P−2} ln 2) ≤ L·3.5e-7`` the rounding of the integer interval.
A model with a single symbol of non-zero count has an empty payload (the sequence is implied).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

Bits = list[int]


# ---- input checks -----------------------------------------------------------------------------
def _check_positive_int(field: str, k: object) -> int:
    """``k`` as a Python int if it is an integer ``>= 1`` (not a bool), else ``ValueError``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{field}={k!r} is invalid; allowed: an integer >= 1")
    return int(k)


def _check_int_array(field: str, x: object) -> np.ndarray:
    """``x`` as a non-empty 1-D integer numpy array, else ``ValueError``."""
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"{field} has shape {arr.shape}; allowed: a non-empty 1-D array of integers"
        )
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{field} has dtype {arr.dtype} (non-integer); allowed: an integer array")
    return arr.astype(np.int64)


def _check_symbols(symbols: object, num_levels: int) -> np.ndarray:
    """Symbols as an int64 array of shape (D,), every entry in ``[0, num_levels)``."""
    arr = _check_int_array("symbols", symbols)
    bad = np.flatnonzero((arr < 0) | (arr >= num_levels))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"symbols[{i}]={int(arr[i])} is out of range; allowed: integers in "
            f"[0, {num_levels}) (num_levels={num_levels})"
        )
    return arr


def _check_counts(counts: object) -> np.ndarray:
    """Counts as an int64 array of shape (L,), entries ``>= 0``, total ``>= 1``."""
    arr = _check_int_array("counts", counts)
    if np.any(arr < 0) or arr.sum() < 1:
        raise ValueError(
            f"counts={arr.tolist()!r} is invalid; allowed: non-negative integers, total >= 1"
        )
    return arr


def _bit(bits: Sequence[int], i: int) -> int:
    """``bits[i]`` as 0 or 1; ``ValueError`` if the input ends before ``i`` or is not a bit."""
    if i >= len(bits):
        raise ValueError(f"bits ends at position {len(bits)}; allowed: a complete codeword")
    b = bits[i]
    if b not in (0, 1):
        raise ValueError(f"bits[{i}]={b!r} is not a bit; allowed: 0 or 1")
    return int(b)


# ---- fixed-width and Elias codes --------------------------------------------------------------
def binary_encode(k: int, width: int) -> Bits:
    """``k`` (``0 <= k < 2**width``) in ``width`` bits, most significant first."""
    return [(k >> j) & 1 for j in reversed(range(width))]


def binary_decode(bits: Sequence[int], pos: int, width: int) -> tuple[int, int]:
    """Read a ``width``-bit unsigned integer at ``pos``; returns ``(value, pos + width)``."""
    value = 0
    for i in range(pos, pos + width):
        value = 2 * value + _bit(bits, i)
    return value, pos + width


def elias_gamma_bits(k: int) -> int:
    """Length of the Elias gamma code of ``k >= 1``: ``2⌊log₂ k⌋ + 1``."""
    return 2 * _check_positive_int("k", k).bit_length() - 1


def elias_gamma_encode(k: int) -> Bits:
    """Elias gamma code of ``k >= 1``: ``⌊log₂ k⌋`` zeros, then ``k`` in binary (``1`` → ``[1]``)."""
    k = _check_positive_int("k", k)
    n = k.bit_length()
    return [0] * (n - 1) + binary_encode(k, n)


def elias_gamma_decode(bits: Sequence[int], pos: int = 0) -> tuple[int, int]:
    """Decode one Elias gamma codeword starting at ``pos``; returns ``(k, new_pos)``."""
    zeros = 0
    while _bit(bits, pos + zeros) == 0:
        zeros += 1
    return binary_decode(bits, pos + zeros, zeros + 1)


def elias_delta_bits(k: int) -> int:
    """Length of the Elias delta code of ``k >= 1``: ``⌊log₂ k⌋ + 2⌊log₂(⌊log₂ k⌋ + 1)⌋ + 1``."""
    n = _check_positive_int("k", k).bit_length()
    return elias_gamma_bits(n) + n - 1


def elias_delta_encode(k: int) -> Bits:
    """Elias delta code of ``k >= 1``: gamma code of ``n = ⌊log₂ k⌋ + 1``, then the low ``n−1`` bits."""
    k = _check_positive_int("k", k)
    n = k.bit_length()
    return elias_gamma_encode(n) + binary_encode(k, n)[1:]


def elias_delta_decode(bits: Sequence[int], pos: int = 0) -> tuple[int, int]:
    """Decode one Elias delta codeword starting at ``pos``; returns ``(k, new_pos)``."""
    n, pos = elias_gamma_decode(bits, pos)
    low, pos = binary_decode(bits, pos, n - 1)
    return (1 << (n - 1)) | low, pos


# ---- arithmetic coder -------------------------------------------------------------------------
def arithmetic_precision(total: int) -> int:
    """Register width ``P`` in bits for total count ``T``: ``max(32, bitlen(T) + 24)``.

    ``T <= 2^{P−24}`` keeps every symbol's sub-interval non-empty (needs ``T <= 2^{P−2}``) and the
    rounding loss below ``T/2^{P−2}`` per distinct symbol (see the module docstring).
    """
    return max(32, int(total).bit_length() + 24)


def _cumulative(counts: np.ndarray) -> list[int]:
    """``[0, c_0, c_0 + c_1, …, T]`` as Python ints (length L + 1)."""
    return [0] + np.cumsum(counts).tolist()


def _narrow(low: int, high: int, cum: list[int], s: int) -> tuple[int, int]:
    """The sub-interval of ``[low, high]`` for symbol ``s`` (proportional to its count)."""
    r, total = high - low + 1, cum[-1]
    return low + r * cum[s] // total, low + r * cum[s + 1] // total - 1


def _emit(out: Bits, bit: int, pending: int) -> None:
    out.append(bit)
    out.extend([1 - bit] * pending)


def _encoder_renormalize(
    low: int, high: int, pending: int, out: Bits, precision: int
) -> tuple[int, int, int]:
    """Shift settled bits out of ``[low, high]`` until it is wider than a quarter of the range.

    Returns ``(low, high, pending)``. Each iteration doubles the interval and emits one bit, now
    (the interval is in one half) or later (underflow: a pending bit, the opposite of the next).
    """
    half, quarter = 1 << (precision - 1), 1 << (precision - 2)
    while True:
        if high < half:
            _emit(out, 0, pending)
            pending = 0
        elif low >= half:
            _emit(out, 1, pending)
            pending, low, high = 0, low - half, high - half
        elif low >= quarter and high < half + quarter:
            pending, low, high = pending + 1, low - quarter, high - quarter
        else:
            return low, high, pending
        low, high = 2 * low, 2 * high + 1


def _single_symbol(counts: np.ndarray) -> int | None:
    """The only symbol with non-zero count, or None if there are several."""
    nonzero = np.flatnonzero(counts)
    return int(nonzero[0]) if nonzero.size == 1 else None


def arithmetic_encode(symbols: np.ndarray, counts: np.ndarray) -> Bits:
    """Encode ``symbols`` (shape (D,), ints in ``[0, L)``) under the static model ``counts`` (L,).

    Every symbol that occurs must have a non-zero count (``counts`` need not equal the symbols'
    counts; with the empirical counts the length is within ``D·Ĥ + 2`` bits).

    Termination: after the last symbol the interval ``[low, high]`` contains ``[¼, ½)`` or
    ``[½, ¾)`` of the register; two bits (``01`` or ``10``, with the pending bits after the
    first) name that quarter. So the codeword's dyadic interval ``[0.b, 0.b + 2^{−len})`` lies
    inside the sequence's final interval, and the final intervals of distinct sequences of the
    same length are disjoint: for a fixed model and a fixed ``D`` no codeword is a prefix of
    another. The decoder needs ``D`` and ``counts``; it reads past the end as zeros (any
    continuation decodes the same). A model with one non-zero count gives ``[]``.
    """
    cnt = _check_counts(counts)
    syms = _check_symbols(symbols, cnt.size)
    unmodelled = np.flatnonzero(cnt[syms] == 0)
    if unmodelled.size:
        i = int(unmodelled[0])
        raise ValueError(
            f"symbols[{i}]={int(syms[i])} has count 0; allowed: symbols with non-zero counts"
        )
    if _single_symbol(cnt) is not None:
        return []
    cum = _cumulative(cnt)
    precision = arithmetic_precision(cum[-1])
    low, high, pending, out = 0, (1 << precision) - 1, 0, []
    for s in syms.tolist():
        low, high = _narrow(low, high, cum, s)
        low, high, pending = _encoder_renormalize(low, high, pending, out, precision)
    _emit(out, 0 if low < 1 << (precision - 2) else 1, pending + 1)
    return out


def _read_padded(bits: Sequence[int], i: int) -> int:
    """``bits[i]``, or 0 past the end (the termination makes any continuation decode the same)."""
    return _bit(bits, i) if i < len(bits) else 0


def _arithmetic_decode_at(
    bits: Sequence[int], pos: int, counts: np.ndarray, num_symbols: int
) -> tuple[np.ndarray, int]:
    """Decode ``num_symbols`` symbols starting at ``pos``; returns ``(symbols (D,), end)``.

    ``end`` is where the codeword ends: the encoder emits exactly one bit per renormalisation
    shift (now or as a pending bit) plus two termination bits, so ``end = pos + shifts + 2``.
    """
    only = _single_symbol(counts)
    if only is not None:
        return np.full(num_symbols, only, dtype=np.int64), pos
    cum = _cumulative(counts)
    total, precision = cum[-1], arithmetic_precision(cum[-1])
    half, quarter = 1 << (precision - 1), 1 << (precision - 2)
    low, high, nxt, value = 0, (1 << precision) - 1, pos, 0
    for _ in range(precision):
        value, nxt = 2 * value + _read_padded(bits, nxt), nxt + 1
    out = np.empty(num_symbols, dtype=np.int64)
    for i in range(num_symbols):
        target = ((value - low + 1) * total - 1) // (high - low + 1)
        out[i] = s = bisect.bisect_right(cum, target) - 1
        low, high = _narrow(low, high, cum, s)
        while True:  # the encoder's renormalisation, mirrored on value
            if high < half:
                pass
            elif low >= half:
                low, high, value = low - half, high - half, value - half
            elif low >= quarter and high < half + quarter:
                low, high, value = low - quarter, high - quarter, value - quarter
            else:
                break
            low, high = 2 * low, 2 * high + 1
            value, nxt = 2 * value + _read_padded(bits, nxt), nxt + 1
    return out, nxt - precision + 2


def arithmetic_decode(
    bits: Sequence[int], counts: np.ndarray, num_symbols: int, pos: int = 0
) -> np.ndarray:
    """Inverse of :func:`arithmetic_encode`: ``num_symbols`` symbols (shape (D,), int64).

    Reads the codeword starting at ``pos``; bits after its end are ignored. ``ValueError`` if
    ``bits`` ends before the codeword does.
    """
    cnt = _check_counts(counts)
    num_symbols = _check_positive_int("num_symbols", num_symbols)
    symbols, end = _arithmetic_decode_at(bits, pos, cnt, num_symbols)
    if end > len(bits):
        raise ValueError(f"bits ends at position {len(bits)}; allowed: a complete codeword")
    return symbols


# ---- the whole self-delimiting message --------------------------------------------------------
class CodeLength(NamedTuple):
    """Bits of each field of the self-delimiting message (see the module docstring)."""

    dim: int  #: Elias delta of D
    levels: int  #: Elias delta of L
    counts: int  #: (L − 1)·⌈log₂(D + 1)⌉
    payload: int  #: length of the actual arithmetic code
    total: int  #: the sum: K for the Occam bound


def _count_width(dim: int) -> int:
    """``⌈log₂(D + 1)⌉``: bits for one count in ``[0, D]``."""
    return dim.bit_length()


def _symbol_counts(symbols: object, num_levels: object) -> tuple[np.ndarray, np.ndarray, int]:
    """Checked ``(symbols (D,), counts (L,), L)``."""
    num_levels = _check_positive_int("num_levels", num_levels)
    syms = _check_symbols(symbols, num_levels)
    return syms, np.bincount(syms, minlength=num_levels), num_levels


def code_length(symbols: np.ndarray, num_levels: int) -> CodeLength:
    """Length in bits of :func:`encode` ``(symbols, num_levels)``, itemised (runs the encoder)."""
    syms, counts, num_levels = _symbol_counts(symbols, num_levels)
    dim = syms.size
    parts = (
        elias_delta_bits(dim),
        elias_delta_bits(num_levels),
        (num_levels - 1) * _count_width(dim),
        len(arithmetic_encode(syms, counts)),
    )
    return CodeLength(*parts, total=sum(parts))


def encode(symbols: np.ndarray, num_levels: int) -> Bits:
    """The self-delimiting message for ``symbols`` (shape (D,), ints in ``[0, num_levels)``)."""
    syms, counts, num_levels = _symbol_counts(symbols, num_levels)
    width = _count_width(syms.size)
    out = elias_delta_encode(syms.size) + elias_delta_encode(num_levels)
    for c in counts[:-1].tolist():
        out += binary_encode(c, width)
    return out + arithmetic_encode(syms, counts)


def _decode_counts(bits: Sequence[int], pos: int, dim: int, levels: int) -> tuple[np.ndarray, int]:
    """Read the L − 1 explicit counts and imply the last; returns ``(counts (L,), new_pos)``."""
    counts = []
    for _ in range(levels - 1):
        c, pos = binary_decode(bits, pos, _count_width(dim))
        counts.append(c)
    if sum(counts) > dim:
        raise ValueError(f"counts sum to {sum(counts)} > D={dim}; allowed: a valid message")
    return np.array(counts + [dim - sum(counts)], dtype=np.int64), pos


def decode(bits: Sequence[int]) -> tuple[np.ndarray, int]:
    """Inverse of :func:`encode`: ``(symbols (D,) int64, num_levels)``.

    Accepts exactly the codewords: ``ValueError`` if ``bits`` is not one message (truncated,
    trailing bits, counts summing past D, or a payload the encoder would not have produced;
    checked by re-encoding).
    """
    dim, pos = elias_delta_decode(bits, 0)
    levels, pos = elias_delta_decode(bits, pos)
    counts, pos = _decode_counts(bits, pos, dim, levels)
    symbols, end = _arithmetic_decode_at(bits, pos, counts, dim)
    if end != len(bits):
        raise ValueError(
            f"bits has length {len(bits)} but the message ends at {end}; allowed: one message"
        )
    if encode(symbols, levels) != [int(b) for b in bits]:
        raise ValueError("bits is not a codeword (non-canonical termination); allowed: one message")
    return symbols, levels


def empirical_entropy_bits(symbols: np.ndarray, num_levels: int) -> float:
    """``D·H(p̂)`` in bits, ``p̂`` the empirical distribution of ``symbols`` (shape (D,))."""
    syms, counts, _ = _symbol_counts(symbols, num_levels)
    c = counts[counts > 0].astype(np.float64)
    return float(np.sum(c * np.log2(syms.size / c)))
