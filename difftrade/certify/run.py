"""Certify a finished run (``difftrade bound RUN_DIR``): select the members, centre their priors,
draw their bound sets, certify chunk by chunk on every device, and write ``bounds.nc``."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from difftrade.certify.geometry import distance, retained_displacement
from difftrade.certify.losses import ClippedCrossEntropy, ZeroOneAndWeightedLoss, ZeroOneLoss
from difftrade.certify.priors import PRIORS, PriorKind, StoredWeights
from difftrade.certify.settings import BoundSettings, stored_settings
from difftrade.certify.shift_fields import SHIFT_BOUND, shift_variables
from difftrade.config import settings_json
from difftrade.config.run_config import RunConfig
from difftrade.model.transformer import init_params
from difftrade.results import divergence
from difftrade.results import schema as results
from difftrade.runner.chunks import load_params
from difftrade.runner.population import PartialStore, keyed_folder, map_chunks, plan_chunks
from difftrade.runner.rundir import DirLock, load_run
from difftrade.tasks import data
from difftrade.tasks.keys import root_key, salted
from difftrade.theory.certificate_budget import format_budget
from difftrade.theory.certificate_types import CertificateConfig
from difftrade.theory.change_of_measure import importance_weights
from difftrade.theory.population_certificate import certify_population
from difftrade.theory.posterior import fit_posterior
from difftrade.train.mesh import on_member_mesh, round_up
from difftrade.train.run_task import run_task
from difftrade.train.trainer import member_data_root

# The certifier's own randomness comes from the salts "fit" and "weight_draws" of
# difftrade.tasks.keys, apart from the trainer's: every member shares the certificates' weight
# draws (one key per bound-set call, the call's index folded in again); the posterior fit folds in
# the member id, then 2.
CERTIFICATE_FIELDS = (
    "bound",
    "lower_bound",
    "kl",
    "sigma",
    "prior_sigma",
    "mc_risk_estimate",
    "deterministic_risk",
    "deterministic_lower",
    "deterministic_upper",
    "valid",
    "num_examples",
)


def certifiable(
    cfg: RunConfig, ds: xr.Dataset, picked: np.ndarray, kind: PriorKind, run_dir: Path
) -> np.ndarray:
    """The members of ``picked`` that can be certified: not diverged, and not left without a prior
    by a diverged member (``kind.blocking``, e.g. the grid prior's smaller member). A diverged
    member's weights are those of a run that hit NaN/inf steps: it is left uncertified (NaN in
    bounds.nc), never certified as if it had trained. ``ValueError`` when that leaves none."""
    bad = divergence.diverged_members(ds)
    blocker = kind.blocking(cfg, picked)
    keep = ~bad[picked] & ~((blocker >= 0) & bad[np.maximum(blocker, 0)])
    if not keep.any():
        raise ValueError(
            f"every member chosen for certification in {str(run_dir)!r} diverged (NaN/inf training steps"
            + (", or its prior's member did" if (blocker >= 0).any() else "")
            + f"): "
            f"{divergence.describe_diverged(ds)}; allowed: a run with members that trained (a smaller "
            "grid.learning_rate), or --seeds/--budgets naming some of them"
        )
    return picked[keep]


def certify_run(
    run_dir: str | Path, settings: BoundSettings | None = None, progress: bool = True
) -> xr.Dataset:
    """Certificates and shift bounds for a finished run; writes ``bounds.nc`` and returns it
    (``settings``: :class:`BoundSettings`, its defaults when None).

    Members are certified in chunks of ``settings.member_chunk`` (rounded up to the device
    count; with ``bound_set="train"`` one budget per chunk), the member axis split over every
    device. Each finished chunk is kept under ``run_dir/bounds.partial/<hash of config and
    settings>/`` (:class:`~difftrade.runner.population.PartialStore`); a rerun with the same settings
    after an interruption or failure loads those members instead of certifying them again (the
    numbers are the same: every random key derives from the run's seed and the member index).
    The folder is removed once ``bounds.nc`` is written. Members whose training diverged (and
    members whose prior's member did) are left uncertified: NaN (:func:`certifiable`). The run
    directory is locked against other writers while it certifies."""
    run_dir = Path(run_dir)
    cfg, ds = load_run(run_dir)  # a finished run, or a clear error before anything is written
    with DirLock(run_dir, "RUN"):
        return _certify_locked(run_dir, cfg, ds, settings or BoundSettings(), progress)


def _selected(cfg: RunConfig, members: np.ndarray, settings: BoundSettings) -> np.ndarray:
    """The stored members with the seeds and budgets ``settings`` names (all by default)."""
    pop = cfg.population()
    seeds = cfg.grid.seeds if settings.seeds is None else settings.seeds
    budgets = cfg.grid.budgets if settings.budgets is None else settings.budgets
    for flag, picked, grid_values in (
        ("seeds", seeds, cfg.grid.seeds),
        ("budgets", budgets, cfg.grid.budgets),
    ):
        unknown = sorted(set(picked) - set(grid_values))
        if unknown:
            raise ValueError(
                f"--{flag} {unknown} are not in the run's grid.{flag} {list(grid_values)}"
            )
    return np.array([i for i in members if pop.seed[i] in seeds and pop.budget[i] in budgets])


def _certify_locked(
    run_dir: Path, cfg: RunConfig, ds: xr.Dataset, settings: BoundSettings, progress: bool
) -> xr.Dataset:
    """:func:`certify_run` in a locked run directory (``cfg``, ``ds``: its config and results)."""
    stored = StoredWeights(cfg, run_dir, *load_params(run_dir, init_params(cfg.model, root_key(0))))
    selected = _selected(cfg, stored.members, settings)
    kind = PRIORS[settings.prior]
    centres = kind.prepare(stored)  # refuses a run this prior cannot serve, before any work
    chosen = certifiable(cfg, ds, selected, kind, run_dir)  # diverged members stay NaN
    budget = cfg.population().budget
    groups = (
        budget if settings.bound_set == "train" else np.zeros_like(budget)
    )  # "train": n is a shape
    size = round_up(settings.member_chunk, jax.device_count())
    store = PartialStore(_partial_dir(run_dir, cfg, settings), "certified")
    certify_chunk = _ChunkCertifier(cfg, settings, stored, centres)
    flat = map_chunks(
        chosen, lambda todo: plan_chunks(todo, size, groups), certify_chunk, store, progress
    )
    if not flat:  # e.g. prior="grid" on the smallest budget only: no member has a prior
        raise ValueError(
            f"no member of {str(run_dir)!r} could be certified with prior={settings.prior!r}: the chosen "
            "members have no prior (the smallest budget has no smaller member), or diverged, or their prior did"
        )
    members = flat.pop("member")
    written = _assemble(run_dir, cfg, ds, members, flat, settings, np.setdiff1d(selected, chosen))
    store.remove()  # bounds.nc holds every chunk now
    return written


@dataclasses.dataclass(frozen=True)
class _ChunkCertifier:
    """``(member ids [m], padded width) -> {field: [m]}``: one chunk's certificates (None when
    its members have no prior), computed with the member axis split over every device."""

    cfg: RunConfig
    settings: BoundSettings
    stored: StoredWeights
    centres: Any

    def __call__(self, ids: np.ndarray, width: int) -> dict[str, np.ndarray] | None:
        got = self.centres(ids)
        if got is None:
            return None
        first, prior = got
        pop, extra, level_weight = self.cfg.population(), {}, None
        if self.settings.importance_weighted:
            level_weight, extra["iw_scale"], extra["iw_uncovered"] = importance_weights(
                self.cfg.target_weights(), pop.weights[ids]
            )
        trees = (self.stored.take(ids), prior, pop.seed[ids], pop.weights[ids], ids, level_weight)
        out = on_member_mesh(
            lambda *t: self.certify(first, int(pop.budget[ids[0]]), *t), *trees, width=width
        )
        return {**out, **extra}

    def certify(
        self,
        first: int,
        n: int,
        params: Any,
        prior: Any,
        seeds: Any,
        weights: Any,
        ids: Any,
        level_weight: Any,
    ) -> dict[str, Any]:
        """The certificate fields of members on the mesh (all inputs with leading member axis)."""
        cfg, settings = self.cfg, self.settings
        run_key, ccfg, out = root_key(cfg.run.seed), settings.certificate_config(), {}
        calls, fit_set = _bound_set_calls(
            cfg, settings, run_key, seeds, weights, first, n, level_weight, ccfg
        )
        scale = None
        if settings.posterior == "fitted":  # one Q per member, fitted on its S bound set
            mean, scale, history = _fit(cfg, settings, run_key, params, prior, fit_set, ids)
            out["fit_objective"] = history["objective"][:, -1]
            out["fit_retained"] = retained_displacement(mean, params, prior)
            params = mean
        out["prior_distance"] = distance(params, prior)  # ‖Q's mean − prior centre‖
        draws = salted(run_key, "weight_draws")
        for salt, (names, loss, config, bound_set) in enumerate(calls):
            # one key for every member: they share their weight draws ε (generated once per chunk,
            # not once per member; each member's draws stay independent of its data)
            certs = certify_population(
                loss,
                params,
                prior,
                bound_set,
                jax.random.fold_in(draws, salt),
                config,
                key_axis=None,
                posterior_scale=scale,
            )
            for name, cert in zip(names, certs if isinstance(config, tuple) else (certs,)):
                out.update(
                    {f"{name}_{field}": getattr(cert, field) for field in CERTIFICATE_FIELDS}
                )
        return out


def _bound_set_calls(
    cfg: RunConfig,
    settings: BoundSettings,
    run_key: jax.Array,
    seeds: Any,
    weights: Any,
    first: int,
    n: int,
    level_weight: Any,
    ccfg: CertificateConfig,
) -> tuple[list[tuple], tuple]:
    """The certificate calls of a chunk, each ``(names, loss, config or configs, bound set)`` (two
    names share every forward pass), and the S bound set a fitted posterior is fitted on."""
    task, loss = run_task(cfg), ZeroOneLoss(cfg.model)
    if settings.bound_set == "fresh":
        fit_set, target_set = _fresh_sets(
            task,
            run_key,
            settings.n_bound,
            seeds,
            weights,
            jnp.asarray(cfg.target_weights(), jnp.float32),
        )
        return [(("in_dist",), loss, ccfg, fit_set), (("target",), loss, ccfg, target_set)], fit_set
    tokens, mask, levels = _train_sets(task, run_key, seeds, weights, first, n)
    if not settings.importance_weighted:
        return [(("in_dist",), loss, ccfg, (tokens, mask))], (tokens, mask)
    iw_cfg = dataclasses.replace(
        ccfg,
        binary_loss=False,
        selection="shared" if settings.iw_selection == "shared" else ccfg.selection,
    )
    w = np.take_along_axis(
        np.asarray(level_weight), np.asarray(levels) - task.d_min, axis=1
    )  # [m, n]
    both = (tokens, mask, jnp.asarray(w, jnp.float32))
    return [(("in_dist", "target_iw"), ZeroOneAndWeightedLoss(cfg.model), (ccfg, iw_cfg), both)], (
        tokens,
        mask,
    )


@functools.partial(jax.jit, static_argnums=(0, 2))
def _fresh_sets(
    task: Any, run_key: jax.Array, n: int, seeds: jax.Array, weights: jax.Array, target: jax.Array
) -> tuple:
    """Each member's n fresh bound-set examples from S (its weights) and n from T: ``((tokens, mask), (tokens, mask))``."""

    def one(seed, w):
        root = member_data_root(run_key, seed)
        s_tok, s_mask, _ = data.examples(task, root, data.SPLITS["bound"], w, jnp.arange(n))
        t_tok, t_mask, _ = data.examples(
            task, root, data.SPLITS["bound"], target, jnp.arange(n, 2 * n)
        )
        return (s_tok, s_mask), (t_tok, t_mask)

    return jax.vmap(one)(seeds, weights)


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _train_sets(
    task: Any, run_key: jax.Array, seeds: jax.Array, weights: jax.Array, start: int, stop: int
) -> tuple:
    """Each member's training examples [start, stop): tokens, mask, levels, each ``[m, stop - start, ...]``."""

    def one(seed, w):
        return data.examples(
            task, member_data_root(run_key, seed), data.SPLITS["train"], w, jnp.arange(start, stop)
        )

    return jax.vmap(one)(seeds, weights)


def _fit(
    cfg: RunConfig,
    settings: BoundSettings,
    run_key: jax.Array,
    params: Any,
    prior: Any,
    fit_set: tuple,
    ids: Any,
) -> tuple:
    """Fit Q = N(μ, diag σ²) per member on its S bound set (:func:`~difftrade.theory.posterior.fit_posterior`)."""
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(salted(run_key, "fit"), i), 2))(
        jnp.asarray(ids)
    )
    return _fit_members(
        ClippedCrossEntropy(cfg.model, settings.surrogate_p_min),
        settings.fit,
        params,
        prior,
        fit_set,
        keys,
    )


@functools.partial(jax.jit, static_argnums=(0, 1))
def _fit_members(
    surrogate: ClippedCrossEntropy,
    fit_cfg: Any,
    params: Any,
    prior: Any,
    fit_set: tuple,
    keys: jax.Array,
) -> tuple:
    return jax.vmap(lambda p, p0, d, k: fit_posterior(surrogate, p, p0, d, k, fit_cfg))(
        params, prior, fit_set, keys
    )


def _partial_dir(run_dir: Path, cfg: RunConfig, settings: BoundSettings) -> Path:
    """Where :func:`certify_run` keeps finished chunks until ``bounds.nc`` is written: one folder per
    (run config, settings), so a rerun with other settings never picks up these numbers."""
    return keyed_folder(
        run_dir / "bounds.partial", config=cfg.hash(), settings=settings_json.to_json(settings)
    )


def _assemble(
    run_dir: Path,
    cfg: RunConfig,
    ds: xr.Dataset,
    chosen: np.ndarray,
    flat: dict[str, np.ndarray],
    settings: BoundSettings,
    excluded: np.ndarray,
) -> xr.Dataset:
    """Write and return ``bounds.nc``: ``flat`` certificate fields of the members ``chosen`` (NaN elsewhere);
    ``excluded``: members picked but left uncertified because they, or their prior's member, diverged."""
    dims = ("difficulty", "budget", "seed")
    variables = {}
    for name, values in flat.items():
        full = np.full(int(np.prod(cfg.grid_shape)), np.nan)
        full[chosen] = values.astype(np.float64)
        variables[name] = (dims, full.reshape(cfg.grid_shape))
    if (
        "iw_scale" in variables
    ):  # weighted-loss risks [0, 1] → target risks: B·x (+ π on the upper ends)
        scale, pi = variables["iw_scale"][1], variables["iw_uncovered"][1]
        for field, plus in (
            ("bound", pi),
            ("deterministic_upper", pi),
            ("mc_risk_estimate", 0.0),
            ("deterministic_risk", 0.0),
            ("deterministic_lower", 0.0),
            ("lower_bound", 0.0),
        ):
            name = f"target_iw_{field}"
            variables[name] = (dims, np.minimum(1.0, scale * variables[name][1] + plus))
    variables.update(
        shift_variables(
            cfg,
            ds,
            variables["in_dist_bound"][1],
            settings.bound_set,
            settings.delta_heldout,
            variables["in_dist_lower_bound"][1],
        )
    )
    variables["in_dist_gen_gap_bound"] = (
        dims,
        variables["in_dist_bound"][1] - ds["train_risk"].values,
    )
    out = xr.Dataset(variables, coords={k: ds[k] for k in dims})
    out.attrs = _attributes(cfg, settings, len(chosen), len(excluded))
    results.atomic_write_netcdf(out, run_dir / "bounds.nc")
    return out


def _attributes(
    cfg: RunConfig, settings: BoundSettings, certified: int, excluded: int
) -> dict[str, Any]:
    """``bounds.nc``'s attributes: config hash, settings, the δ budget and the member counts."""
    ccfg = settings.certificate_config()
    iw_budget = (
        "\n  importance-weighted L_T(Q): a second certificate per member, its own δ + δ′ "
        f"= {ccfg.delta + ccfg.delta_prime:.6g} (its interval: + δ_low = {ccfg.delta + ccfg.delta_prime + ccfg.delta_lower:.6g})"
    )
    return {
        "config_hash": cfg.hash(),
        "settings": settings_json.to_json(settings),
        "delta_budget": format_budget(ccfg, num_members=certified)
        + (iw_budget if settings.importance_weighted else ""),
        "certified_members": certified,
        "uncertified_diverged": excluded,  # picked members left NaN: diverged, or their prior's member did
        "shift_bound": SHIFT_BOUND,
    }


def refresh_shift(run_dir: str | Path) -> xr.Dataset:
    """Recompute the change-of-measure fields of an existing ``bounds.nc`` (the certificates stay).

    For files without the ``shift_bound`` attribute, whose shift bounds came from an inverted kl
    bound that can fall below the true target risk. Rewrites ``bounds.nc``.
    """
    run_dir = Path(run_dir)
    cfg, ds = load_run(run_dir)
    path = run_dir / "bounds.nc"
    if not path.exists():
        raise ValueError(f"{str(path)!r} does not exist; run `difftrade bound {run_dir}` first")
    b = results.load(path)
    if b.attrs.get("config_hash") != cfg.hash():
        raise ValueError(
            f"{str(path)!r} has config_hash {b.attrs.get('config_hash')!r}, the run {cfg.hash()!r}"
        )
    used = stored_settings(b)
    fields = shift_variables(
        cfg,
        ds,
        b["in_dist_bound"].values,
        used.bound_set,
        used.delta_heldout,
        b["in_dist_lower_bound"].values if "in_dist_lower_bound" in b else None,
    )
    b = b.assign(fields)
    b.attrs["shift_bound"] = SHIFT_BOUND
    results.atomic_write_netcdf(b, path)
    return b
