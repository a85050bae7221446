"""Compression certificates for a run trained in a subspace: ``difftrade compress RUN_DIR``.

For every member of a ``[subspace]`` run (weights ``θ₀ + P z``, ``difftrade.train.subspace``):

1. quantize ``z`` ``[D]`` to ``L`` codebook values (quantization-aware training from the trained
   ``z``, ``difftrade.train.quantize``), giving symbols ``s`` ``[D]`` and a half-precision codebook;
2. describe the quantized network by a prefix-free code: ``D`` and ``L`` (Elias delta), the
   symbol counts, the arithmetic-coded symbols (``difftrade.theory.coding``) and ``16 L`` bits of
   codebook. The decoder knows what was fixed before the data: the architecture, the run key
   and the member's seed (hence ``θ₀`` and ``P``), the projection's ``terms``;
3. measure the quantized network's exact-match risk on all ``n`` of its own training examples
   and on each level's held-out test set;
4. certify its in-distribution risk by the Occam bound (``difftrade.theory.occam``) at
   ``δ / M`` per member, so all ``M`` certified members' intervals hold together with
   probability ≥ 1 − δ, and carry it to the target by the change of measure of the task's level
   structure (``certify.shift_fields.shift_variables``: ``target_bound``, ``target_lower_bound``);
5. per budget: the difficulty minimising the certified target risk and the certified set of
   optimal difficulties, beside the measured ``d*(n)``.

Results go to ``RUN_DIR/compression.nc`` (dims difficulty, budget, seed), ``compression.md`` and
``compression.codes.npz`` (each member's symbols and stored codebook: the described networks);
finished chunks of members are kept under ``compression.partial/`` until then, so an interrupted
run resumes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from difftrade.certify.shift_fields import shift_variables
from difftrade.config import settings_json
from difftrade.config.fields import Field, check_fields, refuse
from difftrade.config.logs import log
from difftrade.config.run_config import RunConfig
from difftrade.config.train_config import Population
from difftrade.model.checkpoint import load_run_base
from difftrade.results import identity
from difftrade.results import schema as results
from difftrade.runner.chunks import load_params
from difftrade.runner.population import PartialStore, keyed_folder, map_chunks, plan_chunks
from difftrade.runner.rundir import DirLock, load_run, read_config
from difftrade.tasks.keys import root_key
from difftrade.theory.coding import code_length, empirical_entropy_bits
from difftrade.theory.occam import occam_interval
from difftrade.train.evaluate import evaluate_population, risks
from difftrade.train.quantize import CODEBOOK_BITS, QuantizedView, initial_codebook, quantized
from difftrade.train.run_task import run_task
from difftrade.train.subspace import Subspace, projection_key
from difftrade.train.trainer import member_init_params, train_population

DIMS = ("difficulty", "budget", "seed")
CODES = "compression.codes.npz"  # member int [M], symbols uint16 [M, D], codebook float32 [M, L] (as stored)


@dataclasses.dataclass(frozen=True)
class CompressSettings:
    """How members are quantized and certified.

    ``levels``: codebook size L; ``qat_steps``: quantization-aware training steps (0: round the
    trained ``z`` to the initial codebook); ``qat_lr_scale``: their peak learning rate as a
    fraction of ``grid.learning_rate``; ``delta``: for all certified members together;
    ``delta_heldout``: for the held-out level bands of the shift fields; ``member_chunk``:
    members quantized per compiled call (0: the whole grid).
    """

    levels: int = 8
    qat_steps: int = 200
    qat_lr_scale: float = 0.1
    delta: float = 0.05
    delta_heldout: float = 0.05
    member_chunk: int = 0

    def __post_init__(self) -> None:
        check_fields(self, "compress", COMPRESS_FIELDS)
        if self.qat_steps == 1:
            raise refuse(
                "compress", "qat_steps", 1, "0 (no quantization-aware training) or an integer >= 2"
            )


COMPRESS_FIELDS: dict[str, Field] = {
    "levels": Field(int, 1, 2**16, note="codebook values"),
    "qat_steps": Field(int, 0, note="0 = round to the initial codebook"),
    "qat_lr_scale": Field(float, 0, low_open=True, note="times grid.learning_rate"),
    "delta": Field(float, 0, 1, low_open=True, high_open=True),
    "delta_heldout": Field(float, 0, 1, low_open=True, high_open=True),
    "member_chunk": Field(int, 0, note="0 = every member at once"),
}


def stored_settings(c: xr.Dataset) -> CompressSettings:
    """The :class:`CompressSettings` a ``compression.nc`` Dataset was written with."""
    return settings_json.from_json(
        CompressSettings, c.attrs.get("settings"), c.encoding.get("source", "compression.nc")
    )


def quantize_members(
    cfg: RunConfig,
    settings: CompressSettings,
    pop: Population,
    z: jax.Array,
    run_key: jax.Array,
    base: Any,
) -> dict[str, Any]:
    """Quantize members ``pop`` (size m) from their coordinates ``z`` float32 ``[m, D]``.

    Returns ``symbols`` int32 ``[m, D]``, ``codebook`` float32 ``[m, L]`` (as stored), ``params``
    (the quantized networks, leading axis m) and ``qat_nonfinite`` int32 ``[m]``.
    """
    codebook = jax.jit(jax.vmap(initial_codebook, in_axes=(0, None)), static_argnums=1)(
        z, settings.levels
    )
    bad = np.zeros(pop.size, np.int32)
    if settings.qat_steps:
        qat = dataclasses.replace(
            cfg.train,
            steps=settings.qat_steps,
            warmup_steps=0,
            num_checkpoints=1,
            prefix_steps=0,
            epochs=0.0,
        )
        init = (
            None
            if base is None
            else jax.tree.map(lambda x: jnp.broadcast_to(x, (pop.size, *x.shape)), base)
        )
        lr_pop = dataclasses.replace(
            pop, learning_rate=pop.learning_rate * np.float32(settings.qat_lr_scale)
        )
        out = train_population(
            run_task(cfg),
            lr_pop,
            cfg.model,
            qat,
            run_key,
            init=init,
            view=QuantizedView(cfg.subspace),
            start={"z": z, "codebook": codebook},
        )
        z, codebook, bad = out.coords["z"], out.coords["codebook"], np.asarray(out.nonfinite_steps)
    symbols, stored, zhat = jax.vmap(quantized)(z, codebook)
    return {
        "symbols": np.asarray(symbols),
        "codebook": np.asarray(stored),
        "params": networks(cfg, run_key, base, pop.seed, zhat),
        "qat_nonfinite": bad,
    }


def networks(
    cfg: RunConfig, run_key: jax.Array, base: Any, seeds: np.ndarray, coords: jax.Array
) -> Any:
    """The weights ``θ₀ + P z`` of members with seeds int ``[m]`` at coordinates float32 ``[m, D]``
    (a params pytree with leading axis m): what a decoder rebuilds from a description."""
    return _networks(
        cfg.subspace,
        cfg.model,
        run_key,
        base,
        jnp.asarray(seeds, jnp.int32),
        jnp.asarray(coords, jnp.float32),
    )


@functools.partial(jax.jit, static_argnums=(0, 1))
def _networks(
    subspace: Any,
    model_cfg: Any,
    run_key: jax.Array,
    base: Any,
    seeds: jax.Array,
    coords: jax.Array,
) -> Any:
    """:func:`networks`, compiled once per (subspace, model, shapes): ``θ₀`` is each member's
    initialisation, or ``base`` (the same for all) when given."""

    def one(seed: jax.Array, z: jax.Array) -> Any:
        theta0 = member_init_params(model_cfg, run_key, seed) if base is None else base
        return Subspace(subspace, theta0, projection_key(run_key, seed)).weights(z)

    return jax.vmap(one)(seeds, coords)


def describe(symbols: np.ndarray, levels: int) -> dict[str, np.ndarray]:
    """Code lengths in bits of members' descriptions, symbols int ``[m, D]`` -> each ``[m]``:
    ``code_bits`` (the whole description: coded symbols + codebook), ``symbol_bits``
    (``D``, ``L``, counts and payload), ``codebook_bits`` and ``entropy_bits`` (``D·H`` of each
    member's symbol frequencies: the arithmetic payload is within 2 bits above it)."""
    lengths = [code_length(s, levels) for s in symbols]
    symbol_bits = np.array([c.total for c in lengths], np.float64)
    codebook_bits = np.full(len(lengths), float(CODEBOOK_BITS * levels))
    return {
        "code_bits": symbol_bits + codebook_bits,
        "symbol_bits": symbol_bits,
        "codebook_bits": codebook_bits,
        "entropy_bits": np.array([empirical_entropy_bits(s, levels) for s in symbols], np.float64),
    }


def compress_chunk(
    cfg: RunConfig,
    settings: CompressSettings,
    pop: Population,
    z: jax.Array,
    run_key: jax.Array,
    base: Any,
) -> dict[str, np.ndarray]:
    """Quantize, describe and evaluate members ``pop`` (size m): per-member arrays ``[m]`` (``level_exact`` ``[m, L]``)."""
    q = quantize_members(cfg, settings, pop, z, run_key, base)
    ev_cfg = dataclasses.replace(
        cfg.eval, n_train_eval=int(np.max(pop.budget))
    )  # every own training example
    ev = evaluate_population(
        run_task(cfg), q["params"], pop.weights, pop.budget, pop.seed, cfg.model, ev_cfg, run_key
    )
    errors = pop.budget - np.rint(np.asarray(ev["train_exact"], np.float64) * pop.budget)
    return {
        **describe(q["symbols"], settings.levels),
        "train_errors": errors,
        "level_exact": ev["level_exact"],
        "qat_nonfinite": q["qat_nonfinite"],
        "symbols": q["symbols"],
        "codebook": q["codebook"],
    }


def _partial_dir(run_dir: Path, cfg: RunConfig, settings: CompressSettings) -> Path:
    """Where :func:`compress_run` keeps finished chunks: one folder per (run config, settings)."""
    return keyed_folder(
        run_dir / "compression.partial", config=cfg.hash(), settings=settings_json.to_json(settings)
    )


def check_run(cfg: RunConfig, run_dir: Path) -> None:
    """Refuse a run that was not trained in a subspace (there is no ``z`` to code)."""
    if not cfg.subspace.enabled:
        raise ValueError(
            f"{str(run_dir)!r} was trained without [subspace] (subspace.dim = 0); allowed: a run whose "
            "config sets [subspace] dim > 0, so each member has coordinates z to quantize and code"
        )


def compress_run(
    run_dir: str | Path, settings: CompressSettings = CompressSettings(), progress: bool = True
) -> xr.Dataset:
    """Quantize and certify every member of a ``[subspace]`` run; writes ``compression.nc`` and returns it.
    The run directory is locked against other writers while it runs."""
    run_dir = Path(run_dir)
    cfg, ds = load_run(run_dir)  # a finished run, or a clear error before anything is written
    with DirLock(run_dir, "RUN"):
        return _compress_locked(run_dir, cfg, ds, settings, progress)


def _compress_locked(
    run_dir: Path, cfg: RunConfig, ds: xr.Dataset, settings: CompressSettings, progress: bool
) -> xr.Dataset:
    """:func:`compress_run` in a locked run directory (``cfg``, ``ds``: its config and results)."""
    check_run(cfg, run_dir)
    done = _finished(run_dir, cfg, settings)
    if done is not None:  # measured already: the certificates are recomputed from its measurements
        if progress:
            log.info(
                "%s holds these measurements (same config and settings)", run_dir / "compression.nc"
            )
        return _write(run_dir, ds, certify(cfg, ds, measurements(done), settings))
    pop, run_key = cfg.population(), root_key(cfg.run.seed)
    base = None if cfg.run.init == "scratch" else load_run_base(run_dir, cfg.run.init, cfg.model)
    _, coords = load_params(run_dir, jnp.zeros((cfg.subspace.dim,), jnp.float32), kind="coords")
    store = PartialStore(_partial_dir(run_dir, cfg, settings), "compressed")
    flat = map_chunks(
        np.arange(pop.size),
        lambda todo: plan_chunks(todo, settings.member_chunk or pop.size),
        lambda ids, _: compress_chunk(
            cfg, settings, pop.take(ids), jnp.asarray(coords[ids]), run_key, base
        ),
        store,
        progress,
    )
    flat.pop("member")  # every member, in order
    codes = {
        "member": np.arange(pop.size),
        "symbols": flat.pop("symbols").astype(np.uint16),
        "codebook": flat.pop("codebook"),
    }
    results.atomic_save_npz(
        codes, run_dir / CODES
    )  # what each certificate describes, to decode and check
    out = _write(run_dir, ds, certify(cfg, ds, flat, settings))
    store.remove()
    return out


def _write(run_dir: Path, ds: xr.Dataset, c: xr.Dataset) -> xr.Dataset:
    """Write ``compression.nc`` and ``compression.md``; returns ``c``."""
    results.atomic_write_netcdf(c, run_dir / "compression.nc")
    (run_dir / "compression.md").write_text(render(ds, c))
    return c


MEASURED = (
    "code_bits",
    "symbol_bits",
    "codebook_bits",
    "entropy_bits",
    "train_errors",
    "qat_nonfinite",
)


def measurements(c: xr.Dataset) -> dict[str, np.ndarray]:
    """The per-member measurements of a ``compression.nc`` (grid order, ``[M]``; ``level_exact`` ``[M, L]``),
    from which :func:`certify` computes every certificate."""
    flat = {k: c[k].values.reshape(-1) for k in MEASURED}
    flat["level_exact"] = c["q_level_exact"].values.reshape(flat["code_bits"].size, -1)
    return flat


def not_coded(cfg: RunConfig) -> dict[str, Any]:
    """The canonical config but the subspace dimension D, which each description codes: runs that
    :func:`best_of` combines must agree on all of it (``[subspace] terms`` included)."""
    d = cfg.to_dict()
    return {**d, "subspace": {k: v for k, v in d.get("subspace", {}).items() if k != "dim"}}


def numbers_of(c: xr.Dataset) -> CompressSettings:
    """The compress settings a ``compression.nc`` was written with, but the member chunk (it
    changes no number): δ, δ held out and the rest must agree for :func:`best_of`."""
    return dataclasses.replace(stored_settings(c), member_chunk=0)


def best_of(run_dirs: list[Path], out_dir: Path) -> xr.Dataset:
    """Per member, the description with the smallest certified target risk among certified runs
    that differ only in ``[subspace]`` (e.g. D): writes ``out_dir/compression.nc`` and ``.md``.

    Valid at the runs' common δ: D and L are part of every description's code (Elias delta), so
    the descriptions of all dimensions form one prefix-free code per member and its Occam bound
    holds for all of them at once; choosing among them after seeing the data costs nothing more.
    Adds ``subspace_dim`` ``[difficulty, budget, seed]`` (the chosen run's D).
    """
    runs = [(load_run(Path(r)), _certified(Path(r))) for r in run_dirs]
    (cfg0, ds0), c0 = runs[0]
    for ((cfg, _), c), path in zip(runs[1:], run_dirs[1:]):
        if not_coded(cfg) != not_coded(cfg0) or numbers_of(c) != numbers_of(c0):
            raise ValueError(
                f"{str(path)!r} differs from {str(run_dirs[0])!r} in more than [subspace] dim (or in its "
                "compress settings: delta, delta_heldout, ...); allowed: runs of one grid that differ "
                "only in the subspace dimension D, which each description codes"
            )
    choice = np.argmin(
        np.stack([np.nan_to_num(c["target_bound"].values, nan=np.inf) for _, c in runs]), axis=0
    )

    def pick(arrays: list[np.ndarray]) -> np.ndarray:  # [R, D, N, S, ...] -> [D, N, S, ...]
        stacked = np.stack(arrays)
        index = choice.reshape(1, *choice.shape, *([1] * (stacked.ndim - 1 - choice.ndim)))
        return np.take_along_axis(stacked, index, axis=0)[0]

    out = c0.copy()
    for name, var in c0.data_vars.items():
        if var.dims[:3] == DIMS:
            out[name] = (var.dims, pick([c[name].values for _, c in runs]))
    out["subspace_dim"] = (DIMS, np.asarray([cfg.subspace.dim for (cfg, _), _ in runs])[choice])
    out.attrs.update(
        runs=json.dumps([str(r) for r in run_dirs]),
        subspace="best of " + ", ".join(f"D = {cfg.subspace.dim}" for (cfg, _), _ in runs),
    )
    measured = ds0.assign(
        target_risk=(DIMS, pick([ds["target_risk"].values for (_, ds), _ in runs]))
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    results.atomic_write_netcdf(out, out_dir / "compression.nc")
    (out_dir / "compression.md").write_text(render(measured, out))
    return out


def _finished(run_dir: Path, cfg: RunConfig, settings: CompressSettings) -> xr.Dataset | None:
    """The run's ``compression.nc`` when it was written for this config and these settings (the
    member chunk aside: it does not change the numbers), else None."""
    path = run_dir / "compression.nc"
    if not path.exists():
        return None
    c = results.open_netcdf(path)
    try:
        used = stored_settings(c)
    except ValueError:  # not this kind of file: compress again
        return None
    same = dataclasses.replace(used, member_chunk=0) == dataclasses.replace(
        settings, member_chunk=0
    )
    return c if same and c.attrs.get("config_hash") == cfg.hash() else None


def _certified(run_dir: Path) -> xr.Dataset:
    """A run's ``compression.nc``; ``ValueError`` naming it when absent."""
    path = run_dir / "compression.nc"
    if not path.exists():
        raise ValueError(
            f"{str(path)!r} does not exist; allowed: a run certified by `difftrade compress {run_dir}`"
        )
    c = results.open_netcdf(path)
    identity.require(path, c.attrs.get(identity.ATTR, "none"), read_config(run_dir).hash())
    return c


def certify(
    cfg: RunConfig, ds: xr.Dataset, flat: dict[str, np.ndarray], settings: CompressSettings
) -> xr.Dataset:
    """The certificates from per-member measurements ``flat`` (grid order, ``[M]``): ``compression.nc``'s dataset."""
    shape = cfg.grid_shape
    grid = {k: v.reshape(*shape, *v.shape[1:]) for k, v in flat.items()}
    n = np.broadcast_to(np.asarray(cfg.grid.budgets, np.float64)[None, :, None], shape)
    emp = grid["train_errors"] / n
    per_member, heldout_per_member = (
        settings.delta / int(np.prod(shape)),
        settings.delta_heldout / int(np.prod(shape)),
    )
    lower, upper = occam_interval(emp, n, grid["code_bits"], per_member)
    level_exact = xr.DataArray(grid["level_exact"], dims=(*DIMS, "level"))
    measured = risks(
        1.0 - emp, grid["level_exact"], cfg.train_weights()[:, None, None, :], cfg.target_weights()
    )
    shift = shift_variables(
        cfg,
        xr.Dataset({"level_exact": level_exact}),
        np.asarray(upper),
        "train",
        heldout_per_member,
        np.asarray(lower),
    )
    variables = {k: (DIMS, grid[k]) for k in MEASURED}
    variables.update({f"q_{k}": (DIMS, v) for k, v in measured.items()})
    variables.update(
        in_dist_bound=(DIMS, np.asarray(upper)),
        in_dist_lower_bound=(DIMS, np.asarray(lower)),
        q_level_exact=level_exact,
        **shift,
    )
    out = xr.Dataset(variables, coords={k: ds[k] for k in DIMS})
    out.attrs = {
        "config_hash": cfg.hash(),
        "settings": settings_json.to_json(settings),
        "subspace": json.dumps(dataclasses.asdict(cfg.subspace)),
        "delta_per_member": per_member,
        "delta_heldout_per_member": heldout_per_member,
        "certified_members": int(np.prod(shape)),
    }
    return out


def d_star_summary(ds: xr.Dataset, c: xr.Dataset) -> dict[str, np.ndarray]:
    """Per budget ``[N]``: ``measured`` (d* of the run's seed-mean target risk), ``quantized`` (of the
    quantized networks' seed-mean target risk), ``certified`` (argmin of the seed-mean certified
    target bound; NaN where every bound is vacuous); ``certified_set`` bool ``[D, N]``: the
    difficulties that no other difficulty's certified target risk beats for every seed (the
    union over seeds of each seed's certified set: each seed's networks are certified together),
    from the training-data certificates alone (all hold together w.p. ≥ 1 − δ); ``heldout_set``:
    the same with each lower end raised to the held-out test sets' Clopper–Pearson lower end of
    R_T where that is higher (all intervals together w.p. ≥ 1 − δ − δ_heldout). Training data
    alone never lower-bounds the risk on target levels it does not cover, so only the second
    set can rule a difficulty out for what it leaves uncovered."""
    from difftrade.analysis.optimum import seed_mean
    from difftrade.theory.d_star_from_bounds import certified_d_star_set, d_star_from_bound

    diffs = ds["difficulty"].values
    upper, lower = c["target_bound"].values, c["target_lower_bound"].values
    per_seed = certified_d_star_set(upper, lower)  # [D, N, S]
    with_heldout = certified_d_star_set(upper, np.fmax(lower, c["heldout_target_lower"].values))
    return {
        "heldout_set": with_heldout.any(axis=2),
        "measured": d_star_from_bound(seed_mean(ds["target_risk"].values), diffs),
        "quantized": d_star_from_bound(seed_mean(c["q_target_risk"].values), diffs),
        "certified": d_star_from_bound(seed_mean(c["target_bound"].values), diffs, vacuous=VACUOUS),
        "certified_set": per_seed.any(axis=2),
    }


VACUOUS = 0.999  # a bound at or above this certifies nothing about a [0, 1] risk


def render(ds: xr.Dataset, c: xr.Dataset) -> str:
    """``compression.md``: per (difficulty, budget) the seed means of code length, risks and bounds; then d* per budget."""
    settings = stored_settings(c)
    mean = lambda name: np.nanmean(c[name].values, axis=2)
    lines = [
        f"# Compression certificates ({c.attrs['certified_members']} members, subspace {c.attrs['subspace']})",
        "",
        (
            f"Quantized to {settings.levels} levels after {settings.qat_steps} quantization-aware steps; "
            f"Occam bound at δ = {settings.delta} for all members together "
            f"(δ/M = {c.attrs['delta_per_member']:.3g} each). Seed means."
        ),
        "",
        "| d | n | code bits | D·H bits | train risk (q) | test risk (q) | certified R_S | target risk (q) | certified R_T |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fields = (
        "code_bits",
        "entropy_bits",
        "q_train_risk",
        "q_test_risk",
        "in_dist_bound",
        "q_target_risk",
        "target_bound",
    )
    table = {f: mean(f) for f in fields}
    chosen = c["subspace_dim"].values if "subspace_dim" in c else None  # best_of: each seed's D
    if chosen is not None:
        lines[-2], lines[-1] = lines[-2] + " D chosen |", lines[-1] + "---|"
    for i, d in enumerate(c["difficulty"].values):
        for j, n in enumerate(c["budget"].values):
            cells = [
                f"{table[f][i, j]:.0f}" if f.endswith("bits") else f"{table[f][i, j]:.3f}"
                for f in fields
            ]
            if chosen is not None:
                cells.append("/".join(str(int(v)) for v in np.unique(chosen[i, j])))
            lines.append(f"| {d} | {n} | " + " | ".join(cells) + " |")
    summary = d_star_summary(ds, c)
    diffs = c["difficulty"].values
    settings_delta = f"δ + δ_heldout = {settings.delta + settings.delta_heldout:.3g}"
    lines += [
        "",
        f"| n | measured d* | quantized d* | certified argmin | certified set (δ) | with held-out R_T ({settings_delta}) |",
        "|---|---|---|---|---|---|",
    ]
    show = lambda x: "–" if np.isnan(x) else str(int(x))
    members = lambda mask: "{" + ", ".join(str(int(d)) for d in diffs[mask]) + "}"
    for j, n in enumerate(c["budget"].values):
        lines.append(
            f"| {n} | {show(summary['measured'][j])} | {show(summary['quantized'][j])} | "
            f"{show(summary['certified'][j])} | {members(summary['certified_set'][:, j])} | "
            f"{members(summary['heldout_set'][:, j])} |"
        )
    return "\n".join(lines) + "\n"
