"""Progress moves within a chunk: the trainer reports each finished checkpoint segment to the host."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest

from difftrade.runner import experiment
from difftrade.runner.progress import Progress
from difftrade.train import trainer as train
from difftrade.train.programs import SEGMENTS
from difftrade.train.run_task import run_task


@pytest.mark.slow  # trains a grid
def test_every_member_segment_is_reported(tiny_cfg):
    counts: list[int] = []
    with SEGMENTS.listening(counts.append):
        pop = tiny_cfg.population()
        res = train.train_population(
            run_task(tiny_cfg), pop, tiny_cfg.model, tiny_cfg.train, jax.random.key(0)
        )
        jax.block_until_ready(res.params)
    assert SEGMENTS.listeners == 0
    padded = -(-pop.size // jax.device_count()) * jax.device_count()
    assert sum(counts) == padded * tiny_cfg.train.num_checkpoints


@pytest.mark.slow  # trains a grid
def test_run_reports_progress_inside_a_chunk(tiny_cfg, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(
        Progress, "LOG_EVERY", 0.0
    )  # a line per segment report (stderr is not a terminal)
    experiment.run(tiny_cfg, tmp_path, progress=True)  # 8 members, one chunk
    lines = [line for line in capsys.readouterr().err.splitlines() if "members" in line]
    done = [int(m[1]) for line in lines if (m := re.search(r"\] (\d+)/8 members", line))]
    assert done[-1] == 8 and any(0 < d < 8 for d in done), lines  # moved before the chunk finished
    assert all("\r" not in line for line in lines)  # plain lines off a terminal
    assert SEGMENTS.listeners == 0  # the run stopped listening
    assert np.all(np.diff(done) >= 0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_eta_is_timed_from_measured_work_and_compiling_is_named(capsys):
    """A 100 s compile, then 10 s per member: no ETA while compiling, then 10 s x members left
    (a rate over the whole elapsed time said 440 s at 2 of 10 members)."""
    clock = Clock()
    bar = Progress(10, enabled=True, segments_per_member=2, clock=clock)
    bar.tty = False
    bar.begin_chunk(10)
    clock.now = 50.0
    bar.stage("compiling")
    assert "compiling" in bar.line(0) and "ETA     ?" in bar.line(0)
    clock.now = 105.0
    bar.segment(2)  # member 1 of 10 after compile + 5 s: the rate's clock starts here
    assert "training" in bar.line(1) and bar.eta(1) is None
    clock.now = 115.0
    bar.segment(2)
    assert bar.eta(2.0) == pytest.approx(80.0)
    clock.now = 185.0
    bar.update(10)  # the chunk ends (evaluation included)
    assert bar.eta(10) == pytest.approx(0.0)
    bar.stage("writing results")
    lines = capsys.readouterr().err.splitlines()
    assert "compiling" in lines[0] and "ETA     ?" in lines[0]
    assert "10/10 members  writing results     185s elapsed" in lines[-1]


def test_members_found_on_disk_do_not_start_the_rate(capsys):
    clock = Clock()
    bar = Progress(8, enabled=False, clock=clock)
    clock.now = 30.0
    bar.update(4, "(resumed)")  # before any chunk ran: not a measurement
    assert bar.first is None and bar.current == "compiling" and bar.eta(4) is None


def test_the_ticker_keeps_the_elapsed_time_moving(capsys, monkeypatch):
    import time

    monkeypatch.setattr(Progress, "LOG_EVERY", 0.05)
    monkeypatch.setattr(Progress, "REDRAW_EVERY", 0.05)  # the ticker's floor
    bar = Progress(4, enabled=True)
    bar.tty = False
    bar.start()
    time.sleep(0.4)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 3 and all("0/4 members  compiling" in line for line in lines)
    assert bar.ticker is None


def test_a_single_cpu_device_on_many_cores_is_said_in_one_line(monkeypatch):
    class Device:
        platform = "cpu"

    monkeypatch.setattr(experiment.jax, "devices", lambda: [Device()])
    monkeypatch.setattr(experiment.os, "cpu_count", lambda: 4)
    note = experiment.device_note(8)
    assert note.startswith(
        "difftrade: jax has 1 CPU device; `difftrade run` splits these 8 members over 4"
    )
    assert experiment.device_note(7) is None  # the CLI, too, keeps 7 members on one device
    monkeypatch.setattr(experiment.jax, "devices", lambda: [Device(), Device()])
    assert experiment.device_note(8) is None
