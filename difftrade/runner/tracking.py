"""A running grid's metrics streamed to TensorBoard, chunk by chunk.

:class:`TensorBoardTracker` is an ``on_chunk`` hook of :func:`difftrade.runner.experiment.run`
(``difftrade run --tensorboard DIR``): after each chunk is on disk, it writes every member's
training loss and exact match at each checkpoint (``train_loss/…``, ``train_exact_curve/…``, at
the checkpoint's step) and its final exact match on its own training sample and per level
(``train_exact/…``, ``level_exact/L…``, at its last step). A member is named ``d{d}_n{n}_s{seed}``,
so TensorBoard's tag filter picks a cell (``d3_n256``) or a seed (``_s0``). Checkpoints after a
validation-stopped member stopped hold no loss and are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from difftrade.config.run_config import RunConfig
from difftrade.results.tfevents import EventWriter


class TensorBoardTracker:
    """Writes each chunk's members to an event file in ``logdir``; call :meth:`close` at the end."""

    def __init__(self, cfg: RunConfig, logdir: str | Path):
        self.cfg, self.pop = cfg, cfg.population()
        self.writer = EventWriter(logdir)

    def member_name(self, m: int) -> str:
        """``d{d}_n{n}_s{seed}`` of member ``m`` (members in grid order: difficulty, budget, seed)."""
        i, j, k = np.unravel_index(m, self.cfg.grid_shape)
        grid = self.cfg.grid
        return f"d{grid.difficulties[i]}_n{grid.budgets[j]}_s{grid.seeds[k]}"

    def steps(self, m: int, checkpoints: int) -> np.ndarray:
        """The training step at the end of each checkpoint segment of member ``m`` ``[K]``."""
        steps = self.cfg.train.for_budget(int(self.pop.budget[m])).steps
        return (np.arange(1, checkpoints + 1) * steps) // checkpoints

    def __call__(self, chunk: int, ds: xr.Dataset) -> None:
        """The ``on_chunk`` hook: ``ds`` holds the chunk's members (dim ``member``)."""
        levels = range(self.cfg.levels.d_min, self.cfg.levels.d_max + 1)
        for row, m in enumerate(ds["member"].values):
            name, k = self.member_name(int(m)), ds.sizes["checkpoint"]
            steps = self.steps(int(m), k)
            for metric, curve in (
                ("train_loss", "loss_curve"),
                ("train_exact_curve", "accuracy_curve"),
            ):
                for step, value in zip(steps, ds[curve].values[row]):
                    if np.isfinite(value):
                        self.writer.add_scalar(f"{metric}/{name}", value, int(step))
            last = int(steps[-1])
            self.writer.add_scalar(f"train_exact/{name}", ds["train_exact"].values[row], last)
            for level, value in zip(levels, ds["level_exact"].values[row]):
                self.writer.add_scalar(f"level_exact/L{int(level)}/{name}", value, last)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
