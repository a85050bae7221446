"""Float64 arithmetic inside a float32 program, and the input checks every bound shares.

**Float64 mechanism (one rule for the whole of ``difftrade.theory``).** Every public function
runs its arithmetic inside :func:`float64_scope` (``jax.enable_x64(True)`` as a context
manager), casts its inputs to float64 and returns float64 ``jax.Array`` s. The global
``jax_enable_x64`` flag is never touched, so a float32 training program is unaffected; the
functions can be called eagerly, under ``jax.jit``, ``jax.vmap`` and ``jax.grad`` in a float32
program and still compute in float64. Outputs stay float64 if used directly (convert with
``np.asarray`` for reporting); arithmetic on them *outside* an x64 scope is canonicalised to
float32 by JAX, so do bound arithmetic through these functions.

**Bad input.** Concrete inputs (Python numbers, numpy arrays, concrete jax arrays) are checked
on the host: a probability outside [0, 1], a negative KL, ``n < 1``, ``δ ∉ (0, 1)`` raise a
``ValueError`` naming the field, the value and what is allowed (:func:`check_range`). Traced
inputs cannot be checked on the host: out-of-domain entries give NaN in the corresponding output
entries.

:func:`argmin` is the first-index argmin to use inside :func:`float64_scope` (``jnp.argmin``
fails there under an outer ``jax.jit``).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

ArrayLike = Any  # float | np.ndarray | jax.Array (kept loose: accepts tracers)


# ---- float64 scope and input checks -----------------------------------------------------------
def float64_scope() -> contextlib.AbstractContextManager:
    """Context manager under which JAX creates float64/int64 arrays, without touching the global flag.

    ``jax.enable_x64(True)`` on new JAX, ``jax.experimental.enable_x64(True)`` on older releases.
    """
    enable = getattr(jax, "enable_x64", None)
    if enable is None:  # jax < 0.6
        from jax.experimental import enable_x64 as enable  # type: ignore[no-redef]
    return enable(True)


def host_value(x: ArrayLike) -> np.ndarray | None:
    """``x`` as a float64 numpy array if its value is known on the host, else None (a tracer)."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x, dtype=np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError, TypeError):
        return None


def check_range(
    field: str,
    x: ArrayLike,
    lo: float = -math.inf,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    """Raise ``ValueError`` if a host-known ``x`` has an entry outside the interval (or NaN).

    Tracers pass unchecked (the numeric functions return NaN for their bad entries).
    """
    v = host_value(x)
    if v is None:
        return
    bad = np.isnan(v) | (v < lo) | (v > hi)
    if lo_open:
        bad |= v == lo
    if hi_open:
        bad |= v == hi
    if np.any(bad):
        first = float(v[bad].flat[0]) if v.ndim else float(v)
        where = "" if v.ndim == 0 else f" ({int(bad.sum())} of {v.size} entries bad, first shown)"
        interval = ("(" if lo_open else "[") + f"{lo:g}, {hi:g}" + (")" if hi_open else "]")
        raise ValueError(f"{field}={first!r}{where} is out of range; allowed: values in {interval}")


def as_float64(*xs: ArrayLike) -> list[jax.Array]:
    """Cast to float64 (call inside :func:`float64_scope`)."""
    return [jnp.asarray(x, dtype=jnp.float64) for x in xs]


def halve_delta(delta):
    """``delta / 2`` in float64, for splitting a confidence budget between two bounds.

    A host-known ``delta`` (Python number, numpy array, concrete jax array) gives a float64 numpy
    array, so the halves can still be checked on the host by the callee; a traced ``delta``
    gives a float64 ``jax.Array`` computed inside :func:`float64_scope`. Elementwise: the
    result has the shape of ``delta``.
    """
    v = host_value(delta)
    if v is not None:
        return v / 2.0
    with float64_scope():
        return jnp.asarray(delta, dtype=jnp.float64) / 2.0


def check_risk(field: str, x: ArrayLike) -> None:
    """Raise ``ValueError`` naming ``field`` if a host-known ``x`` (any shape) has an entry
    outside the risk / probability range [0, 1] or NaN; tracers pass unchecked
    (:func:`check_range`)."""
    check_range(field, x, 0.0, 1.0)


def check_delta(field: str, x: ArrayLike) -> None:
    """Raise ``ValueError`` naming ``field`` if a host-known ``x`` (any shape) has an entry
    outside the open confidence range (0, 1) or NaN; tracers pass unchecked
    (:func:`check_range`)."""
    check_range(field, x, 0.0, 1.0, lo_open=True, hi_open=True)


def check_kl(field: str, x: ArrayLike) -> None:
    """Raise ``ValueError`` naming ``field`` if a host-known ``x`` (any shape) has a negative or
    NaN entry (a KL divergence lies in [0, inf]); tracers pass unchecked (:func:`check_range`)."""
    check_range(field, x, 0.0, math.inf)


def check_n(field: str, x: ArrayLike) -> None:
    """Raise ``ValueError`` naming ``field`` if a host-known sample size ``x`` (any shape) has an
    entry below 1 or NaN; tracers pass unchecked (:func:`check_range`)."""
    check_range(field, x, 1.0, math.inf)


# ---- float64-safe reductions ----------------------------------------------------------------
def argmin(x: jax.Array, axis: int = -1) -> jax.Array:
    """First index of the minimum along ``axis`` (NaN entries ignored), int32.

    Use this instead of ``jnp.argmin`` inside :func:`float64_scope`: ``jnp.argmin``'s lowering
    re-traces with the global dtype and fails on float64 under an outer ``jax.jit``.
    """
    x = jnp.where(jnp.isnan(x), jnp.inf, x)
    smallest = jnp.min(x, axis=axis, keepdims=True)
    index = lax.broadcasted_iota(jnp.int32, x.shape, axis % x.ndim)
    first = jnp.min(jnp.where(x == smallest, index, x.shape[axis]), axis=axis)
    return jnp.minimum(first, x.shape[axis] - 1)
