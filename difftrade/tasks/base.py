"""The Task protocol and the shared token vocabulary.

A task is a frozen dataclass; ``sample(key, d)`` is a pure function of a PRNG key and a
difficulty level ``d`` that may be a traced int32 scalar, so every level of a task runs
through one compiled program. Shapes depend only on ``d_max`` (``seq_len``), never on ``d``.

Sequence layout (every task)::

    <bos> prompt ... = answer ... <eos> <pad> <pad> ...

``loss_mask[t]`` is True on the answer tokens and the closing ``<eos>`` (the SFT loss): the model
at position ``t - 1`` is trained to predict ``tokens[t]`` where ``loss_mask[t]``.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

SPECIALS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>")
SYMBOLS: tuple[str, ...] = (
    "=",
    "+",
    "-",
    "*",
    "%",
    ",",
    ";",
    ":",
    ">",
    "|",
    "?",
    "#",
    "^",
    "(",
    ")",
)
DIGITS: tuple[str, ...] = tuple("0123456789")
LETTERS: tuple[str, ...] = tuple("abcdefghijklmnopqrstuvwxyz")
VOCAB: tuple[str, ...] = SPECIALS + SYMBOLS + DIGITS + LETTERS
VOCAB_SIZE: int = 64  # padded to a multiple of 8 for the embedding/logit matmuls
TOKEN_ID: dict[str, int] = {t: i for i, t in enumerate(VOCAB)}
PAD, BOS, EOS = TOKEN_ID["<pad>"], TOKEN_ID["<bos>"], TOKEN_ID["<eos>"]
LEVEL_STRUCTURES: tuple[str, ...] = ("exact", "nested")
ANSWER = TOKEN_ID["="]  # the answer marker: every answer starts right after the first "="
DIGIT0 = TOKEN_ID["0"]
LETTER0 = TOKEN_ID["a"]
assert len(VOCAB) <= VOCAB_SIZE


def tok(symbol: str) -> int:
    """Token id of one vocabulary symbol."""
    return TOKEN_ID[symbol]


def encode(symbols: list[str] | str) -> list[int]:
    """Token ids of a list of symbols (a plain string is split into characters)."""
    return [TOKEN_ID[s] for s in symbols]


def decode(tokens: np.ndarray | list[int]) -> list[str]:
    """Symbols of a token row, padding dropped."""
    return [VOCAB[int(t)] for t in np.asarray(tokens).tolist() if int(t) != PAD]


def split_prompt_answer(tokens: np.ndarray, loss_mask: np.ndarray) -> tuple[str, str]:
    """(prompt text, answer text) of one example, read off the tokens and the mask.

    The prompt is every symbol between ``<bos>`` and the "=" marker; the answer is
    the masked symbols without the closing ``<eos>``. Used by tests to compare a generated
    answer with a task's independent reference solver.
    """
    tokens, loss_mask = np.asarray(tokens), np.asarray(loss_mask).astype(bool)
    first = int(np.argmax(loss_mask))
    # tokens[first - 1] is the "=" answer marker: not part of the prompt.
    prompt = [VOCAB[t] for t in tokens[: first - 1].tolist() if t not in (PAD, BOS)]
    answer = [VOCAB[t] for t in tokens[loss_mask].tolist() if t != EOS]
    return "".join(prompt), "".join(answer)


def example_key(
    root: jax.Array, split: int | jax.Array, level: int | jax.Array, index: int | jax.Array
) -> jax.Array:
    """Key of example ``index`` of ``split`` at ``level``: three nested ``fold_in``s.

    Lives here (re-exported by ``difftrade.tasks.data``) so ``Task.sample_at`` needs no import of the
    data layer.
    """
    return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, split), level), index)


@dataclasses.dataclass(frozen=True)
class Task(abc.ABC):
    """A family of problems indexed by an integer difficulty ``d`` in ``[d_min, d_max]``.

    Subclasses set ``name``, ``difficulty_meaning``, implement ``seq_len``, ``level_structure``,
    ``_sample``, ``solve`` and may override ``sample_space_size``.

    Out-of-range *traced* difficulties cannot raise inside ``jit``: they are **clamped** to
    ``[d_min, d_max]`` (documented and tested). Python ints out of range raise ``ValueError``.
    """

    name: ClassVar[str] = "task"
    difficulty_meaning: ClassVar[str] = ""
    d_min: int = 1
    d_max: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.d_min, int) or not isinstance(self.d_max, int):
            raise ValueError(  # noqa: TRY004 - the CLI reports ValueError
                f"{self.name}: d_min/d_max must be ints, got {self.d_min!r}, {self.d_max!r}"
            )
        if self.d_min < 1 or self.d_max < self.d_min:
            raise ValueError(
                f"{self.name}: need 1 <= d_min <= d_max, got d_min={self.d_min}, d_max={self.d_max}"
            )
        if self.level_structure not in LEVEL_STRUCTURES:
            raise ValueError(
                f"{self.name}: level_structure={self.level_structure!r}; allowed: {', '.join(LEVEL_STRUCTURES)}"
            )

    # ---- shapes -------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def seq_len(self) -> int:
        """Fixed sequence length (a function of ``d_max`` only)."""

    @property
    @abc.abstractmethod
    def level_structure(self) -> str:
        """How the levels' problem distributions relate; one of ``LEVEL_STRUCTURES``.

        * ``"exact"``: the levels' supports are disjoint (a problem belongs to exactly one level).
          Every mixture draws a level's problems from that level's own generator, so the density
          ratio between two mixtures of levels is constant on each level.
        * ``"nested"``: level ``d``'s support contains every easier level's, and a problem drawn
          at level ``d`` is uniform over its support, whose size is ``sample_space_size(d)``.
          Importance weights are constant on shells (problems of level ``d`` not in ``d - 1``).

        The shift bounds read this to choose the atoms on which the density ratio is constant; a
        wrong declaration makes those bounds invalid, so every task states it.
        """

    @property
    def levels(self) -> tuple[int, ...]:
        """All difficulty levels, easiest first."""
        return tuple(range(self.d_min, self.d_max + 1))

    @property
    def num_levels(self) -> int:
        return self.d_max - self.d_min + 1

    # ---- sampling -----------------------------------------------------------------------
    def check_difficulty(self, d: int | jax.Array, field: str = "difficulty") -> jax.Array:
        """Validate a Python int (raises) or clamp a traced value; returns int32 scalar."""
        if isinstance(d, (int, np.integer)) and not self.d_min <= int(d) <= self.d_max:
            raise ValueError(
                f"{field}={int(d)} is out of range for task {self.name!r}: "
                f"allowed {self.d_min}..{self.d_max}"
            )
        return jnp.clip(jnp.asarray(d, jnp.int32), self.d_min, self.d_max)

    def sample(self, key: jax.Array, d: int | jax.Array) -> tuple[jax.Array, jax.Array]:
        """One example at level ``d``.

        Returns ``tokens`` int32 ``[seq_len]`` and ``loss_mask`` bool ``[seq_len]``.
        Jittable and vmappable over ``key`` and ``d``.
        """
        tokens, mask = self._sample(key, self.check_difficulty(d))
        return tokens.astype(jnp.int32), mask.astype(bool)

    @abc.abstractmethod
    def _sample(self, key: jax.Array, d: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``d`` is a clamped int32 scalar (possibly traced)."""

    def sample_at(
        self, root: jax.Array, split: int, level: int | jax.Array, index: int | jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Example ``index`` of ``split`` at ``level``: tokens int32 ``[seq_len]``, mask bool ``[seq_len]``.

        The one place the data layer turns an address into an example. Generator tasks sample
        from ``example_key(root, split, level, index)``; a task backed by a finite, pre-scored
        bank (``difftrade.tasks.bank.BankTask``) looks the row up instead. ``level`` and ``index``
        may be traced (vmapped); ``split`` too here, but a bank task needs a Python int.
        """
        return self.sample(example_key(root, split, level, index), level)

    # ---- reference and display ----------------------------------------------------------
    @abc.abstractmethod
    def solve(self, prompt: str) -> str:
        """Plain-Python reference solver: prompt text (as in ``split_prompt_answer``) to answer text.

        Must not call the generator's code path: tests compare it with generated answers.
        """

    def sample_space_size(self, d: int) -> int | None:
        """Number of distinct problems at level ``d`` if finite and known, else None."""
        return None

    def render(
        self, tokens: np.ndarray | jax.Array, loss_mask: np.ndarray | jax.Array | None = None
    ) -> str:
        """Readable text of one example; with a mask the answer region is wrapped in [ ]."""
        toks = np.asarray(tokens).tolist()
        mask = (
            [False] * len(toks)
            if loss_mask is None
            else np.asarray(loss_mask).astype(bool).tolist()
        )
        out, inside = [], False
        for t, m in zip(toks, mask):
            if t == PAD:
                continue
            if m and not inside:
                out.append("[")
                inside = True
            if not m and inside:
                out.append("]")
                inside = False
            s = VOCAB[t]
            out.append(" " + s + " " if s.startswith("<") else s)
        if inside:
            out.append("]")
        return "".join(out).strip().replace("  ", " ")

    def describe(self) -> str:
        """One line: name, levels, meaning of difficulty."""
        return f"{self.name} [d={self.d_min}..{self.d_max}, seq_len={self.seq_len}]: {self.difficulty_meaning}"


def assemble(
    prompt: jax.Array, answer: jax.Array, answer_len: jax.Array, seq_len: int
) -> tuple[jax.Array, jax.Array]:
    """Build ``<bos> prompt = answer[:answer_len] <eos> <pad>...`` with static shapes.

    ``prompt`` int32 ``[P]`` (already contains whatever separators the task wants, but not the
    leading <bos> or the "=" marker); ``answer`` int32 ``[A]``; ``answer_len`` traced int in
    ``[0, A]``. Returns tokens ``[seq_len]`` and the loss mask ``[seq_len]`` (answer + <eos>).
    ``seq_len`` must be at least ``P + A + 3``.
    """
    p, a = prompt.shape[0], answer.shape[0]
    assert seq_len >= p + a + 3, (seq_len, p, a)
    head = jnp.concatenate(
        [jnp.array([BOS], jnp.int32), prompt.astype(jnp.int32), jnp.array([ANSWER], jnp.int32)]
    )
    pos = jnp.arange(seq_len)
    start = p + 2  # index of the first answer token
    rel = pos - start
    answer_part = jnp.where(
        rel < answer_len, answer[jnp.clip(rel, 0, a - 1)], jnp.where(rel == answer_len, EOS, PAD)
    )
    tokens = jnp.where(
        pos < start, jnp.pad(head, (0, seq_len - start))[jnp.clip(pos, 0, seq_len - 1)], answer_part
    )
    mask = (rel >= 0) & (rel <= answer_len)
    return tokens.astype(jnp.int32), mask


def assemble_variable(
    body: jax.Array, body_len: jax.Array, answer: jax.Array, answer_len: jax.Array, seq_len: int
) -> tuple[jax.Array, jax.Array]:
    """Like ``assemble`` but the prompt has a traced length ``body_len`` (``body`` is padded).

    Layout: ``<bos> body[:body_len] = answer[:answer_len] <eos> <pad>...``.
    Returns tokens ``[seq_len]`` int32 and loss mask ``[seq_len]`` bool.
    """
    p, a = body.shape[0], answer.shape[0]
    assert seq_len >= p + a + 3, (seq_len, p, a)
    pos = jnp.arange(seq_len)
    start = body_len + 2
    rel = pos - start
    body_tok = body[jnp.clip(pos - 1, 0, p - 1)]
    ans_tok = answer[jnp.clip(rel, 0, a - 1)]
    tokens = jnp.where(
        pos == 0,
        BOS,
        jnp.where(
            pos <= body_len,
            body_tok,
            jnp.where(
                pos == body_len + 1,
                ANSWER,
                jnp.where(rel < answer_len, ans_tok, jnp.where(rel == answer_len, EOS, PAD)),
            ),
        ),
    )
    mask = (rel >= 0) & (rel <= answer_len)
    return tokens.astype(jnp.int32), mask
