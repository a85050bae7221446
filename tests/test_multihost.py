"""A run spread over two processes (``jax.distributed`` on CPU, gloo) equals a one-process run.

Each process owns one CPU device; the member axis of every chunk spans both, process 0 alone
writes the run directory, and resume / refusals are decided by process 0 for both.
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import tiny_raw, toml_text

from difftrade.results import schema as results
from difftrade.runner import experiment
from difftrade.tasks import configs
from difftrade.train.run_task import run_task


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(cfg_path, out, *extra) -> list[subprocess.CompletedProcess]:
    """Run ``difftrade run`` as process 0 and 1 of a two-process job; wait for both."""
    port = _free_port()
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1"
    )
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "difftrade.cli.main",
                "run",
                str(cfg_path),
                "--out",
                str(out),
                *extra,
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    done = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return done


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    raw = tiny_raw(run={"chunk_size": 3})  # rounded up to 4: a multiple of the 2 devices
    tmp = tmp_path_factory.mktemp("multihost")
    cfg_path = tmp / "tiny.toml"
    cfg_path.write_text(toml_text(raw))
    out = tmp / "run"
    procs = _launch(cfg_path, out)
    for p in procs:
        assert p.returncode == 0, p.stderr[-3000:]
    return configs.from_dict(raw), cfg_path, out, procs


@pytest.mark.slow
def test_two_processes_equal_one(two_process_run, tmp_path):
    cfg, _, out, procs = two_process_run
    assert "on 2 device(s) in 2 process(es)" in procs[0].stdout  # process 0 reports ...
    assert "done:" not in procs[1].stdout  # ... the worker does not
    chunks = sorted((out / "chunks").glob("chunk_*.nc"))
    assert [len(results.load(c)["member"]) for c in chunks] == [4, 4]  # chunks spanned both devices
    one = experiment.run(cfg, tmp_path / "one", progress=False)
    two = results.load(out / "results.nc")
    for name in one.data_vars:
        np.testing.assert_allclose(
            two[name].values, one[name].values, rtol=1e-5, atol=1e-6, err_msg=name
        )


@pytest.mark.slow
def test_resume_and_refusal_are_decided_by_process_0(two_process_run):
    _, cfg_path, out, _ = two_process_run
    before = results.load(out / "results.nc")
    last = max((out / "chunks").glob("chunk_*.nc"))
    lost = results.load(last)["member"].values.tolist()
    last.unlink()  # as if the run had been killed during its last chunk
    (out / "results.nc").unlink()

    refused = _launch(cfg_path, out)  # no --resume: both processes refuse, nothing is trained
    assert [p.returncode for p in refused] == [2, 2]
    assert "--resume" in refused[0].stderr
    assert "process 0 refused" in refused[1].stderr

    resumed = _launch(cfg_path, out, "--resume")
    assert [p.returncode for p in resumed] == [0, 0], resumed[0].stderr[-3000:]
    after = results.load(out / "results.nc")
    assert len(lost) == 4
    for name in before.data_vars:
        np.testing.assert_allclose(
            after[name].values, before[name].values, rtol=1e-5, atol=1e-6, err_msg=name
        )


WORKER = """
import sys, jax, numpy as np
sys.path.insert(0, {tests!r})
from conftest import tiny_raw, toml_text
from difftrade import config
from difftrade.tasks import configs
from difftrade.train.run_task import run_task
from difftrade.runner import multihost
from difftrade.train.mesh import member_mesh, shard_members, to_host
from difftrade.train.trainer import member_init_params, train_population
multihost.initialize("localhost:{port}", 2, int(sys.argv[1]))
# host values (numpy or process-local jax) are split, not stacked once per process
for value in (np.arange(4.0), jax.numpy.arange(4.0)):
    placed = shard_members(value, member_mesh())
    assert placed.shape == (4,) and len(placed.sharding.device_set) == 2, placed.shape
    assert np.array_equal(to_host(placed), np.arange(4.0))
cfg = configs.from_dict(tiny_raw())
pop = cfg.population().take(np.arange(3))  # 3 members: padded to 4 over the 2 processes
key = jax.random.key(0)
base = member_init_params(cfg.model, jax.random.key(7), 5)  # a process-local 'base', as fine-tuning loads
init = jax.tree.map(lambda x: jax.numpy.broadcast_to(x, (3, *x.shape)), base)
res = to_host(train_population(run_task(cfg), pop, cfg.model, cfg.train, key, init=init))
if multihost.is_main():
    np.savez({out!r}, loss=res.loss_curve, leaf=jax.tree.leaves(res.params)[3], init=jax.tree.leaves(res.init_params)[3])
"""


@pytest.mark.slow
def test_fine_tuning_init_across_processes(tiny_cfg, tmp_path):
    """A process-local starting point (a loaded base) is split over hosts correctly: the same
    members come out as from one process, and padding to the device count is dropped."""
    import jax

    from difftrade.train.trainer import member_init_params, train_population

    out = tmp_path / "two.npz"
    script = WORKER.format(tests=os.path.dirname(__file__), port=_free_port(), out=str(out))
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(i)], env=env, stderr=subprocess.PIPE, text=True
        )
        for i in range(2)
    ]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors[0][-3000:] + errors[1][-3000:]
    base = member_init_params(tiny_cfg.model, jax.random.key(7), 5)
    init = jax.tree.map(lambda x: jax.numpy.broadcast_to(x, (3, *x.shape)), base)
    pop = tiny_cfg.population().take(np.arange(3))
    one = train_population(
        run_task(tiny_cfg), pop, tiny_cfg.model, tiny_cfg.train, jax.random.key(0), init=init
    )
    with np.load(out) as z:
        assert z["loss"].shape == (3, tiny_cfg.train.num_checkpoints)
        np.testing.assert_allclose(
            z["init"], jax.tree.leaves(one.init_params)[3]
        )  # started from the base
        np.testing.assert_allclose(z["loss"], one.loss_curve, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(z["leaf"], jax.tree.leaves(one.params)[3], rtol=1e-4, atol=1e-5)
