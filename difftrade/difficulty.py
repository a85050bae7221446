"""Model-based difficulty: score examples with a reference model and bin the scores into levels.

Real pipelines do not know a generator's nominal level; they score candidate examples with a
reference model and call high-loss examples hard. ``model_based_task`` does exactly that to a
synthetic task, so the same grid (difficulty × budget × seed) runs on *model-based* levels:

1. **Pools.** Draw examples uniformly over the source task's nominal levels, one pool per split
   (``train``, ``test``, ``bound``) from that split's addressable stream with root ``key``
   (``data.examples``), keeping only distinct problems: a real pool holds each question once,
   and no problem is in two splits. A problem that several streams produce belongs to the
   split that produces it first in the interleaved order (index 0 of train, test, bound, then
   index 1, ...), so every split's pool has the same distribution; had train simply gone first
   it would take the easy problems of small nominal levels (addition level 1 has 100) and leave
   the other splits' lowest-loss levels short. Such levels contribute at most their distinct
   problems, shared among the splits.
2. **Scores.** Each example's score is the reference model's mean answer-token cross-entropy
   (``score``), the loss a pipeline would rank by.
3. **Levels.** The train pool has exactly ``num_levels * per_level`` examples and is cut into
   ``num_levels`` equal-count quantile bins of the score (level 1 = lowest loss; ties keep pool
   order). The inner bin edges (the lowest score of bins 2..K) are then applied to every other
   split: an example with ``edges[k-1] <= score < edges[k]`` is at level ``k + 1`` (ties at an
   edge go up). A split takes the first ``per_level`` pool examples that fall into each bin; while
   a bin is short the streams are read further, round by round (``num_levels * per_level`` more
   indices each), up to ``max_pool_factor`` rounds, and then a ``ValueError`` names the short
   levels (lower ``per_level``, or raise ``max_pool_factor``).
4. **Banks.** Level ``k`` of a split is a finite bank of ``per_level`` rows kept in pool order
   (so the first ``n`` rows are a random subset of the bin, not its easiest part);
   ``BankTask.sample_at`` returns row ``index mod per_level``. Budgets stay nested (budget ``n``
   = the first ``n`` rows) and repeat nothing until ``n > per_level``.

A bank is a fixed pool, as in practice: the data root (hence the member seed) does not change
which examples a member trains on; seeds vary the initialisation and minibatch order only.

``agreement`` measures how the two notions of difficulty agree: Spearman's rank correlation
between reference loss and nominal level, and the mean nominal level of each model-based level.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from difftrade import data
from difftrade.evaluate import example_metrics
from difftrade.model import ModelConfig, Params, graphdef
from difftrade.tasks.base import Task

BANK_SPLITS: tuple[str, ...] = ("train", "test", "bound")
_SPLIT_NAME: dict[int, str] = {v: k for k, v in data.SPLITS.items()}


@dataclasses.dataclass(frozen=True, eq=False)
class Bank:
    """One split's examples, level-major (``K`` levels × ``P`` rows per level).

    tokens int32 ``[K, P, L]``, mask bool ``[K, P, L]``, score float32 ``[K, P]`` (reference
    loss), nominal int32 ``[K, P]`` (the source task's level of each example), index int64
    ``[K, P]`` (the example's index in its split's pool stream).
    """

    tokens: np.ndarray
    mask: np.ndarray
    score: np.ndarray
    nominal: np.ndarray
    index: np.ndarray

    def __post_init__(self) -> None:
        k, p, length = self.tokens.shape
        if self.mask.shape != (k, p, length):
            raise ValueError(f"bank mask has shape {self.mask.shape}; expected {(k, p, length)}")
        for field in ("score", "nominal", "index"):
            if getattr(self, field).shape != (k, p):
                raise ValueError(f"bank {field} has shape {getattr(self, field).shape}; expected {(k, p)}")
        # Compact copies for the traced lookup (the bank becomes a constant of the compiled
        # program; the vocabulary fits in int8, a quarter of the bytes).
        object.__setattr__(self, "_tokens8", np.ascontiguousarray(self.tokens, dtype=np.int8))
        object.__setattr__(self, "_mask", np.ascontiguousarray(self.mask, dtype=bool))

    @property
    def num_levels(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def per_level(self) -> int:
        return int(self.tokens.shape[1])

    def rows(self, level_index: jax.Array, row: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Tokens int32 ``[L]`` and mask bool ``[L]`` of one row (traced indices allowed)."""
        tokens = jnp.asarray(self._tokens8)[level_index, row].astype(jnp.int32)  # type: ignore[attr-defined]
        return tokens, jnp.asarray(self._mask)[level_index, row]  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True, eq=False)
class BankTask(Task):
    """A task whose level ``k`` (1..K) is a finite, pre-scored bank of ``source`` examples.

    Holds arrays, so equality and hashing are by identity (compile caches key on the task).
    ``banks`` maps split names (``data.SPLITS`` keys; at least ``train``) to ``Bank``s with the
    same ``[K, P, source.seq_len]`` shape; ``edges`` float64 ``[K-1]`` are the inner bin edges on
    the reference loss. Build one with ``model_based_task``.
    """

    name: ClassVar[str] = "bank"
    difficulty_meaning: ClassVar[str] = "quantile bin of a reference model's answer loss (1 = lowest loss)"
    source: Task = dataclasses.field(kw_only=True)
    banks: Mapping[str, Bank] = dataclasses.field(kw_only=True)
    edges: np.ndarray = dataclasses.field(kw_only=True)

    __eq__ = object.__eq__  # the inherited dataclass __eq__/__hash__ compare d_min/d_max only
    __hash__ = object.__hash__

    def __post_init__(self) -> None:
        super().__post_init__()
        if "train" not in self.banks:
            raise ValueError(f"bank task needs a 'train' bank; has: {', '.join(self.banks) or 'none'}")
        for split, bank in self.banks.items():
            data.split_id(split)  # a known split name
            want = (self.num_levels, self.per_level, self.source.seq_len)
            if bank.tokens.shape != want:
                raise ValueError(f"bank {split!r} has shape {bank.tokens.shape}; expected {want} (levels, per_level, seq_len)")
        if np.shape(self.edges) != (self.num_levels - 1,):
            raise ValueError(f"edges has shape {np.shape(self.edges)}; expected ({self.num_levels - 1},)")

    @property
    def level_structure(self) -> str:
        return "exact"  # equal-count bins of one scored pool: each row lies in one bin

    @property
    def per_level(self) -> int:
        return self.banks["train"].per_level

    @property
    def seq_len(self) -> int:
        return self.source.seq_len

    def bank(self, split: str | int) -> Bank:
        """The bank of a split (name or ``data.SPLITS`` id); ValueError if there is none."""
        name = split if isinstance(split, str) else _SPLIT_NAME.get(int(split), str(split))
        if name not in self.banks:
            raise ValueError(f"split={name!r} has no bank in this model-based task; allowed: {', '.join(self.banks)}")
        return self.banks[name]

    def sample_at(
        self, root: jax.Array, split: int, level: int | jax.Array, index: int | jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Row ``index mod per_level`` of ``split``'s bank at ``level``; ``root`` is unused.

        Returns tokens int32 ``[seq_len]`` and mask bool ``[seq_len]``; ``level`` and ``index``
        may be traced (an out-of-range traced level is clamped, as for every task).
        """
        bank = self.bank(split)
        k = self.check_difficulty(level) - self.d_min
        return bank.rows(k, jnp.asarray(index, jnp.int32) % bank.per_level)

    def _sample(self, key: jax.Array, d: jax.Array) -> tuple[jax.Array, jax.Array]:
        """A uniformly random row of the train bank at level ``d``."""
        row = jax.random.randint(key, (), 0, self.per_level)
        return self.banks["train"].rows(d - self.d_min, row)

    def solve(self, prompt: str) -> str:
        return self.source.solve(prompt)

    def sample_space_size(self, d: int) -> int:
        """Finite: each level holds ``per_level`` distinct problems."""
        return self.per_level

    def describe(self) -> str:
        return (
            f"{self.name} of {self.source.name} [d={self.d_min}..{self.d_max}, {self.per_level} per level, "
            f"seq_len={self.seq_len}]: {self.difficulty_meaning}"
        )


# ---- scoring ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _scorer(model_cfg: ModelConfig):
    gdef = graphdef(model_cfg)
    return jax.jit(lambda params, tokens, mask: example_metrics(gdef, params, tokens, mask)[1])


def score(
    task: Task, params: Params, model_cfg: ModelConfig, tokens: np.ndarray | jax.Array,
    mask: np.ndarray | jax.Array, batch_size: int = 1024,
) -> np.ndarray:
    """Reference loss of each example: mean answer-token cross-entropy, float32 ``[B]``.

    tokens int32 ``[B, task.seq_len]``, mask bool ``[B, task.seq_len]``; ``params`` of one model
    (no member axis). Runs in fixed-size batches (bounded memory, few compiles).
    """
    tokens, mask = np.asarray(tokens), np.asarray(mask)
    if tokens.ndim != 2 or tokens.shape[1] != task.seq_len or mask.shape != tokens.shape:
        raise ValueError(f"score: tokens {tokens.shape} / mask {mask.shape}; expected [B, {task.seq_len}] each")
    if model_cfg.seq_len < task.seq_len - 1:
        raise ValueError(f"model.seq_len={model_cfg.seq_len} is shorter than the task's inputs ({task.seq_len - 1})")
    n = tokens.shape[0]
    # A few fixed shapes only (one compile each): the full batch, or a power of two for small n.
    batch = batch_size if n >= batch_size else 1 << max(n - 1, 0).bit_length()
    fn = _scorer(model_cfg)
    out = np.empty(n, np.float32)
    for start in range(0, n, batch):
        t, m = tokens[start : start + batch], mask[start : start + batch]
        pad = batch - t.shape[0]
        if pad:  # keep one shape: pad with copies of the first row, drop their scores
            t, m = np.concatenate([t, np.repeat(t[:1], pad, 0)]), np.concatenate([m, np.repeat(m[:1], pad, 0)])
        out[start : start + batch] = np.asarray(fn(params, jnp.asarray(t), jnp.asarray(m)))[: batch - pad]
    return out


# ---- pools --------------------------------------------------------------------------------------
# The split is traced (generator tasks fold it into keys), so all splits share one compile.
_examples = jax.jit(data.examples, static_argnums=(0,))


def draw_pool(source: Task, key: jax.Array, split: str, start: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool examples ``start .. start+count-1`` of ``split``, uniform over nominal levels.

    Returns tokens int32 ``[count, L]``, mask bool ``[count, L]``, nominal level int32 ``[count]``.
    """
    weights = jnp.asarray(data.uniform(source), jnp.float32)
    if isinstance(source, BankTask):
        raise TypeError("draw_pool: the source must be a generator task, not a bank")
    split_id = jnp.int32(data.split_id(split))
    tokens, mask, levels = _examples(source, key, split_id, weights, jnp.arange(start, start + count))
    return np.asarray(tokens), np.asarray(mask), np.asarray(levels)


def _row_keys(tokens: np.ndarray) -> list[bytes]:
    rows = np.ascontiguousarray(tokens, dtype=np.int8)  # the vocabulary fits in int8
    return [r.tobytes() for r in rows]


def model_based_task(
    source_task: Task, ref_params: Params, model_cfg: ModelConfig, *, num_levels: int, per_level: int,
    key: jax.Array, splits: tuple[str, ...] = BANK_SPLITS, max_pool_factor: int = 8, batch_size: int = 1024,
) -> BankTask:
    """Score pools of ``source_task`` with a reference model and bin them into ``num_levels`` levels.

    See the module docstring for the procedure. ``key`` is the root of the pool streams
    (independent of any run's data root). The streams are read in rounds of
    ``num_levels * per_level`` indices, at most ``max_pool_factor`` rounds. Returns a
    ``BankTask`` with levels ``1..num_levels``, a bank per split (scores and nominal levels
    recorded) and the bin edges. Raises ``ValueError`` if the source has too few distinct
    problems for the train bank or a level of another split cannot be filled.
    """
    if not isinstance(num_levels, int) or num_levels < 1:
        raise ValueError(f"num_levels={num_levels!r}; allowed: an integer >= 1")
    if not isinstance(per_level, int) or per_level < 1:
        raise ValueError(f"per_level={per_level!r}; allowed: an integer >= 1")
    if splits[:1] != ("train",) or len(set(splits)) != len(splits):
        raise ValueError(f"splits={splits!r}; allowed: distinct split names, 'train' first (its scores define the bins)")
    block = num_levels * per_level
    owner: dict[bytes, str] = {}  # problem -> the split whose stream produced it first
    pools: dict[str, list[tuple[int, np.ndarray, np.ndarray, int]]] = {s: [] for s in splits}  # unbinned rows
    rows: dict[str, list[list[tuple[int, np.ndarray, np.ndarray, float, int]]]] = {
        s: [[] for _ in range(num_levels)] for s in splits  # per level: (index, tokens, mask, score, nominal)
    }
    edges: np.ndarray | None = None

    def full(split: str) -> bool:
        return all(len(level) == per_level for level in rows[split])

    for b in range(max_pool_factor):
        drawn = {s: draw_pool(source_task, key, s, b * block, block) for s in splits}
        keys = {s: _row_keys(drawn[s][0]) for s in splits}
        for i in range(block):  # interleaved: index i of every split before index i + 1
            for s in splits:
                if keys[s][i] not in owner:
                    owner[keys[s][i]] = s
                    tokens, mask, nominal = drawn[s]
                    pools[s].append((b * block + i, tokens[i], mask[i], int(nominal[i])))
        if edges is None:
            if len(pools["train"]) < block:
                continue
            kept = pools["train"][:block]
            s = score(source_task, ref_params, model_cfg, np.stack([r[1] for r in kept]), np.stack([r[2] for r in kept]), batch_size)
            order = np.argsort(s, kind="stable")
            level_of = np.empty(block, np.int64)
            level_of[order] = np.arange(block) // per_level  # equal-count bins by rank
            edges = s[order][per_level::per_level].astype(np.float64)  # lowest score of bins 2..K
            for (index, tok, msk, nom), level, si in zip(kept, level_of, s):  # pool order within a bin
                rows["train"][level].append((index, tok, msk, float(si), nom))
        pools["train"] = []  # binned (or past the bank): the rest only settles ownership
        for split in splits[1:]:
            pending, pools[split] = pools[split], []
            if full(split) or not pending:
                continue
            s = score(source_task, ref_params, model_cfg, np.stack([r[1] for r in pending]), np.stack([r[2] for r in pending]), batch_size)
            for (index, tok, msk, nom), level, si in zip(pending, np.searchsorted(edges, s, side="right"), s):
                if len(rows[split][level]) < per_level:
                    rows[split][level].append((index, tok, msk, float(si), nom))
        if all(full(split) for split in splits):
            break
    draws = max_pool_factor * block
    if edges is None:
        raise ValueError(
            f"the train stream of {source_task.name!r} gave only {len(pools['train'])} distinct problems (not in "
            f"another split) in {draws} draws; need num_levels * per_level = {block}: lower per_level"
        )
    for split in splits:
        short = {k + 1: len(level) for k, level in enumerate(rows[split]) if len(level) < per_level}
        if short:
            raise ValueError(
                f"the {split} stream of {source_task.name!r} filled only {short} (level: rows) of {per_level} "
                f"rows per model level after {draws} draws; allowed: a smaller per_level or a larger max_pool_factor"
            )
    banks = {
        split: Bank(
            tokens=np.stack([[r[1] for r in level] for level in rows[split]]).astype(np.int32),
            mask=np.stack([[r[2] for r in level] for level in rows[split]]).astype(bool),
            score=np.asarray([[r[3] for r in level] for level in rows[split]], np.float32),
            nominal=np.asarray([[r[4] for r in level] for level in rows[split]], np.int32),
            index=np.asarray([[r[0] for r in level] for level in rows[split]], np.int64),
        )
        for split in splits
    }
    return BankTask(d_min=1, d_max=num_levels, source=source_task, banks=banks, edges=edges)


# ---- agreement ------------------------------------------------------------------------------------
def rank_agreement(scores: np.ndarray, nominal: np.ndarray, num_levels: int, nominal_levels: tuple[int, ...]) -> dict[str, Any]:
    """How model-based and nominal difficulty agree on the same examples.

    scores float ``[N]`` (reference loss), nominal int ``[N]``. Model-based levels are
    ``num_levels`` equal-count bins of the scores (the train-bank rule). Returns
    ``spearman_rho`` and ``spearman_pvalue`` (``scipy.stats.spearmanr``, ties averaged),
    ``n``, ``mean_nominal`` float64 ``[num_levels]`` (mean nominal level per model-based
    level), ``mean_score`` float64 ``[len(nominal_levels)]`` (mean reference loss per nominal
    level, NaN where absent) and ``counts`` int64 ``[num_levels, len(nominal_levels)]``.
    """
    scores, nominal = np.asarray(scores, np.float64).ravel(), np.asarray(nominal).ravel()
    n = scores.shape[0]
    if nominal.shape[0] != n or n < 2 or n < num_levels:
        raise ValueError(f"rank_agreement: {n} scores and {nominal.shape[0]} levels; need equal lengths >= max(2, num_levels)")
    result = stats.spearmanr(scores, nominal)
    model_level = np.empty(n, np.int64)
    model_level[np.argsort(scores, kind="stable")] = np.arange(n) * num_levels // n
    counts = np.zeros((num_levels, len(nominal_levels)), np.int64)
    column = {d: j for j, d in enumerate(nominal_levels)}
    np.add.at(counts, (model_level, np.asarray([column[int(d)] for d in nominal])), 1)
    mean_nominal = counts @ np.asarray(nominal_levels, np.float64) / counts.sum(axis=1)
    mean_score = np.asarray([scores[nominal == d].mean() if np.any(nominal == d) else np.nan for d in nominal_levels])
    return {
        "spearman_rho": float(result.statistic), "spearman_pvalue": float(result.pvalue), "n": int(n),
        "mean_nominal": mean_nominal, "mean_score": mean_score, "counts": counts,
    }


def agreement(
    source_task: Task, ref_params: Params, model_cfg: ModelConfig, n: int, key: jax.Array, *,
    num_levels: int | None = None, split: str = "pool",
) -> dict[str, Any]:
    """Rank agreement of reference loss and nominal level on ``n`` fresh examples.

    Examples ``0..n-1`` of ``split`` (default the ``pool`` stream, which no run trains or tests
    on) with root ``key``, uniform over nominal levels (duplicates kept: a plain sample). Returns
    ``rank_agreement``'s dict (``num_levels`` defaults to the source's number of levels) plus
    ``task`` and ``nominal_levels``.
    """
    data.check_budget(n, "n")
    tokens, mask, nominal = draw_pool(source_task, key, split, 0, n)
    scores = score(source_task, ref_params, model_cfg, tokens, mask)
    k = source_task.num_levels if num_levels is None else num_levels
    out = rank_agreement(scores, nominal, k, source_task.levels)
    return {"task": source_task.name, "nominal_levels": source_task.levels, **out}


def format_agreement(result: dict[str, Any]) -> str:
    """A few readable lines of an ``agreement`` result."""
    mean_nominal = ", ".join(f"{x:.2f}" for x in result["mean_nominal"])
    mean_score = ", ".join(f"{d}: {x:.3f}" for d, x in zip(result["nominal_levels"], result["mean_score"]))
    return "\n".join([
        (f"{result['task']}: Spearman rho(reference loss, nominal level) = {result['spearman_rho']:.3f} "
         f"(p = {result['spearman_pvalue']:.2g}, n = {result['n']})"),
        f"  mean nominal level per model-based level 1..{len(result['mean_nominal'])}: {mean_nominal}",
        f"  mean reference loss per nominal level: {mean_score}",
    ])
