"""The δ budget of a PAC-Bayes certificate, itemised on the host.

:func:`confidence_budget` lists every δ a
:class:`~difftrade.theory.certificate_types.CertificateConfig` spends per member (the PAC-Bayes kl
bound, sample convergence of the Monte-Carlo risk, its lower side, the deterministic network's
interval) and how each is split over the σ grids; :func:`format_budget` / :func:`print_budget`
add the union bounds they imply, per statement and over a population of members.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from difftrade.theory.certificate_types import CertificateConfig


@dataclasses.dataclass(frozen=True)
class BudgetItem:
    """One confidence term: what it pays for, how it is split, and its δ."""

    term: str
    delta: float
    split: str


def confidence_budget(config: CertificateConfig) -> list[BudgetItem]:
    """Every δ the certificate spends (per member), in the order the proof uses them."""
    k, kp = config.num_sigmas, config.num_prior_sigmas
    prior = "σ_P = σ (tied)" if config.prior_sigmas is None else f"{kp} prior σ_P"
    return [
        BudgetItem(
            "PAC-Bayes kl bound (ln(K·K_P) paid inside)",
            config.delta,
            f"δ/{k * kp} at each of {k} posterior σ × {prior}",
        ),
        BudgetItem(
            "sample convergence of the Monte-Carlo risk",
            config.delta_prime,
            f"δ′/{k} at each of {k} posterior σ (σ is chosen after the draws), "
            + (
                f"ln(2K/δ′)/m with m={config.num_draws} draws on the whole set"
                if config.monte_carlo == "whole_set"
                else f"ln(K/δ′)/(r·n) with r={config.num_draws} fresh draws per example"
            ),
        ),
        BudgetItem(
            "lower side of the Monte-Carlo risk (only the interval lower_bound ≤ L(Q) ≤ bound)",
            config.delta_lower,
            f"δ_low/{k} at each of {k} posterior σ; the kl event above is two-sided and shared",
        ),
        BudgetItem(
            "deterministic network's interval (separate statement)",
            config.delta_heldout,
            "δ_h/2 per side, " + ("Clopper–Pearson" if config.binary_loss else "kl/Chernoff"),
        ),
    ]


def format_budget(config: CertificateConfig, num_members: int = 1) -> str:
    """The itemised δ budget and the union bounds it implies, as printable text."""
    if (
        isinstance(num_members, bool)
        or not isinstance(num_members, (int, np.integer))
        or num_members < 1
    ):
        raise ValueError(f"num_members={num_members!r} is not allowed; allowed: an integer >= 1")
    items = confidence_budget(config)
    lines = ["confidence budget (per member):"]
    for item in items:
        lines.append(f"  δ = {item.delta:.6g}  {item.term}: {item.split}")
    cert = config.delta + config.delta_prime
    lines.append(
        f"  certificate L(Q) ≤ bound: union δ + δ′ = {cert:.6g} → confidence {1 - cert:.6g}"
    )
    interval = cert + config.delta_lower
    lines.append(
        f"  interval lower_bound ≤ L(Q) ≤ bound: δ + δ′ + δ_low = {interval:.6g} → confidence {1 - interval:.6g}"
    )
    both = cert + config.delta_heldout
    lines.append(
        f"  certificate and deterministic interval together: {both:.6g} → confidence {1 - both:.6g}"
    )
    if num_members > 1:
        total = num_members * cert
        lines.append(
            f"  all {num_members} members' certificates at once: {num_members} × {cert:.6g} = {total:.6g}"
            + (
                f" → confidence {1 - total:.6g}"
                if total < 1
                else " (≥ 1: vacuous; lower δ per member)"
            )
        )
    return "\n".join(lines)


def print_budget(config: CertificateConfig, num_members: int = 1) -> None:
    """Print :func:`format_budget`."""
    print(format_budget(config, num_members))
