"""`difftrade tasks check NAME`: a family's properties checked on generated examples."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest

from difftrade.cli.main import main
from difftrade.tasks import make_task, task_names
from difftrade.tasks.check import check_task
from difftrade.tasks.sorting import Sorting


@pytest.mark.slow  # a compile per family; tests/test_tasks.py checks the same properties of each
@pytest.mark.parametrize("name", task_names())
def test_every_registered_family_passes(name):
    found = check_task(make_task(name, d_max=3), n=40)
    assert [f.name for f in found] == ["shapes", "layout", "solve", "render", "sample space"]
    assert all(f.ok for f in found), [str(f) for f in found]


@dataclasses.dataclass(frozen=True)
class ReversedSolver(Sorting):
    name: ClassVar[str] = "reversed_solver"

    def solve(self, prompt: str) -> str:
        return "".join(sorted(prompt, key=int, reverse=True))


@dataclasses.dataclass(frozen=True)
class MaskOnPrompt(Sorting):
    name: ClassVar[str] = "mask_on_prompt"

    def _sample(self, key, d):
        tokens, mask = super()._sample(key, d)
        return tokens, mask.at[1].set(True)  # a prompt token in the loss


@dataclasses.dataclass(frozen=True)
class TooSmallSpace(Sorting):
    name: ClassVar[str] = "too_small_space"

    def sample_space_size(self, d: int) -> int | None:
        return 3


def test_each_broken_property_is_named():
    solver = {f.name: f for f in check_task(ReversedSolver(d_min=2, d_max=3), n=30)}
    assert not solver["solve"].ok and solver["layout"].ok
    assert (
        solver["solve"].detail.startswith("60 of 60 differ")
        or " of 60 differ" in solver["solve"].detail
    )
    layout = check_task(MaskOnPrompt(d_max=3), n=10)
    assert [f.name for f in layout] == ["shapes", "layout"]  # the rest reads the layout
    assert not layout[1].ok and "mask from after the first '='" in layout[1].detail
    space = {f.name: f for f in check_task(TooSmallSpace(d_max=2), n=50)}
    assert not space["sample space"].ok and "distinct > 3" in space["sample space"].detail


def test_the_command_prints_one_line_per_property_and_its_status(capsys):
    assert main(["tasks", "check", "sorting", "-n", "20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("sorting [") and len(lines) == 6
    assert all(line.startswith("  ok   ") for line in lines[1:])
    assert main(["tasks", "check", "sorting", "-n", "0"]) == 2  # one-line error naming -n
    assert "-n" in capsys.readouterr().err


def test_a_failing_check_exits_1(monkeypatch, capsys):
    import difftrade.tasks

    monkeypatch.setattr(difftrade.tasks, "make_task", lambda name: ReversedSolver(d_max=2))
    assert main(["tasks", "check", "sorting", "-n", "10"]) == 1
    assert any(line.startswith("  FAIL solve") for line in capsys.readouterr().out.splitlines())
