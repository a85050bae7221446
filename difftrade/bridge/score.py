"""Score an outside model's text answers on exported examples; build a native results Dataset.

A predictions file is JSONL: one record of ``difftrade export`` per line (or at least its address)
plus the model's answer::

    {"task": "addition", "split": "test", "seed": 0, "level": 2, "index": 5,
     "prompt": "37+05", "answer": "240", "prediction": "240", "difficulty": 2, "budget": 32}

* required: ``split`` (train / test / target), ``seed``, ``level``, ``index`` (the example's
  address, as exported) and ``prediction`` (a string; ``""`` for no answer);
* ``difficulty`` and ``budget`` (together, on every record or on none): the member that answered,
  i.e. the model fine-tuned on ``difftrade export --split train --difficulty D -n N --seed S``
  (``seed`` is then the member's seed too). Required on ``train`` records;
* binding: ``task`` (the scored task) and at least one of ``prompt`` and ``answer``, each equal to
  what difftrade generates at the address, so an answer to another example (another seed, split,
  config or task) is refused rather than mis-scored. Other keys (``messages``, ...) are ignored.
  ``seed`` and ``index`` are integers up to 2³¹ − 1.

The reference answer is regenerated from the address, never read from the file. **Exact match**
compares ``normalise(prediction) == answer``, where ``normalise`` applies Unicode NFKC, drops
every whitespace character (the task vocabulary has none, so ``"2 4 0\\n"`` matches ``"240"``) and
lower-cases (the vocabulary's letters are lower case). Nothing else is forgiven: a trailing
``"<eos>"``, an echoed ``"="`` or extra words count as wrong.

Per member: ``level_exact [level]`` is the exact-match rate over its test and target records at
that level (the native per-level test accuracy; ``target`` records are test-split examples),
``train_exact`` over its train records, which must be examples of its own training set
(index ``< budget`` at the level its training distribution draws). When the labelled members form
a full difficulty × budget × seed grid with every level answered, :func:`to_dataset` assembles
the same results Dataset as ``difftrade run`` (``assembly.assemble``), so ``difftrade report``,
``recommend``, d*(n) and the figures work on it.
"""

from __future__ import annotations

import dataclasses
import json
import unicodedata
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from difftrade.bridge import export
from difftrade.config.run_config import RunConfig
from difftrade.tasks import Task, make_task
from difftrade.tasks.keys import root_key
from difftrade.train.run_task import run_task

REQUIRED = ("split", "seed", "level", "index", "prediction")
MEMBER_LABELS = ("difficulty", "budget")
ALLOWED_RECORD = (
    "allowed: one JSON object per line with task, split (train/test/target), seed, level, index and "
    "prompt or answer (as written by `difftrade export`) and prediction (a string), plus difficulty "
    "and budget naming the member"
)

Member = tuple[
    int | None, int | None, int
]  # (difficulty, budget, seed); difficulty/budget None: unlabelled


def normalise(text: str) -> str:
    """The form compared for exact match: NFKC, every whitespace character removed, lower case."""
    return "".join(unicodedata.normalize("NFKC", text).split()).lower()


def score_answer(task: str | Task, example: Mapping[str, Any], answer: str) -> float:
    """1.0 when ``answer`` (a model's text) answers ``example`` (a record of ``difftrade export``,
    or any mapping with its ``prompt``) under :func:`normalise`, else 0.0: a per-example reward.

    The reference is ``task.solve(prompt)`` (``task`` a registered name, with default options,
    or a task object), never the record's ``answer``; a record whose ``answer`` is not the
    solver's is another task's, and ``ValueError`` names it, as it does a record without a
    ``prompt`` string.
    """
    task = make_task(task) if isinstance(task, str) else task
    prompt = example.get("prompt")
    if not isinstance(prompt, str):
        raise ValueError(  # noqa: TRY004 - bad input is a ValueError (the CLI reports it)
            f"example prompt={prompt!r}; allowed: the prompt string of an exported record"
        )
    try:
        reference = task.solve(prompt)
    except Exception as err:  # noqa: BLE001 - a solver fails on another task's prompt
        raise ValueError(
            f"example prompt={prompt!r} is not a prompt of task {task.name!r} (its solver raised "
            f"{type(err).__name__}); allowed: a record of task {task.name!r}"
        ) from None
    if "answer" in example and example["answer"] != reference:
        raise ValueError(
            f"example answer={example['answer']!r} is not {task.name!r}'s answer {reference!r} to "
            f"prompt {prompt!r}; allowed: a record of task {task.name!r}"
        )
    return float(isinstance(answer, str) and normalise(answer) == reference)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One validated line of a predictions file (``line`` counts from 1)."""

    line: int
    split: str
    seed: int
    level: int
    index: int
    prediction: str
    difficulty: int | None = None
    budget: int | None = None
    answer: str | None = None
    task: str | None = None
    prompt: str | None = None

    @property
    def member(self) -> Member:
        return (self.difficulty, self.budget, self.seed)

    @property
    def address(self) -> tuple[int, int, int]:
        """(data split id, level, index): target records address test examples."""
        return (export.DATA_SPLIT[self.split], self.level, self.index)


def _int(where: str, record: dict[str, Any], field: str, low: int, allowed: str) -> int:
    value = record[field]
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{where}: {field}={value!r}; allowed: {allowed}")
    return value


def parse_line(
    text: str, source: str, line: int, task_levels: tuple[int, int]
) -> Prediction | None:
    """Line ``line`` (from 1) of predictions file ``source``; None for a blank line."""
    where = f"{source}:{line}"
    if not text.strip():
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{where}: not JSON ({err.msg} at column {err.colno}); {ALLOWED_RECORD}"
        ) from None
    if not isinstance(record, dict):
        raise ValueError(  # noqa: TRY004 - the CLI reports ValueError
            f"{where}: a JSON {type(record).__name__}, not an object; {ALLOWED_RECORD}"
        )
    for field in REQUIRED:
        if field not in record:
            raise ValueError(f"{where}: field {field!r} is missing; {ALLOWED_RECORD}")
    split = record["split"]
    if split not in export.EXPORT_SPLITS:
        raise ValueError(f"{where}: split={split!r}; allowed: {', '.join(export.EXPORT_SPLITS)}")
    lo, hi = task_levels
    level = _int(where, record, "level", lo, f"an integer level {lo}..{hi}")
    if level > hi:
        raise ValueError(f"{where}: level={level!r}; allowed: an integer level {lo}..{hi}")
    if not isinstance(record["prediction"], str):
        raise ValueError(  # noqa: TRY004 - the CLI reports ValueError
            f'{where}: prediction={record["prediction"]!r}; allowed: a string ("" for no answer)'
        )
    labels = [f for f in MEMBER_LABELS if record.get(f) is not None]
    if len(labels) == 1:
        missing = next(f for f in MEMBER_LABELS if f not in labels)
        raise ValueError(
            f"{where}: field {missing!r} is missing while {labels[0]!r} is given; allowed: both difficulty "
            "and budget (the member that answered) or neither"
        )
    if split == "train" and not labels:
        raise ValueError(
            f"{where}: field 'difficulty' is missing on a train record; allowed: train records with "
            "difficulty and budget (the member whose training example it is)"
        )
    difficulty = budget = None
    if labels:
        difficulty = _int(where, record, "difficulty", lo, f"an integer level {lo}..{hi}")
        if difficulty > hi:
            raise ValueError(
                f"{where}: difficulty={difficulty!r}; allowed: an integer level {lo}..{hi}"
            )
        budget = _int(where, record, "budget", 1, "an integer >= 1")
    index = _int(where, record, "index", 0, f"an integer 0..{export.INT32_MAX}")
    if index > export.INT32_MAX:
        raise ValueError(f"{where}: index={index}; allowed: an integer 0..{export.INT32_MAX}")
    if split == "train" and index >= budget:
        raise ValueError(
            f"{where}: index={index} with budget={budget}; allowed: a train index below the member's "
            "budget (its training set is indices 0..budget-1)"
        )
    for field in ("answer", "task", "prompt"):
        if record.get(field) is not None and not isinstance(record[field], str):
            raise ValueError(
                f"{where}: {field}={record[field]!r}; allowed: a string (as exported) or no {field!r} field"
            )
    seed = _int(where, record, "seed", 0, f"an integer 0..{export.INT32_MAX}")
    export.check_seed(seed, f"{where}: seed")
    return Prediction(
        line=line,
        split=split,
        seed=seed,
        level=level,
        index=index,
        prediction=record["prediction"],
        difficulty=difficulty,
        budget=budget,
        answer=record.get("answer"),
        task=record.get("task"),
        prompt=record.get("prompt"),
    )


def read_predictions(path: str | Path, cfg: RunConfig) -> list[Prediction]:
    """Validated predictions of a JSONL file; ``ValueError`` naming the file, line, field and value."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(
            f"predictions file {str(path)!r} cannot be read ({type(err).__name__}); allowed: a UTF-8 "
            "JSONL file"
        ) from None
    task = run_task(cfg)
    rows = [
        parse_line(line, str(path), i, (task.d_min, task.d_max))
        for i, line in enumerate(text.split("\n"), 1)
    ]
    preds = [p for p in rows if p is not None]
    if not preds:
        raise ValueError(f"predictions file {str(path)!r} holds no records; {ALLOWED_RECORD}")
    check_consistent(preds, cfg, str(path))
    return preds


def check_consistent(preds: Sequence[Prediction], cfg: RunConfig, source: str) -> None:
    """Labels on all records or none, the task's name, no address answered twice by one member."""
    labelled = [p.difficulty is not None for p in preds]
    if any(labelled) and not all(labelled):
        odd = preds[labelled.index(not labelled[0])]
        raise ValueError(
            f"{source}:{odd.line}: member labels (difficulty, budget) on some records and not on others; "
            "allowed: labels on every record (several members) or on none (one model)"
        )
    for p in preds:
        if p.task is None or (p.prompt is None and p.answer is None):
            raise ValueError(
                f"{source}:{p.line}: the record names no task or carries neither prompt nor answer, so "
                "nothing binds its prediction to an example; allowed: records as `difftrade export` "
                "writes them (task, prompt, answer kept) plus prediction"
            )
        if p.task != cfg.task_name:
            raise ValueError(
                f"{source}:{p.line}: task={p.task!r}; allowed: {cfg.task_name!r}, the task being scored"
            )
    seen: dict[tuple[Member, tuple[int, int, int]], int] = {}
    for p in preds:
        key = (p.member, p.address)
        if key in seen:
            raise ValueError(
                f"{source}:{p.line}: the {p.split} example (level {p.level}, index {p.index}, seed {p.seed}) "
                f"was already answered by this member on line {seen[key]}; allowed: each example once per "
                "member (target examples are test examples)"
            )
        seen[key] = p.line


# ---- scoring ------------------------------------------------------------------------------------
@dataclasses.dataclass
class MemberScore:
    """Exact-match counts of one member (or of the one unlabelled model per seed)."""

    member: Member
    level_correct: np.ndarray  # [num_levels] test and target records
    level_count: np.ndarray
    train_correct: int = 0
    train_count: int = 0

    @property
    def level_exact(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                self.level_count > 0, self.level_correct / np.maximum(self.level_count, 1), np.nan
            )

    @property
    def train_exact(self) -> float:
        return self.train_correct / self.train_count if self.train_count else float("nan")


def references(cfg: RunConfig, preds: Sequence[Prediction], source: str) -> list[str]:
    """The answer difftrade generates at each prediction's address; refuses records whose level is
    not the one their stream draws (train: the member's distribution; target: the target's) and
    records whose ``answer`` differs from the generated one."""
    answers, prompts = [""] * len(preds), [""] * len(preds)
    groups: dict[tuple[int, str, int], list[int]] = defaultdict(
        list
    )  # (seed, data split, level) -> positions
    for j, p in enumerate(preds):
        groups[(p.seed, "train" if p.split == "train" else "test", p.level)].append(j)
    for (seed, split, level), where in groups.items():
        pairs = export.texts_at_level(
            cfg, seed, split, level, np.array([preds[j].index for j in where])
        )
        for j, (prompt, answer) in zip(where, pairs):
            prompts[j], answers[j] = prompt, answer
    # levels chosen by a distribution: each record's level must be the one its index draws
    drawn: dict[tuple[str, int, int | None], list[int]] = defaultdict(list)
    for j, p in enumerate(preds):
        if p.split in ("train", "target"):
            drawn[(p.split, p.seed, p.difficulty if p.split == "train" else None)].append(j)
    for (split, seed, difficulty), where in drawn.items():
        weights = (
            export.train_weights(cfg, difficulty) if split == "train" else cfg.target_weights()
        )
        levels = export.levels_of(
            cfg, seed, split, weights, np.array([preds[j].index for j in where])
        )
        for j, level in zip(where, levels):
            p = preds[j]
            if p.level != level:
                whose = (
                    f"member (difficulty {p.difficulty}, seed {seed})"
                    if split == "train"
                    else f"target (seed {seed})"
                )
                raise ValueError(
                    f"{source}:{p.line}: level={p.level} but {split} example {p.index} of the {whose} is at "
                    f"level {int(level)} under this config; allowed: records exported from the same config "
                    "(task, run seed, training and target distributions)"
                )
    for p, prompt, answer in zip(preds, prompts, answers):
        for field, given, generated in (("prompt", p.prompt, prompt), ("answer", p.answer, answer)):
            if given is not None and given != generated:
                raise ValueError(
                    f"{source}:{p.line}: {field}={given!r} but difftrade's {p.split} example (level "
                    f"{p.level}, index {p.index}, seed {p.seed}) has {field} {generated!r}; allowed: "
                    "each prediction on the record exported for its example from the same config "
                    "(task, task options, run seed; split, seed, level and index unchanged)"
                )
    return answers


def score(
    cfg: RunConfig, preds: Sequence[Prediction], source: str = "predictions"
) -> dict[Member, MemberScore]:
    """Exact-match counts per member (``(None, None, seed)`` for unlabelled predictions), sorted."""
    task = run_task(cfg)
    answers = references(cfg, preds, source)
    out: dict[Member, MemberScore] = {}
    for p, answer in zip(preds, answers):
        s = out.setdefault(
            p.member,
            MemberScore(
                p.member, np.zeros(task.num_levels, np.int64), np.zeros(task.num_levels, np.int64)
            ),
        )
        hit = normalise(p.prediction) == answer
        if p.split == "train":
            s.train_correct += hit
            s.train_count += 1
        else:
            s.level_correct[p.level - task.d_min] += hit
            s.level_count[p.level - task.d_min] += 1
    return dict(sorted(out.items(), key=lambda kv: tuple(-1 if v is None else v for v in kv[0])))


def render(cfg: RunConfig, scores: dict[Member, MemberScore]) -> str:
    """A per-member table: exact match per level (answered count), train exact match, target risk."""
    levels = run_task(cfg).levels
    target = cfg.target_weights()
    head = ["difficulty", "budget", "seed", *[f"level {d}" for d in levels], "train", "target risk"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (d, n, s), sc in scores.items():
        ex = sc.level_exact
        cells = [f"{e:.3f} ({c})" if c else "—" for e, c in zip(ex, sc.level_count)]
        train = f"{sc.train_exact:.3f} ({sc.train_count})" if sc.train_count else "—"
        risk = float((1 - ex) @ target) if np.all(sc.level_count > 0) else float("nan")
        lines.append(
            "| "
            + " | ".join(
                [
                    "—" if d is None else str(d),
                    "—" if n is None else str(n),
                    str(s),
                    *cells,
                    train,
                    "—" if np.isnan(risk) else f"{risk:.3f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def grid_config(
    cfg: RunConfig, scores: dict[Member, MemberScore], source: str = "predictions"
) -> RunConfig:
    """``cfg`` with the grid the labelled members form (every combination must be present, every
    level answered by every member); ``ValueError`` naming what is missing otherwise."""
    members = list(scores)
    if any(d is None for d, _, _ in members):
        raise ValueError(
            f"{source}: records without difficulty and budget; allowed for a results Dataset: every record "
            "labelled with the member (difficulty, budget, seed) that answered"
        )
    diffs, budgets, seeds = (sorted({m[k] for m in members}) for k in range(3))
    missing = [(d, n, s) for d in diffs for n in budgets for s in seeds if (d, n, s) not in scores]
    if missing:
        raise ValueError(
            f"{source}: members {missing[:5]}{' ...' if len(missing) > 5 else ''} (difficulty, budget, seed) "
            f"have no predictions; allowed: the full grid difficulties {diffs} x budgets {budgets} x seeds {seeds}"
        )
    levels = run_task(cfg).levels
    for m, sc in scores.items():
        empty = [levels[i] for i in np.flatnonzero(sc.level_count == 0)]
        if empty:
            raise ValueError(
                f"{source}: member {m} (difficulty, budget, seed) answered no test examples at levels {empty}; "
                "allowed: test or target records at every level for every member "
                "(`difftrade export --split test`)"
            )
    n_test = max(int(sc.level_count.max()) for sc in scores.values())
    grid = dataclasses.replace(
        cfg.grid, difficulties=tuple(diffs), budgets=tuple(budgets), seeds=tuple(seeds)
    )
    return dataclasses.replace(cfg, grid=grid, eval=dataclasses.replace(cfg.eval, n_test=n_test))


def to_dataset(
    cfg: RunConfig, scores: dict[Member, MemberScore], source: str = "predictions"
) -> xr.Dataset:
    """The results Dataset of a scored grid, as ``difftrade run`` writes it (``assembly.assemble``).

    Extra variables: ``level_count [difficulty, budget, seed, level]`` and ``train_count``
    (examples scored); ``train_exact`` (hence ``train_risk`` and the generalization gap) is NaN for
    members without train records. ``loss_curve`` is NaN (an outside model has no difftrade
    training curve), ``nonfinite_steps`` 0. The stored config is ``cfg`` with the scored grid: its
    model and train sections describe no model that was trained.
    """

    from difftrade.results import assembly
    from difftrade.runner.experiment import add_overlap

    grid_cfg = grid_config(cfg, scores, source)
    order = [
        (d, n, s)
        for d in grid_cfg.grid.difficulties
        for n in grid_cfg.grid.budgets
        for s in grid_cfg.grid.seeds
    ]
    m = len(order)
    flat = xr.Dataset(
        {
            "train_exact": (
                ("member",),
                np.array([scores[k].train_exact for k in order], np.float64),
            ),
            "level_exact": (
                ("member", "level"),
                np.stack([scores[k].level_exact for k in order]).astype(np.float64),
            ),
            "train_count": (
                ("member",),
                np.array([scores[k].train_count for k in order], np.int32),
            ),
            "level_count": (
                ("member", "level"),
                np.stack([scores[k].level_count for k in order]).astype(np.int32),
            ),
            "loss_curve": (
                ("member", "checkpoint"),
                np.full((m, grid_cfg.train.num_checkpoints), np.nan),
            ),
            "nonfinite_steps": (("member",), np.zeros(m, np.int32)),
        },
        coords={"member": np.arange(m, dtype=np.int32)},
    )
    attrs = {
        "device": "outside model (difftrade score)",
        "scored_from": str(source),
        "normalisation": "NFKC, whitespace removed, lower case; exact match",
    }
    ds = assembly.assemble(grid_cfg, [flat], extra_attrs=attrs)
    return add_overlap(grid_cfg, ds, root_key(grid_cfg.run.seed))


def score_file(cfg: RunConfig, path: str | Path) -> dict[Member, MemberScore]:
    """Read, validate and score a predictions file."""
    return score(cfg, read_predictions(path, cfg), str(path))
