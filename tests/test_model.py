import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_raw

from difftrade.config.model_config import ModelConfig
from difftrade.model.kernels import fused_mlp
from difftrade.model.transformer import (
    apply,
    causal_attention,
    check_backend,
    graphdef,
    implementation,
    init_params,
    token_losses,
)
from difftrade.tasks import configs
from difftrade.train.trainer import masked_loss


def _params(cfg, seed=0):
    return graphdef(cfg), init_params(cfg, jax.random.key(seed))


def test_shapes_and_param_count():
    cfg = ModelConfig(seq_len=12, d_model=32, num_layers=2, num_heads=4)
    g, p = _params(cfg)
    logits = apply(g, p, jnp.zeros((3, 12), jnp.int32))
    assert logits.shape == (3, 12, cfg.vocab_size) and logits.dtype == jnp.float32
    assert sum(x.size for x in jax.tree.leaves(p)) == cfg.num_params()


def test_causal():
    cfg = ModelConfig(seq_len=10, d_model=32, num_heads=4)
    g, p = _params(cfg)
    a = jax.random.randint(jax.random.key(1), (2, 10), 0, 64)
    b = a.at[:, 6:].set(5)
    la, lb = apply(g, p, a), apply(g, p, b)
    np.testing.assert_allclose(la[:, :6], lb[:, :6], atol=1e-6)
    assert not np.allclose(la[:, 6:], lb[:, 6:])


@pytest.mark.parametrize("pos", ["learned", "sinusoidal"])
def test_bf16_compute_close_to_f32(pos):
    f32 = ModelConfig(seq_len=10, d_model=32, num_heads=4, pos_encoding=pos)
    bf16 = ModelConfig(
        seq_len=10, d_model=32, num_heads=4, pos_encoding=pos, compute_dtype="bfloat16"
    )
    g32, p = _params(f32)
    g16 = graphdef(bf16)
    tokens = jax.random.randint(jax.random.key(2), (4, 10), 0, 64)
    l32, l16 = apply(g32, p, tokens), apply(g16, p, tokens)  # same float32 master weights
    # bf16 has an 8-bit mantissa: logits agree to a few 1e-2 at this scale (stated tolerance 0.05).
    assert float(jnp.max(jnp.abs(l32 - l16))) < 0.05
    assert float(jnp.max(jnp.abs(l32))) > 0.1  # the comparison is not between zeros


def test_token_losses_match_numpy():
    cfg = ModelConfig(seq_len=8, d_model=16, num_heads=2)
    g, p = _params(cfg)
    tokens = jax.random.randint(jax.random.key(3), (2, 9), 0, 64)
    mask = jnp.ones((2, 9), bool)
    ce, correct = token_losses(g, p, tokens, mask)
    logits = np.asarray(apply(g, p, tokens[:, :-1]), np.float64)
    logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    tgt = np.asarray(tokens[:, 1:])
    ref = logz - np.take_along_axis(logits, tgt[..., None], -1)[..., 0]
    np.testing.assert_allclose(ce, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(correct, logits.argmax(-1) == tgt)


@pytest.mark.parametrize(
    "field,value",
    [
        ("d_model", 0),
        ("num_heads", 3),
        ("pos_encoding", "rope"),
        ("compute_dtype", "int8"),
        ("num_layers", 1.5),
        ("attention", "flash"),
        ("mlp", "triton"),
        ("mlp", "pallas"),
        ("attention", "fused"),
    ],
)
def test_bad_config(field, value):
    with pytest.raises(ValueError, match=field):
        ModelConfig(
            **{field: value, "d_model": 48} if value == "pallas" else {field: value}
        )  # 48: not a power of 2


def _numpy_attention(q, k, v):
    """Reference: causal softmax attention in float64 numpy, q/k/v [B, T, H, Dh]."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    t = q.shape[1]
    s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhqk,bkhd->bqhd", p, v)


@pytest.mark.parametrize("t", [7, 28, 40])  # padded to 16, 32, 64
def test_pallas_attention_equals_xla_and_numpy(t):
    """The fused kernel (interpreted on CPU) computes the same values and gradients, under vmap."""
    key = jax.random.key(t)
    q, k, v, w = (
        jax.random.normal(kk, (2, 3, t, 2, 16), jnp.float32) for kk in jax.random.split(key, 4)
    )

    def loss(impl):
        fn = jax.vmap(lambda q, k, v: causal_attention(q, k, v, impl, impl == "pallas"))
        return lambda q, k, v: jnp.sum(fn(q, k, v) * w)

    out = jax.vmap(lambda q, k, v: causal_attention(q, k, v, "pallas", True))(q, k, v)
    grads = {impl: jax.grad(loss(impl), argnums=(0, 1, 2))(q, k, v) for impl in ("xla", "pallas")}
    for m in range(2):
        np.testing.assert_allclose(out[m], _numpy_attention(q[m], k[m], v[m]), rtol=1e-5, atol=1e-5)
    for g_xla, g_pallas in zip(grads["xla"], grads["pallas"]):
        np.testing.assert_allclose(g_pallas, g_xla, rtol=1e-4, atol=1e-5)


def test_pallas_attention_refused_off_gpu():
    if jax.default_backend() == "gpu":
        pytest.skip("on a GPU the kernel runs")
    cfg = ModelConfig(vocab_size=16, seq_len=4, d_model=16, num_layers=1, num_heads=1)
    pallas = dataclasses.replace(cfg, attention="pallas")
    tokens, params = jnp.zeros((1, 4), jnp.int32), init_params(cfg, jax.random.key(0))
    for refuse in (lambda: check_backend(pallas), lambda: apply(graphdef(pallas), params, tokens)):
        with pytest.raises(ValueError, match="model.attention='pallas' needs a GPU.*'interpret'"):
            refuse()
    interpreted = dataclasses.replace(pallas, kernels="interpret")  # the same function, slowly
    check_backend(interpreted)
    np.testing.assert_allclose(
        apply(graphdef(interpreted), params, tokens),
        apply(graphdef(cfg), params, tokens),
        atol=1e-5,
    )


def test_auto_kernels_are_xla_off_gpu_and_explicit_choices_stand():
    if jax.default_backend() == "gpu":
        pytest.skip("tests/test_gpu_kernels.py checks 'auto' on a GPU")
    cfg = ModelConfig(d_model=128)
    assert (cfg.attention, cfg.mlp) == ("auto", "auto")
    assert [implementation(cfg, f) for f in ("attention", "mlp")] == ["xla", "xla"]
    explicit = ModelConfig(attention="pallas", mlp="pallas")
    assert [implementation(explicit, f) for f in ("attention", "mlp")] == ["pallas", "pallas"]
    with pytest.raises(ValueError, match="model.mlp='fast'; allowed: auto, xla, pallas"):
        ModelConfig(mlp="fast")


def test_auto_kernels_on_a_gpu_backend(monkeypatch):
    """The resolution rule itself, with the backend reported as a GPU (tests/test_gpu_kernels.py
    runs the same checks on a real one)."""
    import difftrade.model.transformer as model_module

    monkeypatch.setattr(model_module.jax, "default_backend", lambda: "gpu")
    resolved = lambda **kw: [implementation(ModelConfig(**kw), f) for f in ("attention", "mlp")]
    assert resolved(d_model=128) == ["pallas", "pallas"]
    assert resolved(d_model=256) == ["pallas", "xla"]  # the fused MLP lost at 256
    assert resolved(d_model=96, num_heads=4) == [
        "xla",
        "xla",
    ]  # head_dim 24, width 96: no Triton tiles
    assert resolved(d_model=64, num_heads=8) == ["xla", "pallas"]  # head_dim 8 < 16
    assert resolved(d_model=128, attention="cudnn", mlp="xla") == ["cudnn", "xla"]
    # one member per device: 'auto' is XLA (a lone member ran 0.69x through the kernels); explicit choices stand
    lone = lambda **kw: [
        implementation(ModelConfig(**kw).for_members(1), f) for f in ("attention", "mlp")
    ]
    assert lone(d_model=128) == ["xla", "xla"] and lone(d_model=128, mlp="pallas") == [
        "xla",
        "pallas",
    ]
    assert implementation(ModelConfig(d_model=128).for_members(2), "mlp") == "pallas"


def test_attention_implementation_is_not_identity():
    """Same hash and same checkpoint architecture whichever attention kernel computes it."""
    xla = configs.from_dict(tiny_raw())
    pallas = configs.from_dict(tiny_raw(model={"attention": "pallas"}))
    assert pallas.model.attention == "pallas"
    assert xla.hash() == pallas.hash()
    assert xla.model.architecture() == pallas.model.architecture()
    assert xla.hash() != configs.from_dict(tiny_raw(model={"d_model": 32})).hash()
    assert "attention" in dataclasses.asdict(pallas.model)  # still recorded in the saved config


def _numpy_mlp(x, scale, bias, w1, b1, w2, b2, eps=1e-6):
    """``x + gelu(LN(x) w1 + b1) w2 + b2`` in float64 (two-pass variance: an independent form)."""
    x, scale, bias, w1, b1, w2, b2 = (
        np.asarray(a, np.float64) for a in (x, scale, bias, w1, b1, w2, b2)
    )
    mean = x.mean(axis=1, keepdims=True)
    xn = (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=1, keepdims=True) + eps) * scale + bias
    h = xn @ w1 + b1
    g = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))
    return x + g @ w2 + b2


@pytest.mark.parametrize(
    "tuning",
    [
        None,
        {"block_tokens": 16, "block_tokens_dw": 64, "num_warps_dw": 8},
        {"block_tokens": 64, "block_tokens_dw": 16},
    ],
)
@pytest.mark.slow
def test_fused_mlp_equals_numpy_and_autodiff(tuning):
    """Values against float64 numpy; gradients of all seven inputs against jax's autodiff of flax's
    LayerNorm + the unfused MLP + the residual; under vmap, with a token count (100) that needs
    padding to the block, and inputs with a large mean (the LayerNorm statistics matter). Also with
    the weight-gradient kernel's token block untied from the others' (larger and smaller)."""
    from flax import linen

    from difftrade.model.kernels import MlpTuning

    ks = jax.random.split(jax.random.key(3), 8)
    m, n, d, f = 2, 100, 32, 128
    x = 3.0 + 2.0 * jax.random.normal(ks[0], (m, n, d))
    scale, bias = 1.0 + jax.random.normal(ks[6], (m, d)) / 4, jax.random.normal(ks[7], (m, d)) / 4
    w1, b1 = jax.random.normal(ks[1], (m, d, f)) / 6, jax.random.normal(ks[2], (m, f)) / 3
    w2, b2 = jax.random.normal(ks[3], (m, f, d)) / 10, jax.random.normal(ks[4], (m, d))
    w = jax.random.normal(ks[5], (m, n, d))
    args = (x, scale, bias, w1, b1, w2, b2)
    t = None if tuning is None else MlpTuning(**tuning)
    fused = jax.vmap(lambda *a: fused_mlp(*a, interpret=True, tuning=t))
    ln = linen.LayerNorm(epsilon=1e-6)

    def plain_one(x, scale, bias, w1, b1, w2, b2):
        xn = ln.apply({"params": {"scale": scale, "bias": bias}}, x)
        return x + jax.nn.gelu(xn @ w1 + b1) @ w2 + b2

    plain = jax.vmap(plain_one)
    y = fused(*args)
    for i in range(m):
        np.testing.assert_allclose(y[i], _numpy_mlp(*(a[i] for a in args)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(plain(*args), y, rtol=1e-5, atol=1e-5)
    g_fused = jax.grad(lambda *a: jnp.sum(fused(*a) * w), argnums=range(7))(*args)
    g_plain = jax.grad(lambda *a: jnp.sum(plain(*a) * w), argnums=range(7))(*args)
    for name, a, b in zip(("x", "scale", "bias", "w1", "b1", "w2", "b2"), g_fused, g_plain):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("bfloat16", 3e-2)])
def test_fused_kernels_model_equals_xla(dtype, tol):
    """The whole model with both Pallas kernels: same loss and gradients as the XLA path."""
    cfg = ModelConfig(
        vocab_size=16, seq_len=12, d_model=32, num_layers=2, num_heads=2, compute_dtype=dtype
    )
    fused = dataclasses.replace(cfg, attention="pallas", mlp="pallas", kernels="interpret")
    params = init_params(cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (4, 13), 0, 16)
    mask = jnp.arange(13)[None, :] >= 6
    mask = jnp.broadcast_to(mask, tokens.shape)

    def loss_and_grads(c):
        fn = jax.value_and_grad(lambda p: masked_loss(graphdef(c), p, tokens, mask)[0])
        return fn(params)

    loss_x, grads_x = loss_and_grads(cfg)
    loss_f, grads_f = loss_and_grads(fused)
    np.testing.assert_allclose(loss_f, loss_x, rtol=tol)
    for a, b in zip(jax.tree.leaves(grads_f), jax.tree.leaves(grads_x)):
        np.testing.assert_allclose(a, b, rtol=tol * 10, atol=tol)


@pytest.mark.parametrize("d", [128, 256])
def test_pallas_kernels_lower_to_triton_for_cuda(d):
    """No GPU needed: a vmapped bf16 training gradient of the model with both kernels passes
    Pallas' Triton lowering for CUDA (jax.export), and every kernel is in the program, batched
    over the member axis. What is left for a GPU is Triton's own compile."""
    from jax import export

    cfg = ModelConfig(
        seq_len=28,
        d_model=d,
        compute_dtype="bfloat16",
        attention="pallas",
        mlp="pallas",
        kernels="gpu",  # GPU kernels whatever the local backend
    )
    gdef, members = graphdef(cfg), 3  # 3: no coincidence with the 4 heads in a grid
    params = jax.eval_shape(
        jax.vmap(lambda k: init_params(cfg, k)), jax.random.split(jax.random.key(0), members)
    )
    tokens = jax.ShapeDtypeStruct((members, 64, 29), jnp.int32)
    mask = jax.ShapeDtypeStruct((members, 64, 29), jnp.bool_)
    step = jax.jit(jax.vmap(jax.grad(lambda p, t, m: masked_loss(gdef, p, t, m)[0])))
    triton = "__gpu$xla.gpu.triton"
    exported = export.export(
        step,
        platforms=["cuda"],
        disabled_checks=[export.DisabledSafetyCheck.custom_call(triton)],
    )(params, tokens, mask)
    text = exported.mlir_module()
    calls = [line for line in text.splitlines() if triton in line and "custom_call" in line]
    names = {re.search(r'name = "(\w+)"', line).group(1) for line in calls}
    assert {"fused_mlp_forward", "fused_mlp_dx", "fused_mlp_dw"} <= names, names
    assert "mha_forward" in names and any(
        n.startswith("mha_backward") or "dkv" in n or "dq" in n for n in names
    ), names
    ours = [line for line in calls if 'name = "fused_' in line]
    assert ours and all(f"grid_y = {members} " in line for line in ours)  # members: a grid axis


def test_mlp_tuning_fits_shared_memory_and_keeps_the_tuned_default():
    """The estimate reproduces the H100's refused request (294,912 bytes: forward kernel, d=256,
    64 x 128 blocks, bf16); resolved launches always fit; the measured d=128 bf16 default stands."""
    from difftrade.model.kernels import SMEM_LIMIT, MlpTuning

    assert (
        MlpTuning(64, 128, 0, 0, 2).resolve(256, 1024, 2).block_hidden == 64
    )  # the refused 128 is halved
    assert MlpTuning(64, 128, 32, 8, 2).smem_bytes(256, 2)[0] == 294_912
    assert MlpTuning().resolve(128, 512, 2) == MlpTuning(64, 64, 64, 4, 2, 64, 4)
    # an untied weight-gradient token block is halved on its own when only that kernel overflows
    untied = MlpTuning(64, 64, 64, 4, 2, block_tokens_dw=512, num_warps_dw=8).resolve(128, 512, 2)
    assert (untied.block_tokens, untied.block_tokens_dw, untied.num_warps, untied.num_warps_dw) == (
        64,
        128,
        4,
        8,
    )
    assert max(untied.smem_bytes(128, 2)) <= SMEM_LIMIT
    for d in (16, 64, 128, 256, 512, 1024):
        for itemsize in (2, 4):
            if d == 1024 and itemsize == 4:
                with pytest.raises(ValueError, match="d_model=1024, 4-byte inputs"):
                    MlpTuning().resolve(d, 4 * d, itemsize)
                continue
            t = MlpTuning().resolve(d, 4 * d, itemsize)
            assert max(t.smem_bytes(d, itemsize)) <= SMEM_LIMIT
            assert all(
                v >= 16 and not v & (v - 1)
                for v in (t.block_tokens, t.block_hidden, t.block_hidden_dw, t.block_tokens_dw)
            )
    assert MlpTuning().resolve(256, 1024, 4) == MlpTuning(
        32, 16, 32, 8, 2, 32, 8
    )  # float32 at d=256 (failed on the H100 before)
    with pytest.raises(
        ValueError, match="MlpTuning.block_tokens must be a power of two >= 16, got 48"
    ):
        MlpTuning(block_tokens=48).resolve(128, 512)
