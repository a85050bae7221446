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

The bank task itself is :mod:`difftrade.tasks.bank`. :func:`difftrade.recommender.difficulty_agreement.agreement`
measures how the two notions of difficulty agree: Spearman's rank correlation between reference
loss and nominal level, and the mean nominal level of each model-based level.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from difftrade.config import level_weights
from difftrade.config.model_config import ModelConfig
from difftrade.model.transformer import Params, graphdef
from difftrade.tasks import data
from difftrade.tasks.bank import Bank, BankTask
from difftrade.tasks.base import Task
from difftrade.train.evaluate import example_metrics

BANK_SPLITS: tuple[str, ...] = ("train", "test", "bound")


# ---- scoring ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _scorer(model_cfg: ModelConfig):
    gdef = graphdef(model_cfg)
    return jax.jit(lambda params, tokens, mask: example_metrics(gdef, params, tokens, mask)[1])


def score(
    task: Task,
    params: Params,
    model_cfg: ModelConfig,
    tokens: np.ndarray | jax.Array,
    mask: np.ndarray | jax.Array,
    batch_size: int = 1024,
) -> np.ndarray:
    """Reference loss of each example: mean answer-token cross-entropy, float32 ``[B]``.

    tokens int32 ``[B, task.seq_len]``, mask bool ``[B, task.seq_len]``; ``params`` of one model
    (no member axis). Runs in fixed-size batches (bounded memory, few compiles).
    """
    tokens, mask = np.asarray(tokens), np.asarray(mask)
    if tokens.ndim != 2 or tokens.shape[1] != task.seq_len or mask.shape != tokens.shape:
        raise ValueError(
            f"score: tokens {tokens.shape} / mask {mask.shape}; expected [B, {task.seq_len}] each"
        )
    if model_cfg.seq_len < task.seq_len - 1:
        raise ValueError(
            f"model.seq_len={model_cfg.seq_len} is shorter than the task's inputs ({task.seq_len - 1})"
        )
    n = tokens.shape[0]
    # A few fixed shapes only (one compile each): the full batch, or a power of two for small n.
    batch = batch_size if n >= batch_size else 1 << max(n - 1, 0).bit_length()
    fn = _scorer(model_cfg)
    out = np.empty(n, np.float32)
    for start in range(0, n, batch):
        t, m = tokens[start : start + batch], mask[start : start + batch]
        pad = batch - t.shape[0]
        if pad:  # keep one shape: pad with copies of the first row, drop their scores
            t, m = (
                np.concatenate([t, np.repeat(t[:1], pad, 0)]),
                np.concatenate([m, np.repeat(m[:1], pad, 0)]),
            )
        out[start : start + batch] = np.asarray(fn(params, jnp.asarray(t), jnp.asarray(m)))[
            : batch - pad
        ]
    return out


# ---- pools --------------------------------------------------------------------------------------
# The split is traced (generator tasks fold it into keys), so all splits share one compile.
_examples = jax.jit(data.examples, static_argnums=(0,))


def draw_pool(
    source: Task, key: jax.Array, split: str, start: int, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool examples ``start .. start+count-1`` of ``split``, uniform over nominal levels.

    Returns tokens int32 ``[count, L]``, mask bool ``[count, L]``, nominal level int32 ``[count]``.
    """
    weights = jnp.asarray(level_weights.uniform(source), jnp.float32)
    if isinstance(source, BankTask):
        raise TypeError("draw_pool: the source must be a generator task, not a bank")
    split_id = jnp.int32(data.split_id(split))
    tokens, mask, levels = _examples(
        source, key, split_id, weights, jnp.arange(start, start + count)
    )
    return np.asarray(tokens), np.asarray(mask), np.asarray(levels)


def _row_keys(tokens: np.ndarray) -> list[bytes]:
    rows = np.ascontiguousarray(tokens, dtype=np.int8)  # the vocabulary fits in int8
    return [r.tobytes() for r in rows]


_Pooled = tuple[
    int, np.ndarray, np.ndarray, int
]  # a drawn row: (index, tokens, mask, nominal level)
_Binned = tuple[
    int, np.ndarray, np.ndarray, float, int
]  # a banked row: (index, tokens, mask, score, nominal)


def model_based_task(
    source_task: Task,
    ref_params: Params,
    model_cfg: ModelConfig,
    *,
    num_levels: int,
    per_level: int,
    key: jax.Array,
    splits: tuple[str, ...] = BANK_SPLITS,
    max_pool_factor: int = 8,
    batch_size: int = 1024,
) -> BankTask:
    """Score pools of ``source_task`` with a reference model and bin them into ``num_levels`` levels.

    See the module docstring for the procedure. ``key`` is the root of the pool streams
    (independent of any run's data root). The streams are read in rounds of
    ``num_levels * per_level`` indices, at most ``max_pool_factor`` rounds. Returns a
    ``BankTask`` with levels ``1..num_levels``, a bank per split (scores and nominal levels
    recorded) and the bin edges. Raises ``ValueError`` if the source has too few distinct
    problems for the train bank or a level of another split cannot be filled.
    """
    _check_bank_args(num_levels, per_level, splits)
    block = num_levels * per_level
    owner: dict[bytes, str] = {}  # problem -> the split whose stream produced it first
    pools: dict[str, list[_Pooled]] = {s: [] for s in splits}  # unbinned rows
    rows: dict[str, list[list[_Binned]]] = {
        s: [[] for _ in range(num_levels)] for s in splits
    }  # per level
    edges: np.ndarray | None = None

    def full(split: str) -> bool:
        return all(len(level) == per_level for level in rows[split])

    def scores(pool: list[_Pooled]) -> np.ndarray:
        return score(
            source_task,
            ref_params,
            model_cfg,
            np.stack([r[1] for r in pool]),
            np.stack([r[2] for r in pool]),
            batch_size,
        )

    for b in range(max_pool_factor):
        _draw_round(source_task, key, splits, b * block, block, owner, pools)
        if edges is None:
            if len(pools["train"]) < block:
                continue
            kept = pools["train"][:block]
            edges = _bin_by_rank(kept, scores(kept), per_level, rows["train"])
        pools["train"] = []  # binned (or past the bank): the rest only settles ownership
        for split in splits[1:]:
            pending, pools[split] = pools[split], []
            if full(split) or not pending:
                continue
            _bin_by_edges(pending, scores(pending), edges, per_level, rows[split])
        if all(full(split) for split in splits):
            break
    draws = max_pool_factor * block
    if edges is None:
        raise ValueError(
            f"the train stream of {source_task.name!r} gave only {len(pools['train'])} distinct problems (not in "
            f"another split) in {draws} draws; need num_levels * per_level = {block}: lower per_level"
        )
    _check_filled(source_task, rows, per_level, draws)
    return BankTask(d_min=1, d_max=num_levels, source=source_task, banks=_banks(rows), edges=edges)


def _check_bank_args(num_levels: int, per_level: int, splits: tuple[str, ...]) -> None:
    """``ValueError`` naming the argument unless the bank sizes are integers >= 1 and ``splits`` are
    distinct with 'train' first."""
    if not isinstance(num_levels, int) or num_levels < 1:
        raise ValueError(f"num_levels={num_levels!r}; allowed: an integer >= 1")
    if not isinstance(per_level, int) or per_level < 1:
        raise ValueError(f"per_level={per_level!r}; allowed: an integer >= 1")
    if splits[:1] != ("train",) or len(set(splits)) != len(splits):
        raise ValueError(
            f"splits={splits!r}; allowed: distinct split names, 'train' first (its scores define the bins)"
        )


def _draw_round(
    source_task: Task,
    key: jax.Array,
    splits: tuple[str, ...],
    start: int,
    block: int,
    owner: dict[bytes, str],
    pools: dict[str, list[_Pooled]],
) -> None:
    """Read indices ``start .. start + block - 1`` of every split's stream; a problem not seen before
    goes to the pool of the split that produced it first."""
    drawn = {s: draw_pool(source_task, key, s, start, block) for s in splits}
    keys = {s: _row_keys(drawn[s][0]) for s in splits}
    for i in range(block):  # interleaved: index i of every split before index i + 1
        for s in splits:
            if keys[s][i] not in owner:
                owner[keys[s][i]] = s
                tokens, mask, nominal = drawn[s]
                pools[s].append((start + i, tokens[i], mask[i], int(nominal[i])))


def _bin_by_rank(
    kept: list[_Pooled], s: np.ndarray, per_level: int, levels: list[list[_Binned]]
) -> np.ndarray:
    """Cut the train rows ``kept`` (scores ``s``) into equal-count bins of ``per_level`` by rank, append
    them to ``levels`` (pool order within a bin) and return the inner edges (lowest score of bins 2..K)."""
    block = len(kept)
    order = np.argsort(s, kind="stable")
    level_of = np.empty(block, np.int64)
    level_of[order] = np.arange(block) // per_level  # equal-count bins by rank
    edges = s[order][per_level::per_level].astype(np.float64)  # lowest score of bins 2..K
    for (index, tok, msk, nom), level, si in zip(kept, level_of, s):  # pool order within a bin
        levels[level].append((index, tok, msk, float(si), nom))
    return edges


def _bin_by_edges(
    pending: list[_Pooled],
    s: np.ndarray,
    edges: np.ndarray,
    per_level: int,
    levels: list[list[_Binned]],
) -> None:
    """Append each pending row (scores ``s``) to its bin by the train ``edges`` (ties at an edge go up),
    in pool order, while the bin has fewer than ``per_level`` rows."""
    for (index, tok, msk, nom), level, si in zip(
        pending, np.searchsorted(edges, s, side="right"), s
    ):
        if len(levels[level]) < per_level:
            levels[level].append((index, tok, msk, float(si), nom))


def _check_filled(
    source_task: Task, rows: dict[str, list[list[_Binned]]], per_level: int, draws: int
) -> None:
    """``ValueError`` naming the short levels of the first split with a level under ``per_level`` rows."""
    for split, levels in rows.items():
        short = {k + 1: len(level) for k, level in enumerate(levels) if len(level) < per_level}
        if short:
            raise ValueError(
                f"the {split} stream of {source_task.name!r} filled only {short} (level: rows) of {per_level} "
                f"rows per model level after {draws} draws; allowed: a smaller per_level or a larger max_pool_factor"
            )


def _banks(rows: dict[str, list[list[_Binned]]]) -> dict[str, Bank]:
    """One :class:`Bank` per split from its filled levels (``[num_levels, per_level]`` arrays)."""
    return {
        split: Bank(
            tokens=np.stack([[r[1] for r in level] for level in levels]).astype(np.int32),
            mask=np.stack([[r[2] for r in level] for level in levels]).astype(bool),
            score=np.asarray([[r[3] for r in level] for level in levels], np.float32),
            nominal=np.asarray([[r[4] for r in level] for level in levels], np.int32),
            index=np.asarray([[r[0] for r in level] for level in levels], np.int64),
        )
        for split, levels in rows.items()
    }
