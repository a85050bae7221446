"""``difftrade tasks check NAME``: what a task family must satisfy, checked on generated examples.

:func:`check_task` draws ``n`` examples per level through the data layer (vmapped, as a grid
draws them) and returns one :class:`Finding` per property: the shapes and dtypes at every level,
the token layout the trainer's loss mask and the scorers rely on (``<bos> prompt = answer <eos>``
then padding, the mask from after the first ``=`` through ``<eos>``, tokens inside the
vocabulary), the reference solver against every generated answer, rendering, and the distinct
problems against a declared finite sample space.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from difftrade.tasks import data
from difftrade.tasks.base import ANSWER, BOS, EOS, PAD, VOCAB, Task, split_prompt_answer
from difftrade.tasks.keys import root_key


@dataclasses.dataclass(frozen=True)
class Finding:
    """One property: its ``name``, whether it holds, and what was seen (``detail``)."""

    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def layout_errors(tokens: np.ndarray, mask: np.ndarray) -> list[str]:
    """Why rows of ``tokens``/``mask`` ``[B, L]`` break the layout (module docstring); [] if none."""
    pos = np.arange(tokens.shape[1])[None, :]
    eos = np.argmax(tokens == EOS, axis=1)[:, None]
    marker = np.argmax(tokens == ANSWER, axis=1)[:, None]
    rules = {
        "first token <bos>, and only there": (tokens[:, 0] == BOS) & ((tokens == BOS).sum(1) == 1),
        "exactly one <eos>": (tokens == EOS).sum(1) == 1,
        "an '=' before the answer": (tokens == ANSWER).any(1),
        "<pad> exactly after <eos>": np.all((tokens == PAD) == (pos > eos), axis=1),
        "mask from after the first '=' through <eos>": np.all(
            mask == ((pos > marker) & (pos <= eos)), axis=1
        ),
        f"tokens in 0..{len(VOCAB) - 1}": np.all((tokens >= 0) & (tokens < len(VOCAB)), axis=1),
    }
    return [
        f"{rule} fails in {int((~ok).sum())} rows" for rule, ok in rules.items() if not ok.all()
    ]


def _draw(task: Task, n: int, seed: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    root, idx = root_key(seed), jax.numpy.arange(n)
    return {
        d: tuple(np.asarray(a) for a in data.examples_at_level(task, root, 0, d, idx))
        for d in task.levels
    }


def check_task(task: Task, n: int = 200, seed: int = 0) -> list[Finding]:
    """Every :class:`Finding` of ``task`` on ``n`` examples per level (module docstring)."""
    drawn = _draw(task, n, seed)
    shapes = {d: (t.shape, t.dtype.name, m.shape, m.dtype.name) for d, (t, m) in drawn.items()}
    want = ((n, task.seq_len), "int32", (n, task.seq_len), "bool")
    bad_shape = {d: s for d, s in shapes.items() if s != want}
    found = [
        Finding(
            "shapes",
            not bad_shape,
            f"tokens int32 and mask bool [{n}, {task.seq_len}] at levels {task.levels}"
            if not bad_shape
            else f"expected {want}, got {bad_shape}",
        )
    ]
    errors = {d: layout_errors(t, m) for d, (t, m) in drawn.items()}
    errors = {d: e for d, e in errors.items() if e}
    found.append(
        Finding(
            "layout", not errors, str(errors) if errors else "<bos> prompt = answer <eos> <pad>..."
        )
    )
    if errors or bad_shape:
        return found  # the solver and rendering read the layout
    found += [_solver(task, drawn), _rendering(task, drawn), _sample_space(task, drawn)]
    return found


def _solver(task: Task, drawn: dict[int, tuple[np.ndarray, np.ndarray]]) -> Finding:
    wrong, total, first = 0, 0, ""
    for d, (tokens, mask) in drawn.items():
        for row, row_mask in zip(tokens, mask):
            prompt, answer = split_prompt_answer(row, row_mask)
            total += 1
            try:
                solved = task.solve(prompt)
            except Exception as err:  # noqa: BLE001 - a solver that raises is a finding
                solved = f"<{type(err).__name__}: {err}>"
            if solved != answer:
                wrong += 1
                first = first or f"level {d}: {prompt}={answer}, solve() gave {solved!r}"
    detail = f"solve() equals every generated answer ({total} examples)"
    return Finding(
        "solve", not wrong, detail if not wrong else f"{wrong} of {total} differ; {first}"
    )


def _rendering(task: Task, drawn: dict[int, tuple[np.ndarray, np.ndarray]]) -> Finding:
    d = task.levels[-1]
    text = task.render(drawn[d][0][0], drawn[d][1][0])
    ok = "[" in text and text.split("[")[0].strip() != ""
    return Finding(
        "render", ok, f"level {d}: {text}" if ok else f"no prompt and answer in {text!r}"
    )


def _sample_space(task: Task, drawn: dict[int, tuple[np.ndarray, np.ndarray]]) -> Finding:
    over = []
    for d, (tokens, _) in drawn.items():
        size = task.sample_space_size(d)
        distinct = len({row.tobytes() for row in tokens})
        if size is not None and distinct > size:
            over.append(f"level {d}: {distinct} distinct > {size}")
    sizes = [task.sample_space_size(d) for d in task.levels]
    detail = "declared sizes " + ", ".join("?" if s is None else f"{s:,}" for s in sizes)
    return Finding("sample space", not over, detail if not over else "; ".join(over))
