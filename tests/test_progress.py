"""Progress moves within a chunk: the trainer reports each finished checkpoint segment to the host."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest

from difftrade.runner import experiment
from difftrade.runner.progress import Progress
from difftrade.train import trainer as train


@pytest.mark.slow  # trains a grid
def test_every_member_segment_is_reported(tiny_cfg):
    counts: list[int] = []
    train.SEGMENT_LISTENERS.append(counts.append)
    try:
        pop = tiny_cfg.population()
        res = train.train_population(
            tiny_cfg.task, pop, tiny_cfg.model, tiny_cfg.train, jax.random.key(0)
        )
        jax.block_until_ready(res.params)
    finally:
        train.SEGMENT_LISTENERS.remove(counts.append)
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
    assert not train.SEGMENT_LISTENERS  # the run removed its listener
    assert np.all(np.diff(done) >= 0)
