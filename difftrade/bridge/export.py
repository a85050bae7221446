"""Export difftrade's examples as text (JSONL), to fine-tune and evaluate any model elsewhere.

The records come from the same addressable streams a native run trains and evaluates on
(``difftrade.tasks.data``): example ``index`` of ``split`` at ``level`` under the data root of grid
seed ``seed`` (``train.member_data_root(run_key, seed)``, ``run_key = key(run.seed)``). So

* ``split="train"`` with ``(difficulty, n, seed)`` gives exactly the training set of the native
  member ``(difficulty, n, seed)``: indices ``[0, n)`` under the config's training distribution
  of row ``difficulty`` (point / mixture / up_to). Budgets nest: the records of budget ``n`` are
  the first ``n`` records of any larger budget.
* ``split="test"`` gives each level's held-out test examples, indices ``[0, n)`` per level: the
  native evaluation's test sets (``n = eval.n_test``), shared by every member with that seed.
* ``split="target"`` gives ``n`` test-split examples whose levels are drawn from the target
  distribution (``run.target``, else uniform). They live in the test split's address space:
  target example ``(level, index)`` *is* test example ``(level, index)``.

Train and test examples never share a key (different ``fold_in`` slots); identical *problems*
can still recur where a level's sample space is small, exactly as in the native run
(``data.overlap_report``, the results' ``test_in_train_fraction``).

Record (one JSON object per line; keys in this order)::

    {"task": "addition", "split": "train", "seed": 0, "level": 2, "index": 5,
     "prompt": "37+05", "answer": "240", "difficulty": 2, "budget": 32,
     "messages": [{"role": "user", "content": "37+05="}, {"role": "assistant", "content": "240"}]}

``prompt`` is the task's problem text and ``answer`` its answer text, both decoded with the
task vocabulary (``tasks.base.VOCAB``; every symbol is one character, no spaces) exactly as
``Task.solve`` reads and writes them (addition's sum is written least-significant digit first,
zero-padded to ``d_max + 1`` digits). The native model sees ``<bos>{prompt}={answer}<eos>``.
``difficulty`` and ``budget`` (train records only) name the member whose training set it is.
``messages`` (only with ``chat=True``) is the chat form: an optional system message, the user
message ``template.format(prompt=...)`` (default ``"{prompt}="``) and the assistant's answer; drop
the last message to prompt a model.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import jax
import jax.numpy as jnp
import numpy as np

from difftrade.config import level_weights
from difftrade.config.run_config import RunConfig
from difftrade.tasks import data
from difftrade.tasks.base import Task, split_prompt_answer
from difftrade.tasks.configs import from_dict
from difftrade.tasks.keys import root_key
from difftrade.train.run_task import run_task
from difftrade.train.trainer import member_data_root

EXPORT_SPLITS: tuple[str, ...] = ("train", "test", "target")
DATA_SPLIT: dict[str, int] = {
    "train": data.SPLITS["train"],
    "test": data.SPLITS["test"],
    "target": data.SPLITS["test"],
}
DEFAULT_TEMPLATE = "{prompt}="
BATCH = 4096  # examples generated per compiled call, at most
MIN_BATCH = 256  # and at least: small exports share one compiled program


def task_config(task: str, run_seed: int = 0) -> RunConfig:
    """The config a bare task name stands for: the task's default options, point training
    distributions, a uniform target, ``[run] seed = run_seed``, every other field at its default.

    ``difftrade export TASK`` and ``difftrade score TASK`` use it, so they address the same
    streams as a native run of a config with ``[task] name = TASK`` and that run seed.
    """
    if not isinstance(run_seed, (int, np.integer)) or isinstance(run_seed, bool) or run_seed < 0:
        raise ValueError(f"run_seed={run_seed!r}; allowed: an integer >= 0")
    return from_dict(
        {
            "task": {"name": task},
            "grid": {"difficulties": [1], "budgets": [1], "seeds": [0]},
            "run": {"seed": int(run_seed)},
        }
    )


def data_root(cfg: RunConfig, seed: int) -> jax.Array:
    """Root of grid seed ``seed``'s example streams in a run of ``cfg`` (as the trainer's)."""
    return member_data_root(root_key(cfg.run.seed), seed)


INT32_MAX = 2**31 - 1  # seeds and example indices are int32 on the device
MAX_EXPORT = 2**24  # records one export holds in memory


def check_seed(seed: Any, field: str = "seed") -> int:
    """A seed of the examples' random key: an int in ``0..INT32_MAX``."""
    if (
        not isinstance(seed, (int, np.integer))
        or isinstance(seed, bool)
        or not 0 <= int(seed) <= INT32_MAX
    ):
        raise ValueError(f"{field}={seed!r}; allowed: an integer 0..{INT32_MAX}")
    return int(seed)


def check_count(n: Any, field: str = "n") -> int:
    """How many examples one export writes: an int in ``1..MAX_EXPORT``."""
    n = data.check_budget(n, field)
    if n > MAX_EXPORT:
        raise ValueError(f"{field}={n!r}; allowed: 1..{MAX_EXPORT:,} examples per export")
    return n


def check_level(task: Task, level: Any, field: str) -> int:
    """A Python int level of ``task`` (``ValueError`` naming ``field`` and the allowed range)."""
    if not isinstance(level, (int, np.integer)) or isinstance(level, bool):
        raise ValueError(  # noqa: TRY004 - the CLI reports ValueError
            f"{field}={level!r}; allowed: an integer level of {task.name!r}, {task.d_min}..{task.d_max}"
        )
    task.check_difficulty(int(level), field)
    return int(level)


def train_weights(cfg: RunConfig, difficulty: int) -> np.ndarray:
    """The training distribution of grid row ``difficulty`` under ``cfg`` (float64 ``[num_levels]``)."""
    task = run_task(cfg)
    check_level(task, difficulty, "difficulty")
    return level_weights.distribution(
        task, cfg.grid.train_distribution, int(difficulty), cfg.grid.mixture_main
    )


# ---- generation ---------------------------------------------------------------------------------
_LEVELS = jax.jit(data.example_levels, static_argnums=(0, 2))
_AT_LEVEL = jax.jit(data.examples_at_level, static_argnums=(0, 2))


def _batches(indices: np.ndarray) -> Iterator[tuple[jax.Array, int]]:
    """``indices`` in fixed-size batches (the last padded by repeating its end): one compile per size."""
    size = min(BATCH, max(MIN_BATCH, 1 << max(len(indices) - 1, 0).bit_length()))
    for start in range(0, len(indices), size):
        part = indices[start : start + size]
        yield jnp.asarray(np.pad(part, (0, size - len(part)), mode="edge"), jnp.int32), len(part)


def levels_of(
    cfg: RunConfig, seed: int, split: str, weights: np.ndarray, indices: np.ndarray
) -> np.ndarray:
    """Level of each example index under ``weights`` (the native inverse-CDF choice), int ``[B]``."""
    indices = np.asarray(indices, np.int64)
    if indices.size == 0:
        return np.zeros(0, np.int64)
    root, w = data_root(cfg, seed), jnp.asarray(weights, jnp.float32)
    out = [
        np.asarray(_LEVELS(run_task(cfg), root, DATA_SPLIT[split], w, idx))[:k]
        for idx, k in _batches(indices)
    ]
    return np.concatenate(out).astype(np.int64)


def texts_at_level(
    cfg: RunConfig, seed: int, split: str, level: int, indices: np.ndarray
) -> list[tuple[str, str]]:
    """(prompt, answer) text of examples ``indices`` of ``split`` at ``level`` for grid seed ``seed``."""
    task, root = run_task(cfg), data_root(cfg, seed)
    pairs: list[tuple[str, str]] = []
    for idx, k in _batches(np.asarray(indices, np.int64)):
        tokens, mask = _AT_LEVEL(task, root, DATA_SPLIT[split], jnp.int32(level), idx)
        tokens, mask = np.asarray(tokens), np.asarray(mask)
        pairs += [split_prompt_answer(tokens[j], mask[j]) for j in range(k)]
    return pairs


def _texts(
    cfg: RunConfig, seed: int, split: str, levels: np.ndarray, indices: np.ndarray
) -> list[tuple[str, str]]:
    """(prompt, answer) of examples at per-example ``levels``, in the order given (one call per level)."""
    out: list[tuple[str, str]] = [("", "")] * len(indices)
    for level in np.unique(levels):
        where = np.flatnonzero(levels == level)
        for j, pair in zip(where, texts_at_level(cfg, seed, split, int(level), indices[where])):
            out[j] = pair
    return out


# ---- records ------------------------------------------------------------------------------------
def _record(
    cfg: RunConfig,
    split: str,
    seed: int,
    level: int,
    index: int,
    pair: tuple[str, str],
    **extra: int,
) -> dict[str, Any]:
    return {
        "task": cfg.task_name,
        "split": split,
        "seed": seed,
        "level": int(level),
        "index": int(index),
        "prompt": pair[0],
        "answer": pair[1],
        **extra,
    }


def train_records(cfg: RunConfig, difficulty: int, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """The training set of member ``(difficulty, n, seed)`` of a run of ``cfg``, in index order."""
    n, seed = check_count(n), check_seed(seed)
    weights = train_weights(cfg, difficulty)
    indices = np.arange(n)
    levels = levels_of(cfg, seed, "train", weights, indices)
    pairs = _texts(cfg, seed, "train", levels, indices)
    return [
        _record(cfg, "train", seed, d, i, p, difficulty=int(difficulty), budget=n)
        for d, i, p in zip(levels, indices, pairs)
    ]


def test_records(
    cfg: RunConfig, n: int, seed: int = 0, levels: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """Test examples ``[0, n)`` of each level (all levels unless ``levels``), level by level."""
    n, seed = check_count(n), check_seed(seed)
    task = run_task(cfg)
    chosen = (
        task.levels if levels is None else tuple(check_level(task, d, "difficulty") for d in levels)
    )
    out: list[dict[str, Any]] = []
    for level in chosen:
        pairs = texts_at_level(cfg, seed, "test", level, np.arange(n))
        out += [_record(cfg, "test", seed, level, i, p) for i, p in enumerate(pairs)]
    return out


def target_records(cfg: RunConfig, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` test-split examples under the target distribution (levels by the native inverse-CDF)."""
    n, seed = check_count(n), check_seed(seed)
    indices = np.arange(n)
    levels = levels_of(cfg, seed, "target", cfg.target_weights(), indices)
    pairs = _texts(cfg, seed, "target", levels, indices)
    return [_record(cfg, "target", seed, d, i, p) for d, i, p in zip(levels, indices, pairs)]


def records(
    cfg: RunConfig, split: str, n: int, seed: int = 0, difficulty: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """Records of one export: ``train`` needs exactly one ``difficulty`` (the member's grid row);
    ``test`` takes any levels (default all); ``target`` takes none (the target chooses levels)."""
    if split not in EXPORT_SPLITS:
        raise ValueError(f"split={split!r} is unknown; allowed: {', '.join(EXPORT_SPLITS)}")
    if split == "train":
        if difficulty is None or len(difficulty) != 1:
            raise ValueError(
                f"difficulty={None if difficulty is None else list(difficulty)} with split='train'; "
                "allowed: exactly one training difficulty (the member's grid row)"
            )
        return train_records(cfg, difficulty[0], n, seed)
    if split == "test":
        return test_records(cfg, n, seed, difficulty)
    if difficulty is not None:
        raise ValueError(
            f"difficulty={list(difficulty)} with split='target'; allowed: none (the target distribution "
            "chooses each example's level; use split='test' for chosen levels)"
        )
    return target_records(cfg, n, seed)


def check_template(template: str) -> str:
    """A chat template: text with the one field ``{prompt}`` (literal braces doubled)."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        fields = {f"<{err}>"}
    if fields != {"prompt"}:
        raise ValueError(
            f"template={template!r} has the fields {sorted(fields)}; allowed: text with the one field "
            f"{{prompt}} (literal braces doubled), e.g. {DEFAULT_TEMPLATE!r}"
        )
    return template


def with_messages(
    record: dict[str, Any], template: str = DEFAULT_TEMPLATE, system: str | None = None
) -> dict[str, Any]:
    """The record with its chat form ``messages``: [system], user (the template), assistant (the answer)."""
    messages = [{"role": "system", "content": system}] if system else []
    messages += [
        {"role": "user", "content": template.format(prompt=record["prompt"])},
        {"role": "assistant", "content": record["answer"]},
    ]
    return {**record, "messages": messages}


FORMATS = ("native", "messages", "prompt-completion")


def formatted(
    record: dict[str, Any],
    fmt: str,
    template: str = DEFAULT_TEMPLATE,
    system: str | None = None,
    chat: bool = False,
) -> dict[str, Any]:
    """One exported record in the layout ``fmt`` (one of :data:`FORMATS`).

    ``native``: the record (its address, ``prompt`` and ``answer``; with ``chat`` also
    ``messages``), what ``difftrade score`` reads back. ``messages``: only ``messages`` ([system],
    user = the template, assistant = the answer), TRL's conversational language-modelling format.
    ``prompt-completion``: only ``prompt`` and ``completion``: the template's text and the answer,
    or with ``chat`` (or a system message) TRL's conversational form, lists of messages.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r}; allowed: {', '.join(FORMATS)}")
    if fmt == "native":
        return with_messages(record, template, system) if chat or system else record
    messages = with_messages(record, template, system)["messages"]
    if fmt == "messages":
        return {"messages": messages}
    if chat or system:
        return {"prompt": messages[:-1], "completion": messages[-1:]}
    return {"prompt": template.format(prompt=record["prompt"]), "completion": record["answer"]}


def write_jsonl(rows: Iterable[dict[str, Any]], out: str | Path | IO[str]) -> int:
    """Write one JSON object per line to a path (parent folders created) or an open text stream; returns the count."""
    if isinstance(out, (str, Path)):  # through a temporary file: a failed write leaves no half file
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            with tmp.open("w") as stream:
                count = write_jsonl(rows, stream)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return count
    count = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count
