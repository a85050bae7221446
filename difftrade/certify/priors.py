"""Where the prior P = N(w₀, σ_P² I) of a member's certificate is centred: a table of kinds.

A kind (:class:`PriorKind`) refuses a run it cannot serve before any work, names the members
whose divergence leaves a member without a prior, and gives each chunk of members its centres
``w₀`` and the first training example its bound set may use (a prior trained on examples
``[0, n')`` certifies on ``[n', n)``). Adding a kind is one entry in :data:`PRIORS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from difftrade.config.run_config import RunConfig
from difftrade.config.train_config import prefix_budget
from difftrade.model.checkpoint import load_run_base
from difftrade.runner.chunks import load_params
from difftrade.tasks.keys import root_key
from difftrade.train.trainer import member_init_params

Centres = Callable[
    [np.ndarray], "tuple[int, Any] | None"
]  # member ids [m] -> (n', w₀ [m, ...]) or None


@dataclasses.dataclass(frozen=True)
class StoredWeights:
    """A finished run's trained weights: member ids int ``[K]`` and params with leading axis ``K``."""

    cfg: RunConfig
    run_dir: Path
    members: np.ndarray
    params: Any

    def take(self, ids: np.ndarray) -> Any:
        at = np.searchsorted(self.members, ids)
        return jax.tree.map(lambda x: jnp.asarray(x[at]), self.params)


@dataclasses.dataclass(frozen=True)
class PriorKind:
    """One way to centre the prior.

    ``trained_on_train_set``: the centre saw part of the member's training set, so only
    ``bound_set="train"`` (its other examples) can certify against it. ``prepare(weights)``
    checks the run (``ValueError`` naming what is missing) and returns the centres of chunks:
    ``ids -> (n', w₀)`` with ``n'`` the first training example of the bound set (0: all of it)
    and ``w₀`` a params pytree with leading axis ``len(ids)``, or None when the chunk has no
    prior (left uncertified). ``blocking(cfg, ids)``: for each member, the member whose
    divergence leaves it without a prior (-1: none). ``report_line``: what the certificate report
    says of the prior centre ("" for the member's own starting point, which needs no line).
    """

    trained_on_train_set: bool
    prepare: Callable[[StoredWeights], Centres]
    blocking: Callable[[RunConfig, np.ndarray], np.ndarray] = lambda cfg, ids: np.full(len(ids), -1)
    report_line: str = ""


def grid_prior_members(cfg: RunConfig, idx: np.ndarray) -> tuple[int, np.ndarray]:
    """The data-dependent prior of members ``idx`` (one budget n): (n', partner member indices ``[len(idx)]``).

    The partner has the same difficulty and seed and the largest grid budget n' < n. It was
    trained on the stream's examples [0, n') only (minibatch indices are drawn below the budget),
    so it is independent of the examples [n', n) that certify the member. n' = 0 (no partner)
    for the smallest budget.
    """
    shape = cfg.grid_shape
    i, j, k = np.unravel_index(np.asarray(idx), shape)
    budgets = np.asarray(cfg.grid.budgets)
    n = budgets[j[0]]
    smaller = np.flatnonzero(budgets < n)
    if smaller.size == 0:
        return 0, np.zeros(0, np.int64)
    jp = smaller[np.argmax(budgets[smaller])]
    return int(budgets[jp]), np.ravel_multi_index((i, np.full_like(j, jp), k), shape)


def _init(weights: StoredWeights) -> Centres:
    """The member's starting point: its data-free initialisation, or the base it was fine-tuned from."""
    cfg = weights.cfg
    if cfg.run.init != "scratch":
        base = load_run_base(weights.run_dir, cfg.run.init, cfg.model)
        return lambda ids: (
            0,
            jax.tree.map(lambda x: jnp.broadcast_to(x, (len(ids), *x.shape)), base),
        )
    run_key, seeds = root_key(cfg.run.seed), cfg.population().seed
    init = jax.jit(jax.vmap(lambda s: member_init_params(cfg.model, run_key, s)))
    return lambda ids: (0, init(jnp.asarray(seeds[ids])))


def _grid(weights: StoredWeights) -> Centres:
    """The grid's member of the same difficulty and seed at the next smaller budget n'."""
    if len(weights.cfg.grid.budgets) < 2:
        raise ValueError(
            f"prior='grid' needs at least two grid.budgets (a smaller member as prior), got {list(weights.cfg.grid.budgets)}"
        )

    def centres(ids: np.ndarray) -> tuple[int, Any] | None:
        first, partners = grid_prior_members(weights.cfg, ids)
        return (
            None if first == 0 else (first, weights.take(partners))
        )  # the smallest budget has no prior

    return centres


def _grid_blocking(cfg: RunConfig, ids: np.ndarray) -> np.ndarray:
    out = np.full(len(ids), -1)
    for k, i in enumerate(ids):
        first, partner = grid_prior_members(cfg, np.array([i]))
        out[k] = partner[0] if first else -1
    return out


def _prefix(weights: StoredWeights) -> Centres:
    """The member's own weights after its prefix phase, trained on its examples [0, n') only."""
    cfg = weights.cfg
    if not cfg.train.prefix_steps:
        raise ValueError(
            "prior='prefix' needs a run trained with train.prefix_steps > 0 (it saves each member's "
            f"weights after the prefix phase); {str(weights.run_dir)!r} has train.prefix_steps = 0"
        )
    members, params = load_params(
        weights.run_dir, jax.tree.map(lambda x: x[0], weights.params), kind="prior"
    )
    prior = StoredWeights(cfg, weights.run_dir, members, params)
    budgets = cfg.population().budget

    def centres(ids: np.ndarray) -> tuple[int, Any] | None:
        first = int(prefix_budget(budgets[ids[0]], cfg.train.prefix_fraction))
        return (
            None if first >= budgets[ids[0]] else (first, prior.take(ids))
        )  # n = 1: nothing left to certify on

    return centres


PRIORS: dict[str, PriorKind] = {
    "init": PriorKind(trained_on_train_set=False, prepare=_init),
    "grid": PriorKind(
        trained_on_train_set=True,
        prepare=_grid,
        blocking=_grid_blocking,
        report_line=(
            "Prior centre: the grid's member of the same difficulty and seed at the next smaller budget n' (trained on "
            "examples [0, n') only); the bound set is the member's other n − n' training examples. The smallest budget "
            "has no such prior: NaN."
        ),
    ),
    "prefix": PriorKind(
        trained_on_train_set=True,
        prepare=_prefix,
        report_line=(
            "Prior centre: the member's own weights after its prefix phase, which drew minibatches from its first n' "
            "training examples only; the bound set is its other n − n' training examples."
        ),
    ),
}
