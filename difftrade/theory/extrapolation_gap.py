"""A certified band around the measured extrapolation gap ``R_T − R_S`` of a fixed predictor.

Always available, no theory: :func:`gap_band` takes held-out estimates of both risks (fresh
examples from T and from S) and inverts a binomial tail on each side of each risk
(Clopper–Pearson for a 0-1 loss, the kl/Chernoff test-set bound for any [0, 1] loss), δ split
over the four one-sided terms. Unlike :mod:`difftrade.theory.change_of_measure` it needs target
examples, not the distributions.

Float64 inside :func:`~difftrade.theory.float64.float64_scope`, jittable and vmappable;
host-known bad inputs raise ValueError, traced ones give NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from difftrade.theory import chernoff, clopper_pearson
from difftrade.theory.float64 import (
    ArrayLike,
    check_range,
    float64_scope,
    halve_delta,
    host_value,
)


class GapBand(NamedTuple):
    """Measured extrapolation gap ``R̂_T − R̂_S`` (an ESTIMATE) and a band holding w.p. ≥ 1 − δ."""

    measured_gap: jax.Array
    lower: jax.Array
    upper: jax.Array
    target_lower: jax.Array
    target_upper: jax.Array
    source_lower: jax.Array
    source_upper: jax.Array


def gap_band(
    target_errors: ArrayLike,
    target_n: ArrayLike,
    source_errors: ArrayLike,
    source_n: ArrayLike,
    delta: ArrayLike,
    *,
    binary: bool = True,
) -> GapBand:
    """Certified band for the extrapolation gap ``R_T − R_S`` of a *fixed* predictor.

    Held-out estimates of both risks (fresh examples from T and from S, independent of the
    predictor): with a 0-1 loss (``binary=True``) ``*_errors`` are error counts and each risk gets
    a Clopper–Pearson lower and upper end; otherwise ``*_errors`` are loss sums of a [0, 1] loss
    and each end is the kl/Chernoff test-set bound. The four one-sided statements get δ/4 each,
    so ``lower ≤ R_T − R_S ≤ upper`` with probability ≥ 1 − δ per band. For simultaneous bands
    over B entries (e.g. every difficulty) pass δ/B.
    Shapes broadcast; float64.
    """
    check_range("delta", delta, 0.0, 1.0, lo_open=True, hi_open=True)
    quarter = halve_delta(halve_delta(delta))
    if binary:
        t_lo, t_hi = (
            clopper_pearson.clopper_pearson_lower(target_errors, target_n, quarter),
            clopper_pearson.clopper_pearson_upper(target_errors, target_n, quarter),
        )
        s_lo, s_hi = (
            clopper_pearson.clopper_pearson_lower(source_errors, source_n, quarter),
            clopper_pearson.clopper_pearson_upper(source_errors, source_n, quarter),
        )
    else:
        for field, errors, n in (
            ("target_errors", target_errors, target_n),
            ("source_errors", source_errors, source_n),
        ):
            ev, nv = host_value(errors), host_value(n)
            if ev is not None and nv is not None and np.any((ev < 0) | (ev > nv)):
                raise ValueError(
                    f"{field}={ev.tolist()!r} is out of range; allowed: loss sums in [0, n]"
                )
        with float64_scope():
            rt = jnp.asarray(target_errors, jnp.float64) / jnp.asarray(target_n, jnp.float64)
            rs = jnp.asarray(source_errors, jnp.float64) / jnp.asarray(source_n, jnp.float64)
        t_lo, t_hi = (
            chernoff.kl_test_set_lower(rt, target_n, quarter),
            chernoff.kl_test_set_bound(rt, target_n, quarter),
        )
        s_lo, s_hi = (
            chernoff.kl_test_set_lower(rs, source_n, quarter),
            chernoff.kl_test_set_bound(rs, source_n, quarter),
        )
    with float64_scope():
        rt = jnp.asarray(target_errors, jnp.float64) / jnp.asarray(target_n, jnp.float64)
        rs = jnp.asarray(source_errors, jnp.float64) / jnp.asarray(source_n, jnp.float64)
        return GapBand(rt - rs, t_lo - s_hi, t_hi - s_lo, t_lo, t_hi, s_lo, s_hi)
