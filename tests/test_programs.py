"""The process's compiled programs and the channel a running trainer reports to."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difftrade.train.programs import Programs, SegmentChannel


def test_a_program_is_built_once_per_key_and_each_trace_is_counted():
    programs, builds = Programs(), []

    def build(traced):
        builds.append(1)

        def f(x):
            traced()
            return x + 1

        return jax.jit(f)

    f = programs.get("train", ("a",), build)
    assert programs.get("train", ("a",), build) is f and len(builds) == 1
    assert programs.get("evaluate", ("a",), build) is not f  # another kind, another program
    f(jnp.zeros(2))
    f(jnp.ones(2))  # same shape: no new trace
    f(jnp.zeros(3))  # new shape: traced again
    assert programs.traces() == {"train": 2}
    programs.clear()
    assert programs.get("train", ("a",), build) is not f and len(builds) == 3
    assert programs.traces() == {"train": 2}  # counts survive a clear


def test_listeners_hear_segments_only_inside_their_block():
    channel, heard = SegmentChannel(), []
    channel.report(np.zeros(4))  # nobody listens
    with pytest.raises(RuntimeError), channel.listening(heard.append):
        channel.report(np.zeros(4))
        assert channel.listeners == 1
        raise RuntimeError  # a run that fails stops listening too
    channel.report(np.zeros(2))
    assert heard == [4] and channel.listeners == 0
