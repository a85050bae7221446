"""The member axis sharded over 4 (fake CPU) devices computes what one device computes."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from difftrade.train.run_task import run_task
from difftrade.train.trainer import train_population

SCRIPT = textwrap.dedent(
    """
    import sys, jax, numpy as np
    sys.path.insert(0, {tests!r})
    from conftest import tiny_raw
    from difftrade.tasks import configs
    from difftrade.train.run_task import run_task
    from difftrade.train.trainer import train_population
    assert jax.device_count() == 4, jax.devices()
    cfg = configs.from_dict(tiny_raw())
    pop = cfg.population().take(np.arange(5))  # 5 members: padded to 8 over 4 devices
    res = train_population(run_task(cfg), pop, cfg.model, cfg.train, jax.random.key(0))
    shard = jax.tree.leaves(res.params)[0].sharding
    np.savez({out!r}, loss=np.asarray(res.loss_curve), leaf=np.asarray(jax.tree.leaves(res.params)[3]),
             ndev=len(shard.device_set))
    """
)


@pytest.mark.slow
def test_sharded_equals_unsharded(tiny_cfg, tmp_path):
    out = tmp_path / "sharded.npz"
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    script = SCRIPT.format(tests=os.path.dirname(__file__), out=str(out))
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=600)
    pop = tiny_cfg.population().take(np.arange(5))
    res = train_population(
        run_task(tiny_cfg), pop, tiny_cfg.model, tiny_cfg.train, jax.random.key(0)
    )
    with np.load(out) as z:
        assert int(z["ndev"]) == 4  # the output really was spread over 4 devices
        np.testing.assert_allclose(z["loss"], res.loss_curve, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(z["leaf"], jax.tree.leaves(res.params)[3], rtol=1e-3, atol=1e-4)
