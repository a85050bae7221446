"""Certificates and shift bounds next to a finished run (``difftrade bound RUN_DIR``).

For every certified member (all seeds by default):

* **PAC-Bayes certificates** (``difftrade.theory.certificate``) of the Gibbs predictor
  Q = N(trained weights, σ²I) (``posterior="isotropic"``, σ from a grid) or Q = N(μ, diag σ²)
  fitted by minimising the bound (``posterior="fitted"``, ``difftrade.theory.posterior``), with
  prior P = N(w₀, σ_P²I), w₀ = the member's data-free initialisation or the pretrained base it was
  fine-tuned from, or (``prior="grid"``) the grid's member of the same difficulty and seed at the
  next smaller budget n', or (``prior="prefix"``) the member's own weights after its prefix phase
  (``TrainConfig.prefix_steps``: trained on examples [0, n') only); 0-1 loss of exact match. The
  *bound set* (``bound_set``):

  - ``"train"``: the member's own n training examples (n = its budget). This is the PAC-Bayes
    generalization certificate proper: it bounds L_S(Q) from the data Q was trained on, so the
    KL/n term is what grows with difficulty and shrinks with n. L_T(Q) is then bounded by the
    change of measure below applied to the certified L_S(Q) (no further δ). With
    ``prior="grid"`` or ``"prefix"`` the bound set is the examples [n', n) that the prior never saw.
  - ``"fresh"``: n_bound new examples from split "bound" (never used for training, testing or
    choosing w₀) from S (certifies L_S(Q)) and n_bound from the target T (certifies L_T(Q)).
    Valid, but on data independent of Q a plain test-set bound on Q (KL = 0) is never looser.
* **Extrapolation band**: the measured extrapolation gap of the deterministic network with a
  certified band from the per-level held-out test sets (Clopper–Pearson per level and side,
  all 2L one-sided statements at δ/(2L): valid simultaneously for R_S and R_T).
* **Change of measure**: R_T ≤ the exact worst case over [0, 1] losses given U_S, the certified
  upper end of R_S (:func:`~difftrade.theory.shift.lp_shift_bound`), the distributions known
  exactly (nested levels: shells; exact-size levels: levels). π, the target mass no training
  example can cover, is always in it (vacuous there by construction).
* **Importance-weighted target certificate** (``bound_set="train"``, ``importance_weighted``):
  L_T(Q) from the training bound set itself. A training example drawn at level l gets the loss
  w_l·ℓ/B with w_l = t_l/s_l and B = max_l w_l over the levels S covers; its S-expectation is
  (L_T(Q) − uncovered part)/B, so the same PAC-Bayes machinery certifies it and
  L_T(Q) ≤ B·bound + π. Unlike the change of measure it sees *where* the errors fall (an error on
  a level the target weighs less costs less); the price is the factor B on the complexity term.
  A separate statement: its own δ + δ′ per member, certified from the same forward passes (the
  same weight draws) as the in-distribution certificate, so it costs almost nothing extra.

Every member of the run uses the same standard normal weight draws ε (one key, common random
numbers): generated once per chunk instead of once per member (on the CPU drawing them was most
of a certificate's time), each member's draws still independent of its own data.

Results: ``bounds.nc`` (dims difficulty, budget, seed) and ``bounds.md`` with the δ budget.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from difftrade import data, results
from difftrade.checkpoint import load_base
from difftrade.chunks import load_params, read_npz
from difftrade.config import RunConfig, from_dict
from difftrade.evaluate import example_metrics
from difftrade.model import ModelConfig, graphdef, init_params
from difftrade.rundir import META, DirLock, read_meta
from difftrade.tasks.base import Task
from difftrade.theory import bounds
from difftrade.theory.certificate import CertificateConfig, certify_population, format_budget
from difftrade.theory.posterior import FitConfig, fit_posterior
from difftrade.theory.shift import (
    importance_weights,
    lp_shift_bound,
    lp_shift_lower,
    nested_shell_weights,
)
from difftrade.train import member_data_root, member_init_params, prefix_budget


@dataclasses.dataclass(frozen=True)
class BoundSettings:
    """What to certify and how (static; fixed before any bound-set example is drawn)."""

    n_bound: int = 4096
    num_draws: int = 1  # per example and σ ("per_example"), or on the whole set ("whole_set")
    monte_carlo: Literal["per_example", "whole_set"] = "per_example"
    sigmas: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
    prior_sigmas: tuple[float, ...] | None = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    delta: float = 0.025
    delta_prime: float = 0.025
    delta_lower: float = 0.025  # the lower ends of the certificates (their two-sided intervals) pay this too
    delta_heldout: float = 0.05
    seeds: tuple[int, ...] | None = None  # None: every seed
    budgets: tuple[int, ...] | None = None  # None: every budget
    member_chunk: int = 16
    bound_set: Literal["fresh", "train"] = "fresh"
    posterior: Literal["isotropic", "fitted"] = "isotropic"
    # prior centre: "init" = the member's data-free initialisation (or the fine-tuning base);
    # "grid" = the run's own member of the same difficulty and seed at the next smaller budget
    # n' (trained on training examples [0, n') only), with bound set the other n - n' examples
    # [n', n) of the member's training set (bound_set="train" only); "prefix" = the member's own
    # weights after its prefix phase (runs with train.prefix_steps > 0), trained on [0, n') only,
    # n' = prefix_budget(n), with the same bound set [n', n)
    prior: Literal["init", "grid", "prefix"] = "init"
    fit: FitConfig = dataclasses.field(default_factory=FitConfig)  # posterior="fitted": fitted on the in-distribution bound set
    # σ_P grid when fitted: (low, high, count) geometric. Fine on purpose: most fitted σᵢ sit at
    # σ_P, so a grid step of ratio r costs ~½(r²−1−ln r²) nats on *every* parameter (a 3x grid:
    # ~0.65 nats x 10⁵ parameters), while 1,000 values cost only ln 1000 = 6.9 nats.
    fitted_prior_grid: tuple[float, float, int] = (1e-4, 1.0, 1000)
    surrogate_p_min: float = 1e-4  # fit surrogate: answer cross-entropy clipped at ln(1/p_min), over it
    # bound_set="train": also certify L_T(Q) by importance weighting the training bound set (a
    # second certificate from the same forward passes)
    importance_weighted: bool = False
    # its (σ, σ_P): "own" = chosen for the weighted certificate itself (the tightest); "shared" =
    # the in-distribution certificate's, so both certify the same Q (valid: every grid point is paid)
    iw_selection: Literal["own", "shared"] = "own"

    def __post_init__(self) -> None:
        for name, allowed in (("bound_set", ("fresh", "train")), ("posterior", ("isotropic", "fitted")), ("prior", ("init", "grid", "prefix")),
                              ("monte_carlo", ("per_example", "whole_set")), ("iw_selection", ("own", "shared"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is unknown; allowed: {', '.join(map(repr, allowed))}")
        for name in ("n_bound", "num_draws", "member_chunk"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}; allowed: an integer >= 1")
        if self.iw_selection == "shared" and not self.importance_weighted:
            raise ValueError("iw_selection='shared' needs importance_weighted=True (it picks that certificate's σ, σ_P)")
        if self.importance_weighted and self.bound_set != "train":
            raise ValueError(f"importance_weighted=True needs bound_set='train' (with a fresh target bound set L_T(Q) is "
                             f"certified directly), got bound_set={self.bound_set!r}")
        if self.prior in ("grid", "prefix") and self.bound_set != "train":
            raise ValueError(f"prior={self.prior!r} needs bound_set='train' (the training examples its prior never saw), "
                             f"got bound_set={self.bound_set!r}")
        if not 0 < self.surrogate_p_min < 1:
            raise ValueError(f"surrogate_p_min={self.surrogate_p_min!r}; allowed: a float in (0, 1)")
        self.certificate_config()  # checks the σ and σ_P grids before any work

    @property
    def fitted_prior_sigmas(self) -> tuple[float, ...]:
        low, high, count = self.fitted_prior_grid
        return tuple(float(x) for x in np.geomspace(low, high, int(count)))

    def certificate_config(self) -> CertificateConfig:
        fitted = self.posterior == "fitted"  # σ is then per parameter: the grid only scales it by 1
        return CertificateConfig(
            sigmas=(1.0,) if fitted else self.sigmas,
            prior_sigmas=self.fitted_prior_sigmas if fitted else self.prior_sigmas,
            num_draws=self.num_draws, monte_carlo=self.monte_carlo, delta=self.delta, delta_prime=self.delta_prime,
            delta_lower=self.delta_lower, delta_heldout=self.delta_heldout, selection="bound",
        )


@dataclasses.dataclass(frozen=True)
class ZeroOneLoss:
    """``(params, (tokens [n, L], mask [n, L])) -> [n]`` 0-1 loss of exact match (hashable: jit-static)."""

    model: ModelConfig
    batch_size: int = 2048  # forward passes in sequential batches: bounds device memory

    def __call__(self, params, batch):
        tokens, mask = batch
        n = tokens.shape[0]
        b = min(self.batch_size, n)
        pad = (-n) % b
        tb = jnp.pad(tokens, ((0, pad), (0, 0)), mode="edge").reshape(-1, b, tokens.shape[1])
        mb = jnp.pad(mask, ((0, pad), (0, 0)), mode="edge").reshape(-1, b, mask.shape[1])
        gdef = graphdef(self.model)
        exact = jax.lax.map(lambda tm: example_metrics(gdef, params, *tm)[0], (tb, mb)).reshape(-1)[:n]
        return 1.0 - exact.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class ZeroOneAndWeightedLoss:
    """``(params, (tokens [n, L], mask [n, L], weight [n])) -> [n, 2]``: the 0-1 loss of exact
    match and weight · it (weights in [0, 1]), from one forward pass, for two joint certificates."""

    model: ModelConfig
    batch_size: int = 2048

    def __call__(self, params, batch):
        tokens, mask, weight = batch
        loss = ZeroOneLoss(self.model, self.batch_size)(params, (tokens, mask))
        return jnp.stack([loss, weight * loss], axis=1)


@dataclasses.dataclass(frozen=True)
class ClippedCrossEntropy:
    """Differentiable surrogate of the 0-1 loss for the posterior fit, in [0, 1]:
    ``min(mean answer CE, ln(1/p_min)) / ln(1/p_min)`` per example, ``[n]``."""

    model: ModelConfig
    p_min: float = 1e-4

    def __call__(self, params, batch):
        tokens, mask = batch
        _, ce = example_metrics(graphdef(self.model), params, tokens, mask)
        cap = float(np.log(1.0 / self.p_min))
        return jnp.minimum(ce, cap) / cap


def _member_dot(a, b) -> np.ndarray:
    """⟨a, b⟩ per member of two parameter pytrees with leading member axis, float64 ``[M]``."""
    return sum(np.sum(np.asarray(x, np.float64) * np.asarray(y, np.float64), axis=tuple(range(1, np.ndim(x))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _member_diff(a, b):
    """a − b leaf by leaf, in float64."""
    return jax.tree.map(lambda x, y: np.asarray(x, np.float64) - np.asarray(y, np.float64), a, b)


def distance(a, b) -> np.ndarray:
    """Euclidean distance between two parameter pytrees with leading member axis, float64 ``[M]``."""
    diff = _member_diff(a, b)
    return np.sqrt(_member_dot(diff, diff))


def retained_displacement(mean, trained, prior) -> np.ndarray:
    """How much of training's move from the prior centre the fitted mean keeps, per member ``[M]``:
    ``⟨μ − w₀, w − w₀⟩ / ‖w − w₀‖²`` (1: μ = the trained weights w; 0: μ back at the prior w₀)."""
    move, kept = _member_diff(trained, prior), _member_diff(mean, prior)
    return _member_dot(kept, move) / _member_dot(move, move)


def load_run(run_dir: str | Path) -> tuple[RunConfig, xr.Dataset]:
    run_dir = Path(run_dir)
    if not (run_dir / META).exists() or not (run_dir / "results.nc").exists():
        raise ValueError(f"{str(run_dir)!r} is not a finished run directory (needs {META} and results.nc)")
    cfg = from_dict(read_meta(run_dir)["config"])
    return cfg, results.load(run_dir / "results.nc")


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


def shift_atoms(task: Task, weights: np.ndarray) -> np.ndarray:
    """Weights ``[..., L]`` over the atoms on which T/S is constant (``task.level_structure``):
    shells for nested levels, the levels themselves for exact ones."""
    if task.level_structure == "nested":
        sizes = [task.sample_space_size(d) for d in task.levels]
        if any(size is None for size in sizes):
            raise ValueError(f"task {task.name!r} declares nested levels but not every level's sample_space_size")
        return np.asarray(nested_shell_weights(weights, np.array(sizes, np.float64)))
    if task.level_structure == "exact":
        return np.asarray(weights, np.float64)
    raise ValueError(f"task {task.name!r}: level_structure={task.level_structure!r} has no shift atoms; allowed: exact, nested")


def level_bands(level_exact: np.ndarray, n_test: int, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Clopper–Pearson lower/upper ends of every level risk, each side at δ/(2L). ``[..., L]``."""
    num_levels = level_exact.shape[-1]
    errors = np.rint((1.0 - level_exact) * n_test)
    each = delta / (2 * num_levels)
    lower = np.asarray(bounds.clopper_pearson_lower(errors, n_test, each))
    upper = np.asarray(bounds.clopper_pearson_upper(errors, n_test, each))
    return lower, upper


def diverged_members(ds: xr.Dataset) -> np.ndarray:
    """Bool ``[M]`` by flat member index (grid order): members whose training diverged (:func:`results.diverged_mask`)."""
    bad = results.diverged_mask(ds)
    if bad is None:
        return np.zeros(int(np.prod([ds.sizes[d] for d in results.GRID_DIMS])), bool)
    return np.asarray(bad.transpose(*results.GRID_DIMS).values, bool).reshape(-1)


def certifiable(cfg: RunConfig, ds: xr.Dataset, picked: np.ndarray, prior: str, run_dir: Path) -> np.ndarray:
    """The members of ``picked`` that can be certified: not diverged and, with ``prior="grid"``, with a
    prior member (the next smaller budget's) that did not diverge either. A diverged member's weights
    are those of a run that hit NaN/inf steps: it is left uncertified (NaN in bounds.nc), never
    certified as if it had trained. ``ValueError`` when that leaves none."""
    bad = diverged_members(ds)
    keep = ~bad[picked]
    if prior == "grid":
        for k, i in enumerate(picked):
            first, partner = grid_prior_members(cfg, np.array([i]))
            keep[k] &= first == 0 or not bad[partner[0]]
    if not keep.any():
        raise ValueError(f"every member chosen for certification in {str(run_dir)!r} diverged (NaN/inf training steps"
                         + (", or its grid prior did" if prior == "grid" else "") + f"): {results.describe_diverged(ds)}; "
                         "allowed: a run with members that trained (a smaller grid.learning_rate), or --seeds/--budgets "
                         "naming some of them")
    return picked[keep]


def certify_run(run_dir: str | Path, settings: BoundSettings = BoundSettings(), progress: bool = True) -> xr.Dataset:
    """Certificates and shift bounds for a finished run; writes ``bounds.nc`` and returns it.

    Each finished chunk of ``settings.member_chunk`` members is saved under
    ``run_dir/bounds.partial/<hash of config and settings>/`` as it completes; a rerun with the same
    settings after an interruption or failure loads those chunks instead of certifying them again
    (the numbers are the same: every random key derives from the run's seed and the member
    index); a saved chunk that cannot be read is discarded, named on stderr, and certified again.
    The folder is removed once ``bounds.nc`` is written. Members whose training diverged (and, with
    ``prior="grid"``, members whose prior did) are left uncertified: NaN (:func:`certifiable`).
    The run directory is locked against other writers (``difftrade run --resume``, another
    ``difftrade bound``) while it certifies."""
    run_dir = Path(run_dir)
    cfg, ds = load_run(run_dir)  # a finished run, or a clear error before anything is written
    with DirLock(run_dir, "RUN"):
        return _certify_locked(run_dir, cfg, ds, settings, progress)


def _certify_locked(run_dir: Path, cfg: RunConfig, ds: xr.Dataset, settings: BoundSettings, progress: bool) -> xr.Dataset:
    """:func:`certify_run` in a locked run directory (``cfg``, ``ds``: its config and results)."""
    task, pop = cfg.task, cfg.population()
    run_key = jax.random.key(cfg.run.seed)
    like = init_params(cfg.model, jax.random.key(0))
    members, params = load_params(run_dir, like)
    seeds = cfg.grid.seeds if settings.seeds is None else settings.seeds
    budgets = cfg.grid.budgets if settings.budgets is None else settings.budgets
    for flag, picked, grid_values in (("seeds", seeds, cfg.grid.seeds), ("budgets", budgets, cfg.grid.budgets)):
        unknown = sorted(set(picked) - set(grid_values))
        if unknown:
            raise ValueError(f"--{flag} {unknown} are not in the run's grid.{flag} {list(grid_values)}")
    selected = np.array([i for i in members if pop.seed[i] in seeds and pop.budget[i] in budgets])
    if settings.prior == "grid" and len(cfg.grid.budgets) < 2:
        raise ValueError(f"prior='grid' needs at least two grid.budgets (a smaller member as prior), got {list(cfg.grid.budgets)}")
    chosen = certifiable(cfg, ds, selected, settings.prior, run_dir)  # diverged members stay NaN
    if settings.prior == "prefix":
        if not cfg.train.prefix_steps:
            raise ValueError("prior='prefix' needs a run trained with train.prefix_steps > 0 (it saves each member's "
                             f"weights after the prefix phase); {str(run_dir)!r} has train.prefix_steps = 0")
        prior_members, prior_params = load_params(run_dir, like, kind="prior")
    base = None if cfg.run.init == "scratch" else load_base(cfg.run.init, cfg.model)
    ccfg = settings.certificate_config()
    loss = ZeroOneLoss(cfg.model)
    iw_cfg = dataclasses.replace(ccfg, binary_loss=False, selection="shared" if settings.iw_selection == "shared" else ccfg.selection)
    target_w = jnp.asarray(cfg.target_weights(), jnp.float32)
    n = settings.n_bound
    bound_split = data.SPLITS["bound"]

    def bound_sets(seed, weights):
        root = member_data_root(run_key, seed)
        s_tok, s_mask, _ = data.examples(task, root, bound_split, weights, jnp.arange(n))
        t_tok, t_mask, _ = data.examples(task, root, bound_split, target_w, jnp.arange(n, 2 * n))
        return (s_tok, s_mask), (t_tok, t_mask)

    def train_sets(seed, weights, start, stop):
        return data.examples(task, member_data_root(run_key, seed), data.SPLITS["train"], weights, jnp.arange(start, stop))

    make_sets = jax.jit(jax.vmap(bound_sets))
    make_train_sets = jax.jit(jax.vmap(train_sets, in_axes=(0, 0, None, None)), static_argnums=(2, 3))
    priors = jax.jit(jax.vmap(lambda s: member_init_params(cfg.model, run_key, s)))
    fit = jax.jit(jax.vmap(lambda p, p0, d, k: fit_posterior(ClippedCrossEntropy(cfg.model, settings.surrogate_p_min), p, p0, d, k, settings.fit)))
    # members certified together share n: one group for fresh sets, one per budget for "train"
    if settings.bound_set == "train":
        groups = [chosen[pop.budget[chosen] == b] for b in np.unique(pop.budget[chosen])]
    else:
        groups = [chosen]
    mc_key = jax.random.fold_in(run_key, 78)  # the certificates' weight draws, shared by every member
    order, out = [], {}
    partial = _partial_dir(run_dir, cfg, settings)  # finished chunks, so an interrupted run resumes
    for group in groups:
        for start in range(0, len(group), settings.member_chunk):
            idx = group[start : start + settings.member_chunk]
            saved = partial / f"members_{idx[0]}_{idx[-1]}.npz"
            stored = _read_partial(saved) if saved.exists() else None
            if stored is not None:
                chunk = {k: v for k, v in stored.items() if k != "members"}
                if not np.array_equal(stored.get("members"), idx):
                    raise ValueError(f"{saved} holds members {stored.get('members', np.zeros(0)).tolist()}, expected "
                                     f"{idx.tolist()}: delete {partial} to certify from scratch")
                for k, v in chunk.items():
                    out.setdefault(k, []).append(v)
                order.append(idx)
                if progress:
                    print(f"certified {sum(map(len, order))}/{len(chosen)} members (resumed from {saved})", flush=True)
                continue
            chunk: dict[str, np.ndarray] = {}
            p = jax.tree.map(lambda x: jnp.asarray(x[idx]), params)
            seed_arr = jnp.asarray(pop.seed[idx])
            first = 0  # first training example of the "train" bound set
            if settings.prior == "grid":
                first, partners = grid_prior_members(cfg, idx)
                if first == 0:
                    continue  # the smallest budget has no smaller member: left uncertified (NaN)
                at = np.searchsorted(members, partners)
                prior = jax.tree.map(lambda x, at=at: jnp.asarray(x[at]), params)
            elif settings.prior == "prefix":
                first = int(prefix_budget(pop.budget[idx[0]], cfg.train.prefix_fraction))
                if first >= pop.budget[idx[0]]:
                    continue  # n = 1: every example was in the prefix, none left to certify on (NaN)
                at = np.searchsorted(prior_members, idx)
                prior = jax.tree.map(lambda x, at=at: jnp.asarray(x[at]), prior_params)
            elif base is None:
                prior = priors(seed_arr)
            else:
                prior = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(idx), *x.shape)), base)
            if settings.bound_set == "train":
                tokens, mask, levels = make_train_sets(seed_arr, jnp.asarray(pop.weights[idx]), first, int(pop.budget[idx[0]]))
                fit_set = (tokens, mask)
                # each call: (names, loss, config or configs, bound set); two names share every forward pass
                calls = [(("in_dist",), loss, ccfg, fit_set)]
                if settings.importance_weighted:
                    weight, scale_b, pi = importance_weights(cfg.target_weights(), pop.weights[idx])
                    w = np.take_along_axis(weight, np.asarray(levels) - task.d_min, axis=1)  # [M, n]
                    calls = [(("in_dist", "target_iw"), ZeroOneAndWeightedLoss(cfg.model), (ccfg, iw_cfg),
                              (tokens, mask, jnp.asarray(w, jnp.float32)))]
                    chunk["iw_scale"] = scale_b
                    chunk["iw_uncovered"] = pi
            else:
                fit_set, set_t = make_sets(seed_arr, jnp.asarray(pop.weights[idx]))
                calls = [(("in_dist",), loss, ccfg, fit_set), (("target",), loss, ccfg, set_t)]
            scale = None
            if settings.posterior == "fitted":  # one Q per member, fitted on its S bound set
                fit_keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(run_key, 77), i), 2))(jnp.asarray(idx))
                mean, scale, history = fit(p, prior, fit_set, fit_keys)
                chunk["fit_objective"] = np.asarray(history["objective"][:, -1])
                chunk["fit_retained"] = retained_displacement(mean, p, prior)
                p = mean
            chunk["prior_distance"] = distance(p, prior)  # ‖Q's mean − prior centre‖
            for salt, (names, set_loss, set_config, bound_set) in enumerate(calls):
                # one key for every member of the run: they share their weight draws ε (generated once
                # per chunk, not once per member; each member's draws stay independent of its data)
                certs = certify_population(set_loss, p, prior, bound_set, jax.random.fold_in(mc_key, salt), set_config,
                                           key_axis=None, posterior_scale=scale)
                for name, cert in zip(names, certs if isinstance(set_config, tuple) else (certs,)):
                    for field in ("bound", "lower_bound", "kl", "sigma", "prior_sigma", "mc_risk_estimate", "deterministic_risk",
                                  "deterministic_lower", "deterministic_upper", "valid", "num_examples"):
                        chunk[f"{name}_{field}"] = np.asarray(getattr(cert, field))
            partial.mkdir(parents=True, exist_ok=True)
            results.atomic_save_npz({**chunk, "members": idx}, saved)
            for k, v in chunk.items():
                out.setdefault(k, []).append(v)
            order.append(idx)
            if progress:
                print(f"certified {sum(map(len, order))}/{len(chosen)} members", flush=True)
    if not order:  # prior="grid": only smallest-budget members (no prior) were left to certify
        raise ValueError(f"no member of {str(run_dir)!r} could be certified with prior='grid': the smallest budget has "
                         "no smaller member as prior, and the others diverged or their prior did")
    flat = {k: np.concatenate(v) for k, v in out.items()}
    written = _assemble(run_dir, cfg, ds, np.concatenate(order), flat, settings, ccfg, np.setdiff1d(selected, chosen))
    shutil.rmtree(partial, ignore_errors=True)  # bounds.nc holds every chunk now
    if partial.parent.exists() and not any(partial.parent.iterdir()):
        partial.parent.rmdir()
    return written


def _read_partial(saved: Path) -> dict[str, np.ndarray] | None:
    """A finished chunk's arrays from ``bounds.partial/``; None, after removing it with a line on stderr
    naming it, when it is unreadable (truncated or damaged), so its members are certified again."""
    try:
        return read_npz(saved)
    except ValueError as err:
        saved.unlink(missing_ok=True)
        print(f"difftrade: discarded {err}; its members are certified again", file=sys.stderr, flush=True)
        return None


def _partial_dir(run_dir: Path, cfg: RunConfig, settings: BoundSettings) -> Path:
    """Where ``certify_run`` keeps finished chunks until ``bounds.nc`` is written: one folder per
    (run config, settings), so a rerun with other settings never picks up these numbers."""
    key = json.dumps({"config": cfg.hash(), "settings": dataclasses.asdict(settings)}, sort_keys=True, default=str)
    return run_dir / "bounds.partial" / hashlib.sha256(key.encode()).hexdigest()[:16]


def _assemble(run_dir: Path, cfg: RunConfig, ds: xr.Dataset, chosen: np.ndarray, flat: dict[str, np.ndarray],
              settings: BoundSettings, ccfg: CertificateConfig, excluded: np.ndarray) -> xr.Dataset:
    """Write and return ``bounds.nc``: ``flat`` certificate fields of the members ``chosen`` (NaN elsewhere);
    ``excluded``: members picked but left uncertified because they, or their grid prior, diverged."""
    grid = cfg.grid_shape
    dims = ("difficulty", "budget", "seed")
    variables = {}
    for name, values in flat.items():
        full = np.full(int(np.prod(grid)), np.nan)
        full[chosen] = values.astype(np.float64)
        variables[name] = (dims, full.reshape(grid))
    if "iw_scale" in variables:  # weighted-loss risks [0, 1] → target risks: B·x (+ π on the upper ends)
        scale, pi = variables["iw_scale"][1], variables["iw_uncovered"][1]
        for field, plus in (("bound", pi), ("deterministic_upper", pi), ("mc_risk_estimate", 0.0),
                            ("deterministic_risk", 0.0), ("deterministic_lower", 0.0), ("lower_bound", 0.0)):
            name = f"target_iw_{field}"
            variables[name] = (dims, np.minimum(1.0, scale * variables[name][1] + plus))
    variables.update(shift_variables(cfg, ds, variables["in_dist_bound"][1], settings.bound_set, settings.delta_heldout,
                                     variables["in_dist_lower_bound"][1]))
    variables["in_dist_gen_gap_bound"] = (dims, variables["in_dist_bound"][1] - ds["train_risk"].values)
    out = xr.Dataset(variables, coords={k: ds[k] for k in dims})
    out.attrs = {
        "config_hash": cfg.hash(),
        "settings": json.dumps(dataclasses.asdict(settings)),
        "delta_budget": format_budget(ccfg, num_members=len(chosen)) + (
            "\n  importance-weighted L_T(Q): a second certificate per member, its own δ + δ′ "
            f"= {ccfg.delta + ccfg.delta_prime:.6g} (its interval: + δ_low = {ccfg.delta + ccfg.delta_prime + ccfg.delta_lower:.6g})"
            if settings.importance_weighted else ""),
        "certified_members": len(chosen),
        "uncertified_diverged": len(excluded),  # picked members left NaN: diverged, or their grid prior did
        "shift_bound": SHIFT_BOUND,
    }
    results.atomic_write_netcdf(out, run_dir / "bounds.nc")
    return out


# which change of measure made shift_target_bound (and, for bound_set="train", target_bound);
# files without this attribute were written with an inverted kl bound that is not valid
SHIFT_BOUND = "lp (exact worst case over [0, 1] losses)"


def shift_variables(cfg: RunConfig, ds: xr.Dataset, in_dist_bound: np.ndarray, bound_set: str,
                    delta_heldout: float, in_dist_lower: np.ndarray | None = None) -> dict[str, tuple]:
    """The change-of-measure fields of bounds.nc, from the measured results and the certificates.

    ``extrap_gap_lower/upper`` ``[D, N, S]``: the held-out per-level Clopper–Pearson band of
    R_T − R_S; ``heldout_target_lower/upper``: the same bands' interval for the deterministic
    network's R_T (from the run's test sets, no KL: what held-out data certifies);
    ``shift_target_bound``: the deterministic network's R_T from its certified R_S by
    :func:`~difftrade.theory.shift.lp_shift_bound`; ``target_bound`` (``bound_set="train"``
    only, NaN where ``in_dist_bound`` is): the same change of measure applied to the certified
    L_S(Q), and ``target_lower_bound`` (from ``in_dist_lower``, the certified lower ends of
    L_S(Q)): the best case of the same change of measure (:func:`~difftrade.theory.shift.lp_shift_lower`);
    ``uncoverable_mass`` ``[D]``: π per training difficulty. Every ``[D, N, S]`` field is NaN for
    a diverged member (:func:`diverged_members`): nothing about it is certified.
    """
    dims = ("difficulty", "budget", "seed")
    train_w, target_w = cfg.train_weights(), cfg.target_weights()  # [D, L], [L]
    lower, upper = level_bands(ds["level_exact"].values, cfg.eval.n_test, delta_heldout)
    source_upper = np.einsum("dl,dnsl->dns", train_w, upper)
    source_lower = np.einsum("dl,dnsl->dns", train_w, lower)
    target_upper, target_lower = upper @ target_w, lower @ target_w
    s_atoms = shift_atoms(cfg.task, train_w)[:, None, None, :]
    t_atoms = shift_atoms(cfg.task, target_w)
    out = {
        "extrap_gap_lower": (dims, target_lower - source_upper),
        "extrap_gap_upper": (dims, target_upper - source_lower),
        "heldout_target_lower": (dims, target_lower),
        "heldout_target_upper": (dims, target_upper),
        "shift_target_bound": (dims, np.asarray(lp_shift_bound(np.clip(source_upper, 0, 1), t_atoms, s_atoms))),
        "uncoverable_mass": (("difficulty",), np.asarray([t_atoms[s_atoms[i, 0, 0] == 0].sum() for i in range(len(train_w))])),
    }
    if bound_set == "train":  # no target bound set: L_T(Q) by change of measure from L_S(Q)
        ok = np.isfinite(in_dist_bound)
        composed = np.asarray(lp_shift_bound(np.where(ok, in_dist_bound, 1.0), t_atoms, s_atoms))
        out["target_bound"] = (dims, np.where(ok, composed, np.nan))
        if in_dist_lower is not None:
            ok = np.isfinite(in_dist_lower)
            best = np.asarray(lp_shift_lower(np.where(ok, in_dist_lower, 0.0), t_atoms, s_atoms))
            out["target_lower_bound"] = (dims, np.where(ok, best, np.nan))
    bad = diverged_members(ds).reshape(cfg.grid_shape)
    return {k: (d, np.where(bad, np.nan, v)) if d == dims else (d, v) for k, (d, v) in out.items()}


def refresh_shift(run_dir: str | Path) -> xr.Dataset:
    """Recompute the change-of-measure fields of an existing ``bounds.nc`` (the certificates stay).

    For files written before ``shift_bound`` was recorded, whose shift bounds came from an
    inverted kl bound that can fall below the true target risk. Rewrites ``bounds.nc``.
    """
    run_dir = Path(run_dir)
    cfg, ds = load_run(run_dir)
    path = run_dir / "bounds.nc"
    if not path.exists():
        raise ValueError(f"{str(path)!r} does not exist; run `difftrade bound {run_dir}` first")
    b = results.load(path)
    if b.attrs.get("config_hash") != cfg.hash():
        raise ValueError(f"{str(path)!r} has config_hash {b.attrs.get('config_hash')!r}, the run {cfg.hash()!r}")
    used = {**dataclasses.asdict(BoundSettings()), **json.loads(b.attrs["settings"])}  # older files lack newer fields
    fields = shift_variables(cfg, ds, b["in_dist_bound"].values, used["bound_set"], used["delta_heldout"],
                             b["in_dist_lower_bound"].values if "in_dist_lower_bound" in b else None)
    b = b.assign(fields)
    b.attrs["shift_bound"] = SHIFT_BOUND
    results.atomic_write_netcdf(b, path)
    return b


VACUOUS = 0.999  # a certificate at or above this says nothing about a [0, 1] risk


def certified_view(ds: xr.Dataset, b: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    """Measured results and bounds restricted to the seeds and budgets that were certified.

    Seed means of measured risks and the empirical d* are then taken over the same members as
    the certificates they are set against (``--seeds 0`` compares seed 0 with seed 0).
    """
    settings = json.loads(b.attrs["settings"])
    sel = {dim: list(settings[key]) for dim, key in (("seed", "seeds"), ("budget", "budgets")) if settings.get(key) is not None}
    return ds.sel(sel), b.sel(sel)


def d_star_table(ds: xr.Dataset, b: xr.Dataset) -> dict[str, np.ndarray]:
    """d*(n) measured and from the bounds, and per-seed agreement, on ``certified_view`` arrays.

    ``empirical``, ``certified``, ``shift`` (and ``importance`` when ``b`` has the
    importance-weighted certificate): ``[N]`` difficulties (seed means; NaN where every bound at
    that n is vacuous); ``measured_per_seed`` ``[N, S]``: each seed's own measured d*;
    ``seeds_agree`` / ``seeds_informative`` (``iw_seeds_agree`` /
    ``iw_seeds_informative``): ``[N]`` counts of seeds whose own certified L_T(Q) (importance-
    weighted) names a d* (some bound non-vacuous) and, of those, the seeds where it is the d* of
    their own measured target risks. ``heldout_set`` ``[D, N, S]`` bool: the certified set of
    the deterministic networks from the held-out test sets' intervals. ``certified_set``
    (``iw_certified_set``) ``[D, N, S]`` bool, when ``b`` has the lower ends: the difficulties
    that no other difficulty's certified L_T(Q) beats (:func:`~difftrade.theory.tradeoff.certified_d_star_set`). A member's lower end counts
    only where its own bound is informative (< ``VACUOUS``): otherwise its σ was picked among
    vacuous ties and its Q is an arbitrary, often very noisy, network.
    """
    from difftrade.analysis import d_star, seed_mean
    from difftrade.theory.tradeoff import certified_d_star_set, d_star_from_bound

    diffs = ds["difficulty"].values
    measured = d_star_from_bound(ds["target_risk"].values, diffs)  # [N, S]

    def from_bound(field: str) -> np.ndarray:  # d* of the seed-mean bound, [N]
        return d_star_from_bound(seed_mean(b[field].values), diffs, vacuous=VACUOUS)  # all-NaN cells stay NaN

    def agreement(field: str) -> tuple[np.ndarray, np.ndarray]:
        per_seed = d_star_from_bound(b[field].values, diffs, vacuous=VACUOUS)  # [N, S]
        informative = np.isfinite(per_seed)
        return np.sum(informative & (per_seed == measured), axis=-1), np.sum(informative, axis=-1)

    out = {"empirical": d_star(ds["target_risk"].values, diffs), "measured_per_seed": measured, "certified": from_bound("target_bound"),
           "shift": from_bound("shift_target_bound")}
    out["seeds_agree"], out["seeds_informative"] = agreement("target_bound")
    if "target_iw_bound" in b:
        out["importance"] = from_bound("target_iw_bound")
        out["iw_seeds_agree"], out["iw_seeds_informative"] = agreement("target_iw_bound")
    if "heldout_target_lower" in b:  # the deterministic networks, from the run's held-out test sets
        out["heldout_set"] = certified_d_star_set(b["heldout_target_upper"].values, b["heldout_target_lower"].values)
    for prefix, key in (("target", "certified_set"), ("target_iw", "iw_certified_set")):
        if f"{prefix}_lower_bound" in b:
            upper = b[f"{prefix}_bound"].values
            out[key] = certified_d_star_set(upper, np.where(upper < VACUOUS, b[f"{prefix}_lower_bound"].values, np.nan))
    return out


def render(ds: xr.Dataset, b: xr.Dataset) -> str:
    """Markdown summary: certificates vs measured risks, shift bounds, d*(n) three ways."""
    from difftrade.analysis import seed_mean as mean  # over seeds; all-NaN cells (left uncertified) stay NaN

    ds, b = certified_view(ds, b)
    diffs, budgets = ds["difficulty"].values, ds["budget"].values

    settings = json.loads(b.attrs["settings"])
    iw = "target_iw_bound" in b
    lines = [
        f"# Certificates and shift bounds (config {b.attrs['config_hash']}, {b.attrs['certified_members']} members)",
        "",
        "PAC-Bayes certificates bound the risk of the *stochastic* network "
        + ("Q = N(μ, diag σ²) fitted to the bound" if settings.get("posterior") == "fitted" else "Q = N(w, σ²I)")
        + "; the measured risks are those of the deterministic network. Means over the certified seeds "
        + f"({', '.join(str(int(v)) for v in ds['seed'].values)}); `vacuous` = bound ≥ {VACUOUS}; "
        "‖μ − w₀‖ = distance from Q's mean to the prior centre.",
        "Bound set: " + ("each member's own n training examples (n = budget); cert. L_T(Q) = the change of measure "
                         "applied to cert. L_S(Q)" + ("; importance-weighted: a second certificate on the same examples, each "
                                                      "weighted by t/s of the level it was drawn at (B · bound + π), "
                                                      + ("at the σ, σ_P of cert. L_S(Q) (the same Q)."
                                                         if settings.get("iw_selection") == "shared" else "at its own σ, σ_P.")
                                                      if iw else ".")
                         if settings.get("bound_set") == "train"
                         else f"{settings['n_bound']:,} fresh examples from S and from T per member."),
        ("Monte-Carlo step: " + (f"r = {settings['num_draws']} fresh weight draw(s) per example and σ (slack ln(K/δ′)/(r·n))."
                                 if settings.get("monte_carlo", "whole_set") == "per_example" else
                                 "m weight draws, each on the whole bound set (Langford–Caruana, slack ln(2K/δ′)/m).")),
        *([("Prior centre: the grid's member of the same difficulty and seed at the next smaller budget n' (trained on "
            "examples [0, n') only); the bound set is the member's other n − n' training examples. The smallest budget "
            "has no such prior: NaN.")] if settings.get("prior") == "grid" else []),
        *([("Prior centre: the member's own weights after its prefix phase, which drew minibatches from its first n' "
            "training examples only; the bound set is its other n − n' training examples.")]
          if settings.get("prior") == "prefix" else []),
        *_diverged_lines(ds, b),
        *([("**Stale shift bounds:** this bounds.nc has no exact change-of-measure field. Its shift bounds and any "
            "composed cert. L_T(Q) came from an inverted kl change of measure, which can fall below the true target "
            "risk. `difftrade bound RUN --refresh-shift` recomputes them and keeps the certificates.")]
          if "shift_bound" not in b.attrs else []),
        "",
        "```",
        b.attrs["delta_budget"],
        "```",
        "",
        ("| d | n | train risk | test risk (S) | cert. L_S(Q) | target risk | cert. L_T(Q) | "
         + ("cert. L_T(Q), importance-weighted | " if iw else "") + "shift bound on R_T | KL (S) | ‖μ − w₀‖ |"),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if iw else ""),
    ]
    cols = {
        "train": ds["train_risk"].values, "test": ds["test_risk"].values, "cs": b["in_dist_bound"].values,
        "target": ds["target_risk"].values, "ct": b["target_bound"].values, "shift": b["shift_target_bound"].values,
        "iw": b["target_iw_bound"].values if iw else None,
        "kl": b["in_dist_kl"].values, "dist": b["prior_distance"].values if "prior_distance" in b else np.full(b["in_dist_kl"].shape, np.nan),
    }
    for i, d in enumerate(diffs):
        for j, n in enumerate(budgets):
            row = [mean(cols[k][i, j]) for k in ("train", "test", "cs", "target", "ct", *(("iw",) if iw else ()), "shift")]
            lines.append(f"| {d} | {int(n):,} | " + " | ".join(f"{v:.3f}" for v in row)
                         + "".join(" | —" if np.isnan(v) else f" | {v:.3g}" for v in (mean(cols["kl"][i, j]), mean(cols["dist"][i, j]))) + " |")
    def share_nonvacuous(values: np.ndarray) -> str:  # over the certified members only
        done = values[np.isfinite(values)]
        return f"{int(np.sum(done < VACUOUS))} of {done.size}"

    nonvac_s, nonvac_t = share_nonvacuous(b["in_dist_bound"].values), share_nonvacuous(b["target_bound"].values)
    table = d_star_table(ds, b)
    if "fit_retained" in b:
        kept = b["fit_retained"].values[np.isfinite(b["fit_retained"].values)]
        lines += ["", (f"Fitted posterior: μ keeps {kept.min():.2f} – {kept.max():.2f} of training's move away from the "
                       "prior centre (1 = the trained weights, 0 = back at the prior: then Q certifies the prior, not the member).")]
    lines += [
        "",
        f"Non-vacuous certificates: {nonvac_s} in-distribution, {nonvac_t} on the target"
        + (f" ({share_nonvacuous(b['target_iw_bound'].values)} importance-weighted)." if iw else "."),
        "Target mass no training example can cover, per difficulty (π): "
        + ", ".join(f"d={d}: {p:.3f}" for d, p in zip(diffs, b["uncoverable_mass"].values)),
        "",
        ("d* from a bound is the difficulty with the smallest bound, `—` where every bound at that n is vacuous. "
         "`seeds` columns: of the seeds whose own certified L_T(Q) names a d*, those where it is the d* of their own "
         "measured target risks."),
        "",
        "| n | empirical d* | d* from certified L_T(Q) | d* from shift bound | seeds: certified d* = measured d* |"
        + (" d* from importance-weighted L_T(Q) | seeds: importance-weighted d* = measured d* |" if iw else ""),
        "|---:|---:|---:|---:|---:|" + ("---:|---:|" if iw else ""),
    ]
    fmt = lambda v: "—" if np.isnan(v) else f"{v:.0f}"
    share = lambda agree, informative: f"{int(agree)} of {int(informative)}" if informative else "—"
    for j, n in enumerate(budgets):
        lines.append(f"| {int(n):,} | {fmt(table['empirical'][j])} | {fmt(table['certified'][j])} | {fmt(table['shift'][j])} | "
                     + share(table["seeds_agree"][j], table["seeds_informative"][j]) + " |"
                     + (f" {fmt(table['importance'][j])} | {share(table['iw_seeds_agree'][j], table['iw_seeds_informative'][j])} |"
                        if iw else ""))
    if "certified_set" in table:
        lines += _certified_set_lines(ds, b, table, settings)
    return "\n".join(lines) + "\n"


def _diverged_lines(ds: xr.Dataset, b: xr.Dataset) -> list[str]:
    """The report's line on the members left uncertified because they (or their grid prior) diverged;
    ``ds``, ``b``: the :func:`certified_view` arrays."""
    text = results.describe_diverged(ds)
    mask = results.diverged_mask(ds)
    own = int(mask.sum()) if mask is not None else 0
    if "uncertified_diverged" not in b.attrs:  # a bounds.nc from before diverged members were left out
        return [(f"**Diverged members:** {text}. This bounds.nc predates leaving them uncertified: its numbers for them "
                 "are not certificates; rerun `difftrade bound`.")] if text else []
    others = int(b.attrs["uncertified_diverged"]) - own
    parts = [(f"**Left uncertified:** {text}: their weights come from NaN/inf training steps, so bounds.nc holds NaN "
              "for them and no mean or d* counts them.")] if text else []
    if others > 0:
        parts.append(f"{'Also left' if text else '**Left'} uncertified{'' if text else ':**'} {others} member(s) whose "
                     "grid prior (the same difficulty and seed at the next smaller budget) diverged.")
    return [" ".join(parts)] if parts else []


def _certified_set_lines(ds: xr.Dataset, b: xr.Dataset, table: dict[str, np.ndarray], settings: dict) -> list[str]:
    """The report's table of certified sets of optimal difficulties, per budget and seed."""
    diffs, seeds = ds["difficulty"].values, ds["seed"].values
    measured = table["measured_per_seed"]  # [N, S]
    per_member = settings["delta"] + settings["delta_prime"] + settings["delta_lower"]  # files with lower ends have it
    columns = [(key, label) for key, label in (("certified_set", "certified set per seed"),
                                               ("iw_certified_set", "importance-weighted set per seed"),
                                               ("heldout_set", "held-out test sets, per seed")) if key in table]

    def cell(key: str, j: int) -> str:
        out = []
        for k, seed in enumerate(seeds):
            if not np.any(np.isfinite(b["target_bound"].values[:, j, k])):
                continue  # this seed was not certified at this n
            members = diffs[table[key][:, j, k]]
            out.append(f"{int(seed)}: {{{', '.join(str(int(d)) for d in members)}}}")
        return "; ".join(out) or "—"

    lines = [
        "",
        ("Certified sets of optimal difficulties: d is left out when another difficulty's certified L_T(Q) is below "
         "d's certified *lower* end, so the comparison itself is certified (comparing two upper bounds, as the d* "
         "columns above do, certifies no order). A lower end counts only where d's own certificate is non-vacuous: "
         "otherwise d's σ was picked among vacuous ties and its Q is an arbitrary, often very noisy, network. Per n "
         f"and seed, the set holds with probability ≥ 1 − {len(diffs)} × {per_member:.6g} = "
         f"{1 - len(diffs) * per_member:.6g} (each member's interval: δ + δ′ + δ_low)."
         + (" For contrast, the last column orders the deterministic networks by the Clopper–Pearson intervals of "
            "their target risks from the run's held-out test sets (no KL; per n and seed ≥ 1 − "
            f"{len(diffs)} × {settings['delta_heldout']:.6g} = {1 - len(diffs) * settings['delta_heldout']:.6g}): "
            "what held-out data certifies, against what the training data alone does." if "heldout_set" in table else "")),
        "",
        "| n | measured d* per seed | " + " | ".join(label for _, label in columns) + " |",
        "|---:|---|" + "---|" * len(columns),
    ]
    for j, n in enumerate(ds["budget"].values):
        picked = "; ".join(f"{int(seed)}: {'—' if np.isnan(measured[j, k]) else int(measured[j, k])}" for k, seed in enumerate(seeds))
        lines.append(f"| {int(n):,} | {picked} | " + " | ".join(cell(key, j) for key, _ in columns) + " |")
    return lines
