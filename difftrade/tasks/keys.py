"""The one key scheme: every random stream of a run derives from ``root_key(run.seed)`` by
``fold_in`` with a named salt.

``data``, ``init`` and ``order`` (0..2) are the trainer's roots of example streams, initial weights
and minibatch order (:func:`difftrade.train.trainer.run_keys`); ``projection`` (3) the subspace
projections (:mod:`difftrade.train.subspace`); ``fit`` (77) and ``weight_draws`` (78) the
certifier's posterior fits and shared weight draws (:mod:`difftrade.certify.run`). Under each, a
member folds in its seed. The numbers are fixed: changing one changes every result drawn from it.
"""

from __future__ import annotations

import jax

SALTS: dict[str, int] = {
    "data": 0,
    "init": 1,
    "order": 2,
    "projection": 3,
    "fit": 77,
    "weight_draws": 78,
}


def root_key(seed: int) -> jax.Array:
    """The key every stream of a run (or a command's own sampling) derives from."""
    return jax.random.key(seed)


def salted(key: jax.Array, name: str) -> jax.Array:
    """``fold_in(key, SALTS[name])``: the root of one named stream."""
    if name not in SALTS:
        raise ValueError(f"salt {name!r} is unknown; allowed: {', '.join(SALTS)}")
    return jax.random.fold_in(key, SALTS[name])
