"""Racing difficulties live at the user's budget: train seeds, drop the difficulties that are
significantly worse, stop at one answer or at the compute given.

The rule is :func:`~difftrade.analysis.racing.run_race` (the replay tables use the same one):
seeds ``0..start-1`` of every candidate, then one seed at a time for the survivors, an
all-pairs confidence set for the best at each look at level α / (number of looks), at most
``compute // len(candidates)`` seeds each. Here each look is a run of the grid's own config cut to
the survivors, the budget and the look's seeds (``OUT/look_KK``, a run directory that resumes),
so a member equals the member of the same difficulty, budget and seed in a full grid of that
config, and a rerun of an interrupted race retrains nothing it finished. ``OUT/race.json`` holds
the race: candidates, the risks measured ``[D, S]`` (null where nothing was trained), the choice.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from difftrade.analysis import predictors, racing
from difftrade.config.run_config import RunConfig
from difftrade.results import schema as results
from difftrade.runner import experiment
from difftrade.tasks import configs

RACE_FILE = "race.json"


@dataclasses.dataclass(frozen=True)
class LiveRace:
    """A finished live race: ``race`` (choice, survivors, members, looks), ``risk [D, S]`` the
    target risks it measured (NaN where it trained nothing), over ``difficulties [D]`` at ``budget``."""

    budget: int
    difficulties: np.ndarray
    risk: np.ndarray
    race: racing.Race
    config_hash: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``risk`` with null for cells not trained)."""
        return {
            "config_hash": self.config_hash,
            "budget": self.budget,
            "difficulties": [int(d) for d in self.difficulties],
            "risk": [[None if np.isnan(v) else float(v) for v in row] for row in self.risk],
            "chosen": int(self.race.chosen),
            "survivors": [int(d) for d in self.race.survivors],
            "members": self.race.members,
            "looks": self.race.looks,
        }

    def __str__(self) -> str:
        seeds = np.isfinite(self.risk).sum(axis=1)
        rows = [
            f"  difficulty {int(d)}: {int(k)} seeds, mean target risk "
            + (f"{np.nanmean(r):.3f}" if k else "-")
            for d, k, r in zip(self.difficulties, seeds, self.risk)
        ]
        verdict = (
            "one survivor"
            if len(self.race.survivors) == 1
            else f"compute spent with {len(self.race.survivors)} survivors {list(map(int, self.race.survivors))}"
        )
        head = (
            f"Race at n = {self.budget:,}: difficulty {int(self.race.chosen)} ({verdict}; "
            f"{self.race.members} members trained, {self.race.looks} looks)"
        )
        return "\n".join([head, *rows])


def look_config(
    template: RunConfig, difficulties: np.ndarray, budget: int, seeds: range
) -> RunConfig:
    """``template`` cut to one look: ``difficulties``, the single ``budget`` and ``seeds``."""
    raw = template.to_dict()
    raw["grid"] = {
        **raw["grid"],
        "difficulties": [int(d) for d in difficulties],
        "budgets": [int(budget)],
        "seeds": list(seeds),
    }
    return configs.from_dict(raw)


def check_race(template: RunConfig, difficulties: np.ndarray, compute: int, start: int) -> int:
    """Seeds per candidate the compute buys; ``ValueError`` naming ``--race`` or the
    difficulties when the race cannot start."""
    unknown = sorted(set(difficulties.tolist()) - set(template.grid.difficulties))
    if difficulties.size < 2 or unknown:
        raise ValueError(
            f"race difficulties {difficulties.tolist()}; allowed: two or more of the grid's "
            f"{list(template.grid.difficulties)}"
        )
    if (
        isinstance(compute, bool)
        or not isinstance(compute, int)
        or compute < start * difficulties.size
    ):
        raise ValueError(
            f"--race={compute!r}; allowed: a member count >= {start * difficulties.size} "
            f"({start} seeds for each of {difficulties.size} difficulties)"
        )
    return compute // difficulties.size


def live_race(
    template: RunConfig,
    budget: int,
    compute: int,
    out_dir: str | Path,
    difficulties: list[int] | None = None,
    *,
    alpha: float = 0.05,
    start: int = 3,
    method: str = "t",
    progress: bool = True,
) -> LiveRace:
    """Race ``difficulties`` (default: the grid's) of ``template`` at ``budget`` with at most
    ``compute`` members (module docstring); writes ``out_dir/race.json`` and returns the race."""
    d = np.asarray(difficulties or template.grid.difficulties, np.int64)
    max_seeds = check_race(template, d, compute, start)
    out_dir = Path(out_dir)
    looks = itertools.count()

    def measure(rows: np.ndarray, seeds: range) -> np.ndarray:
        cfg = look_config(template, d[rows], budget, seeds)
        look_dir = out_dir / f"look_{next(looks):02d}"
        ds = experiment.run(cfg, look_dir, resume=True, progress=progress)
        if ds is None:  # another process wrote it (multi-host): read it back
            ds = results.load(look_dir / "results.nc")
        return predictors.risk_grid(ds)[:, 0, :]  # [K, seeds]

    race, risk = racing.run_race(measure, d, max_seeds, alpha=alpha, start=start, method=method)
    found = LiveRace(int(budget), d, risk, race, template.hash())
    results.atomic_write_text(json.dumps(found.to_dict(), indent=2), out_dir / RACE_FILE)
    return found
