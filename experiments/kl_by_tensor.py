"""Would a prior with one σ_P per weight tensor shrink the grid prior's KL? (an upper bound)

For each member of a finished run and its grid-prior partner (same difficulty and seed, next
smaller budget: ``difftrade.certify.priors.grid_prior_members``), split the squared distance
D = ‖w(n) − w(n′)‖² by weight tensor (D_l over p_l parameters) and compare, for a posterior
Q = N(w(n), σ²I), the smallest KL any isotropic prior N(w(n′), σ_P²I) allows,
½ p ln(1 + D / (p σ²)), with the smallest KL of per-tensor priors N(w(n′), σ_P,l² I),
Σ_l ½ p_l ln(1 + D_l / (p_l σ²)) (each at its own best σ_P,l² = σ² + D_l / p_l). By Jensen the
second is never larger; the ratio bounds what per-tensor prior scales could buy before paying
for choosing them.

    python experiments/kl_by_tensor.py runs/quick_finetune     # seconds; any finished run
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from difftrade.certify.priors import grid_prior_members
from difftrade.model.transformer import init_params
from difftrade.runner import chunks
from difftrade.runner.rundir import load_run


def min_kl(p: np.ndarray, d: np.ndarray, sigma: float) -> np.ndarray:
    """½ p ln(1 + D / (p σ²)): KL(N(μ, σ²I) ‖ N(w₀, σ_P²I)) at the best σ_P, p parameters, D = ‖μ − w₀‖²."""
    return 0.5 * p * np.log1p(d / (p * sigma**2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument(
        "--sigmas", default="3e-3,1e-2,3e-2,0.1", help="posterior σ values (comma-separated)"
    )
    args = parser.parse_args()
    cfg, _ = load_run(args.run_dir)
    members, params = chunks.load_params(args.run_dir, init_params(cfg.model, jax.random.key(0)))
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    names = [jax.tree_util.keystr(path) for path, _ in leaves]
    flat = [np.asarray(v, np.float64).reshape(len(members), -1) for _, v in leaves]
    p_l = np.array([a.shape[1] for a in flat])
    row_of = {int(m): r for r, m in enumerate(members)}
    sigmas = [float(s) for s in args.sigmas.split(",")]
    print(f"{len(flat)} tensors, {p_l.sum():,} parameters")
    print(
        "| d | n | n' | ‖w(n) − w(n')‖ | largest share of D (share of parameters) | "
        + " | ".join(f"KL iso / per-tensor, σ = {s:g}" for s in sigmas)
        + " |"
    )
    print("|---:|---:|---:|---:|---|" + "---:|" * len(sigmas))
    shape = cfg.grid_shape
    for idx in range(int(np.prod(shape))):
        n_prev, partner = grid_prior_members(cfg, np.array([idx]))
        if n_prev == 0 or idx not in row_of or int(partner[0]) not in row_of:
            continue
        i, j = row_of[idx], row_of[int(partner[0])]
        d_l = np.array([np.sum((a[i] - a[j]) ** 2) for a in flat])
        top = int(np.argmax(d_l))
        di, bi, _ = np.unravel_index(idx, shape)
        cells = [
            f"{min_kl(p_l.sum(), d_l.sum(), s):,.0f} / {min_kl(p_l, d_l, s).sum():,.0f}"
            for s in sigmas
        ]
        print(
            f"| {cfg.grid.difficulties[di]} | {cfg.grid.budgets[bi]:,} | {n_prev:,} | {np.sqrt(d_l.sum()):.2f} | "
            f"{names[top]} {d_l[top] / d_l.sum():.0%} ({p_l[top] / p_l.sum():.1%}) | "
            + " | ".join(cells)
            + " |"
        )


if __name__ == "__main__":
    main()
