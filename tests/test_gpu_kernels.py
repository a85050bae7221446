"""The fused Pallas kernels compiled by Triton on a real GPU compute what the XLA path computes.

CPU runs check the same kernels in Pallas' interpreter (tests/test_model.py, test_train.py) and
their Triton lowering (test_pallas_kernels_lower_to_triton_for_cuda); what only a GPU shows is
Triton's own compile and its numerics. These tests run where jax's backend is a GPU
(`experiments/gpu_suite.sh sweep` runs them before timing anything) and are skipped elsewhere.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difftrade.config.model_config import ModelConfig
from difftrade.model.kernels import fused_mlp
from difftrade.model.transformer import graphdef, implementation, init_params
from difftrade.train.trainer import masked_loss

pytestmark = pytest.mark.skipif(
    jax.default_backend() != "gpu", reason="compiled Triton kernels need a GPU"
)


@pytest.mark.parametrize("d", [128, 256])
def test_compiled_fused_mlp_matches_float64(d):
    """x + gelu(LN(x) w1 + b1) w2 + b2, compiled by Triton, against float64 numpy."""
    ks = jax.random.split(jax.random.key(d), 7)
    n, f = 1792, 4 * d
    x = 1.0 + jax.random.normal(ks[0], (n, d))
    scale, bias = 1.0 + jax.random.normal(ks[5], (d,)) / 4, jax.random.normal(ks[6], (d,)) / 4
    w1, b1 = jax.random.normal(ks[1], (d, f)) / np.sqrt(d), jax.random.normal(ks[2], (f,)) / 3
    w2, b2 = jax.random.normal(ks[3], (f, d)) / np.sqrt(f), jax.random.normal(ks[4], (d,))
    y = jax.jit(fused_mlp)(x, scale, bias, w1, b1, w2, b2)
    x64, s64, c64, w1_64, b1_64, w2_64, b2_64 = (
        np.asarray(a, np.float64) for a in (x, scale, bias, w1, b1, w2, b2)
    )
    mean = x64.mean(axis=1, keepdims=True)
    xn = (x64 - mean) / np.sqrt(((x64 - mean) ** 2).mean(axis=1, keepdims=True) + 1e-6) * s64 + c64
    h = xn @ w1_64 + b1_64
    g = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))
    # float32 inputs: Triton's dots may use TF32, hence the loose tolerance
    np.testing.assert_allclose(y, x64 + g @ w2_64 + b2_64, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("d", [128, 256])
def test_compiled_kernels_train_step_matches_xla(d):
    """Loss and every gradient of a vmapped bf16 step: both Pallas kernels vs the XLA path."""
    cfg = ModelConfig(seq_len=28, d_model=d, compute_dtype="bfloat16", attention="xla", mlp="xla")
    fused = dataclasses.replace(cfg, attention="pallas", mlp="pallas")
    members = 4
    params = jax.vmap(lambda k: init_params(cfg, k))(jax.random.split(jax.random.key(0), members))
    tokens = jax.random.randint(jax.random.key(1), (members, 64, 29), 0, 64)
    mask = jnp.broadcast_to(jnp.arange(29) >= 18, tokens.shape)

    def step(c):
        grad = jax.value_and_grad(lambda p, t, m: masked_loss(graphdef(c), p, t, m)[0])
        return jax.jit(jax.vmap(grad))(params, tokens, mask)

    (loss_x, grads_x), (loss_f, grads_f) = step(cfg), step(fused)
    np.testing.assert_allclose(loss_f, loss_x, rtol=2e-2)
    for a, b in zip(jax.tree.leaves(grads_f), jax.tree.leaves(grads_x)):
        scale = float(jnp.max(jnp.abs(b))) + 1e-6
        assert (
            float(jnp.max(jnp.abs(a - b))) <= 0.1 * scale
        )  # bf16 activations: 10% of the largest entry


def test_auto_kernels_resolve_to_the_measured_fastest_on_gpu():
    """model.attention/mlp='auto': Pallas attention on a GPU, the fused MLP up to width 128."""
    assert implementation(ModelConfig(d_model=128), "attention") == "pallas"
    assert implementation(ModelConfig(d_model=128), "mlp") == "pallas"
    assert implementation(ModelConfig(d_model=256), "mlp") == "xla"
    assert (
        implementation(ModelConfig(d_model=96, num_heads=4), "mlp") == "xla"
    )  # not a power of two
    assert implementation(ModelConfig(d_model=96, num_heads=4), "attention") == "xla"  # head_dim 24
