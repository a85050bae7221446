"""difftrade.theory.coding: Elias codes, the arithmetic coder, the self-delimiting message."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from difftrade.theory import coding as C


def _as_str(bits: list[int]) -> str:
    return "".join(map(str, bits))


def _assert_prefix_free_and_kraft(codewords: list[list[int]]) -> None:
    """No codeword is a prefix of another (nor equal), and Σ 2^{−ℓ} ≤ 1 exactly.

    In lexicographic order a codeword that is a prefix of another is a prefix of its successor.
    """
    words = sorted(_as_str(w) for w in codewords)
    for a, b in itertools.pairwise(words):
        assert not b.startswith(a), (a, b)
    assert sum(Fraction(1, 2 ** len(w)) for w in words) <= 1


def _rounding_slack_bits(counts: np.ndarray) -> float:
    """ε = (#symbols used)·T/(2^{P−2} ln 2): the integer interval's rounding, both directions.

    Per symbol the integer sub-interval differs from ``r·c/T`` by < 1, with ``r ≥ 2^{P−2}``, so its
    log differs by < ``T/(2^{P−2} c ln 2)``; summed over the ``c`` occurrences of each symbol.
    """
    total = int(counts.sum())
    used = int(np.count_nonzero(counts))
    return used * total / (2.0 ** (C.arithmetic_precision(total) - 2) * math.log(2))


def test_prefix_checker_negative_controls() -> None:
    with pytest.raises(AssertionError):
        _assert_prefix_free_and_kraft([[0, 1], [1], [0, 1, 1]])  # 01 is a prefix of 011
    with pytest.raises(AssertionError):
        _assert_prefix_free_and_kraft([[1], [1]])  # equal codewords


# ---- Elias codes ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("k", "gamma", "delta"),
    [
        (1, "1", "1"),
        (2, "010", "0100"),
        (3, "011", "0101"),
        (4, "00100", "01100"),
        (5, "00101", "01101"),
        (10, "0001010", "00100010"),
        (17, "000010001", "001010001"),
    ],
)
def test_elias_textbook_codewords(k: int, gamma: str, delta: str) -> None:
    assert _as_str(C.elias_gamma_encode(k)) == gamma
    assert _as_str(C.elias_delta_encode(k)) == delta


def test_elias_lengths_and_round_trips_up_to_5000() -> None:
    stream: list[int] = []
    for k in range(1, 5001):
        lg = math.floor(math.log2(k))  # exact: powers of two are exact floats
        gamma, delta = C.elias_gamma_encode(k), C.elias_delta_encode(k)
        assert len(gamma) == 2 * lg + 1 == C.elias_gamma_bits(k)
        assert len(delta) == lg + 2 * math.floor(math.log2(lg + 1)) + 1 == C.elias_delta_bits(k)
        assert C.elias_gamma_decode(gamma) == (k, len(gamma))
        assert C.elias_delta_decode(delta) == (k, len(delta))
        stream += gamma + delta
    pos = 0
    for k in range(1, 5001):  # a concatenation decodes back: both codes are self-delimiting
        g, pos = C.elias_gamma_decode(stream, pos)
        d, pos = C.elias_delta_decode(stream, pos)
        assert g == d == k
    assert pos == len(stream)


def test_elias_codes_are_prefix_free() -> None:
    for encode in (C.elias_gamma_encode, C.elias_delta_encode):
        _assert_prefix_free_and_kraft([encode(k) for k in range(1, 2049)])


@pytest.mark.parametrize("k", [0, -3, 2.5, True, "7", None])
def test_elias_bad_k(k: object) -> None:
    for fn in (C.elias_gamma_encode, C.elias_delta_encode, C.elias_delta_bits):
        with pytest.raises(ValueError, match=r"^k=.*allowed: an integer >= 1"):
            fn(k)


def test_elias_decoders_reject_truncated_and_non_bits() -> None:
    with pytest.raises(ValueError, match="bits ends"):
        C.elias_delta_decode(C.elias_delta_encode(1000)[:-1])
    with pytest.raises(ValueError, match="bits ends"):
        C.elias_gamma_decode([0, 0, 0])
    with pytest.raises(ValueError, match=r"bits\[1\]=2"):
        C.elias_gamma_decode([0, 2, 1])


# ---- arithmetic coder and the whole message ---------------------------------------------------
def _distribution(kind: str, levels: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "uniform":
        return np.full(levels, 1.0 / levels)
    if kind == "geometric":  # skewed: most mass on a few levels
        p = 0.5 ** np.arange(levels)
        return p / p.sum()
    return rng.dirichlet(np.full(levels, 0.2))  # sparse: many levels nearly unused


@pytest.mark.parametrize("levels", [2, 3, 16, 256])
@pytest.mark.parametrize("kind", ["uniform", "geometric", "dirichlet"])
def test_round_trip_and_payload_near_entropy(levels: int, kind: str) -> None:
    rng = np.random.default_rng(1000 * levels + len(kind))
    for dim in (1, 2, 17, 1000, 5000):
        symbols = rng.choice(levels, size=dim, p=_distribution(kind, levels, rng))
        bits = C.encode(symbols, levels)
        decoded, decoded_levels = C.decode(bits)
        assert decoded_levels == levels and np.array_equal(decoded, symbols)
        length = C.code_length(symbols, levels)
        assert len(bits) == length.total == sum(length[:4])
        assert length.dim == C.elias_delta_bits(dim) and length.levels == C.elias_delta_bits(levels)
        assert length.counts == (levels - 1) * math.ceil(math.log2(dim + 1))
        # D·Ĥ − ε < payload ≤ D·Ĥ + 2 + ε: the codeword names a dyadic interval inside the final
        # interval (so no shorter than −log2 of its width) with 2 termination bits (so no more
        # than 2 bits longer), and the width is the model probability up to the rounding ε
        counts = np.bincount(symbols, minlength=levels)
        entropy, eps = C.empirical_entropy_bits(symbols, levels), _rounding_slack_bits(counts)
        assert eps < 1e-4
        assert entropy - eps < length.payload <= entropy + 2 + eps, (dim, entropy, length)
        # the payload alone: decodes with the counts, and any continuation decodes the same
        payload = C.arithmetic_encode(symbols, counts)
        assert len(payload) == length.payload
        for tail in ([], [1] * 80, rng.integers(0, 2, 80).tolist()):
            assert np.array_equal(C.arithmetic_decode(payload + tail, counts, dim), symbols)


def test_payload_under_a_mismatched_model_round_trips() -> None:
    """The static model need not be the empirical counts: any counts > 0 on the used symbols."""
    rng = np.random.default_rng(7)
    counts = np.array([5, 0, 1, 100, 3])
    symbols = rng.choice([0, 2, 3, 4], size=3000)
    bits = C.arithmetic_encode(symbols, counts)
    assert np.array_equal(C.arithmetic_decode(bits, counts, 3000), symbols)
    p = counts / counts.sum()
    ideal = -np.log2(p[symbols]).sum()  # the cross-entropy code length
    assert ideal - 1e-4 < len(bits) <= ideal + 2 + 1e-4


@pytest.mark.parametrize(
    ("symbols", "levels"),
    [
        ([0], 1),  # D = 1, L = 1
        ([0] * 777, 1),  # L = 1
        ([3] * 50, 5),  # one symbol type only, others unused: empty payload
        ([4], 5),  # D = 1
        ([0, 1], 2),
        ([1] * 9 + [0], 2),
    ],
)
def test_edge_cases(symbols: list[int], levels: int) -> None:
    symbols = np.array(symbols)
    bits = C.encode(symbols, levels)
    decoded, decoded_levels = C.decode(bits)
    assert decoded_levels == levels and np.array_equal(decoded, symbols)
    length = C.code_length(symbols, levels)
    assert len(bits) == length.total
    if len(set(symbols.tolist())) == 1:
        assert length.payload == 0 and C.empirical_entropy_bits(symbols, levels) == 0.0


def test_whole_message_prefix_free_by_brute_force() -> None:
    """Every sequence (hence every count vector) for D ≤ 6, L ≤ 4, all D and L mixed together."""
    codewords = []
    for dim in range(1, 7):
        for levels in range(1, 5):
            for seq in itertools.product(range(levels), repeat=dim):
                bits = C.encode(np.array(seq), levels)
                decoded, decoded_levels = C.decode(bits)
                assert decoded_levels == levels and tuple(decoded.tolist()) == seq
                codewords.append(bits)
    assert len(codewords) == sum(L**D for D in range(1, 7) for L in range(1, 5))
    _assert_prefix_free_and_kraft(codewords)


@pytest.mark.parametrize(("counts", "alphabet"), [([3, 1, 2], [0, 1, 2]), ([2, 0, 1], [0, 2])])
def test_arithmetic_code_prefix_free_for_fixed_model_and_length(
    counts: list[int], alphabet: list[int]
) -> None:
    """For a fixed model and a fixed D all sequences get a prefix-free set (the docstring claim)."""
    counts = np.array(counts)
    for dim in range(1, 8):
        words = []
        for seq in itertools.product(alphabet, repeat=dim):
            bits = C.arithmetic_encode(np.array(seq), counts)
            assert tuple(C.arithmetic_decode(bits, counts, dim).tolist()) == seq
            words.append(bits)
        _assert_prefix_free_and_kraft(words)


def test_payloads_with_equal_counts_prefix_free() -> None:
    """D = 8, L = 3: the payloads of the sequences sharing a count vector are prefix-free."""
    groups: dict[tuple[int, ...], list[list[int]]] = {}
    for seq in itertools.product(range(3), repeat=8):
        counts = np.bincount(seq, minlength=3)
        groups.setdefault(tuple(counts), []).append(C.arithmetic_encode(np.array(seq), counts))
    assert len(groups) == math.comb(8 + 2, 2)
    for words in groups.values():
        _assert_prefix_free_and_kraft(words)


def test_decode_rejects_truncated_trailing_and_non_canonical() -> None:
    rng = np.random.default_rng(3)
    symbols = rng.choice(4, size=40, p=[0.7, 0.1, 0.1, 0.1])
    bits = C.encode(symbols, 4)
    for cut in range(len(bits)):
        with pytest.raises(ValueError):
            C.decode(bits[:cut])
    with pytest.raises(ValueError, match="message ends"):
        C.decode(bits + [0])
    counts = np.bincount(symbols, minlength=4)
    with pytest.raises(ValueError, match="bits ends"):
        C.arithmetic_decode(C.arithmetic_encode(symbols, counts)[:-1], counts, 40)


def test_empirical_entropy_closed_forms() -> None:
    assert C.empirical_entropy_bits(np.arange(64) % 8, 8) == pytest.approx(64 * 3.0, rel=1e-15)
    assert C.empirical_entropy_bits(np.array([0, 0, 0, 1]), 2) == pytest.approx(
        4 * (0.75 * math.log2(4 / 3) + 0.25 * 2), rel=1e-15
    )
    assert C.empirical_entropy_bits(np.array([2, 2]), 3) == 0.0


# ---- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("symbols", "levels", "pattern"),
    [
        ([0, 1, 4], 4, r"^symbols\[2\]=4 is out of range; allowed: integers in \[0, 4\)"),
        ([0, -1], 4, r"^symbols\[1\]=-1 is out of range"),
        ([0.0, 1.0], 4, r"^symbols has dtype float64 \(non-integer\)"),
        ([0.5], 4, r"^symbols has dtype float64"),
        ([], 4, r"^symbols has shape \(0,\); allowed: a non-empty 1-D array"),
        ([[0, 1]], 4, r"^symbols has shape \(1, 2\)"),
        ([0], 0, r"^num_levels=0 is invalid; allowed: an integer >= 1"),
        ([0], 2.0, r"^num_levels=2.0 is invalid"),
        ([0], True, r"^num_levels=True is invalid"),
    ],
)
def test_bad_symbols_and_levels(symbols: object, levels: object, pattern: str) -> None:
    for fn in (C.encode, C.code_length, C.empirical_entropy_bits):
        with pytest.raises(ValueError, match=pattern):
            fn(np.array(symbols), levels)


def test_bad_counts_and_num_symbols() -> None:
    with pytest.raises(ValueError, match=r"^symbols\[1\]=1 has count 0"):
        C.arithmetic_encode(np.array([0, 1]), np.array([2, 0]))
    with pytest.raises(ValueError, match=r"^counts=\[-1, 3\] is invalid"):
        C.arithmetic_encode(np.array([1]), np.array([-1, 3]))
    with pytest.raises(ValueError, match=r"^counts=\[0, 0\] is invalid"):
        C.arithmetic_decode([], np.array([0, 0]), 1)
    with pytest.raises(ValueError, match=r"^counts has dtype float64"):
        C.arithmetic_decode([], np.array([1.0, 2.0]), 1)
    with pytest.raises(ValueError, match=r"^num_symbols=0 is invalid"):
        C.arithmetic_decode([], np.array([1, 2]), 0)
