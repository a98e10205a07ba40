"""Attention and LayerNorm math, reference and kernels, against naive, independent
implementations (numpy loops, float64 formulas, finite differences)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import kernels
from scaling.kernels import gpu, tpu, xla_cpu
from scaling.nn import attention as A
from scaling.nn import functional
from scaling.nn.functional import sinusoidal_positions

LAYER_NORMS = [functional.layer_norm, xla_cpu.layer_norm]  # reference, kernel


def naive_attention(q, k, v, mask=None):
    """E = Q Kᵀ / sqrt(d), A = softmax(E) over keys (masked keys excluded), Y = A V.

    q [B,T,N,H], k/v [B,S,N,H], mask [B,N,T,S] bool or None; loops over every element.
    """
    B, T, N, H = q.shape
    S = k.shape[1]
    y = np.zeros((B, T, N, H))
    for b in range(B):
        for n in range(N):
            for i in range(T):
                e = [sum(q[b, i, n, h] * k[b, j, n, h] for h in range(H)) / math.sqrt(H)
                     for j in range(S)]
                allowed = [mask is None or bool(mask[b, n, i, j]) for j in range(S)]
                if not any(allowed):
                    continue  # fully masked query: output zeros
                m = max(e[j] for j in range(S) if allowed[j])
                w = [math.exp(e[j] - m) if allowed[j] else 0.0 for j in range(S)]
                z = sum(w)
                for j in range(S):
                    y[b, i, n] += (w[j] / z) * v[b, j, n]
    return y


def _qkv(rng, B=2, T=5, S=7, N=2, H=4):
    r = np.random.default_rng(rng)
    return (r.normal(size=(B, T, N, H)), r.normal(size=(B, S, N, H)),
            r.normal(size=(B, S, N, H)))


@pytest.mark.parametrize("kind", ["self", "cross"])
@pytest.mark.parametrize("masking", ["none", "causal", "padding", "both"])
def test_attention_matches_naive_loops(kind, masking):
    q, k, v = _qkv(0, S=5 if kind == "self" else 7)
    B, T, N, _ = q.shape
    S = k.shape[1]
    if kind == "self":
        k = v = q  # one set of vectors attends to itself
    valid = np.ones((B, S), bool)
    valid[0, -2:] = False  # first example: last two keys are padding
    masks = {"none": None, "causal": A.causal_mask(T, S),
             "padding": A.padding_mask(jnp.asarray(valid)),
             "both": A.combine_masks(A.causal_mask(T, S), A.padding_mask(jnp.asarray(valid)))}
    mask = masks[masking]
    got = A.dot_product_attention(jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32),
                                  jnp.asarray(v, jnp.float32), mask)
    full = None if mask is None else np.broadcast_to(np.asarray(mask), (B, N, T, S))
    np.testing.assert_allclose(np.asarray(got), naive_attention(q, k, v, full),
                               rtol=1e-5, atol=1e-5)


def test_causal_mask_shape_and_offset():
    m = np.asarray(A.causal_mask(3, 5))[0, 0]
    # Queries are the last 3 of 5 positions: query 0 sits at key position 2.
    expected = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(m, expected)


def test_fully_masked_rows_are_zero_not_nan():
    q, k, v = (jnp.asarray(x, jnp.float32) for x in _qkv(1))
    valid = jnp.zeros((2, 7), bool).at[1].set(True)  # example 0 has no valid key at all
    out = A.dot_product_attention(q, k, v, A.padding_mask(valid))
    assert np.all(np.isfinite(np.asarray(out)))
    np.testing.assert_array_equal(np.asarray(out[0]), 0.0)
    assert np.abs(np.asarray(out[1])).sum() > 0


def test_gpu_attention_matches_reference():
    q, k, v = (jnp.asarray(x, jnp.float32) for x in _qkv(2, S=5))
    mask = A.causal_mask(5)
    ref = A.attention(q, k, v, mask)
    got = gpu.attention(q, k, v, mask)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_softmax_in_float32_for_bf16_inputs():
    q, k, v = (jnp.asarray(x, jnp.bfloat16) for x in _qkv(3))
    out = A.dot_product_attention(q, k, v, A.causal_mask(5, 7))
    assert out.dtype == jnp.bfloat16
    ref = naive_attention(*(np.asarray(x, np.float64) for x in (q, k, v)),
                          np.broadcast_to(np.asarray(A.causal_mask(5, 7)), (2, 2, 5, 7)))
    np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=3e-2)


def test_sinusoidal_matches_formula():
    T, D = 50, 16
    pe = np.asarray(sinusoidal_positions(T, D))
    for pos in range(T):
        for i in range(D // 2):
            angle = pos / 10000 ** (2 * i / D)
            assert pe[pos, 2 * i] == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-6)


@pytest.mark.parametrize("layer_norm", LAYER_NORMS)
def test_layer_norm_matches_formula(layer_norm):
    h = np.random.default_rng(0).normal(size=(3, 10)) * 5 + 2
    gamma, beta = np.linspace(0.5, 1.5, 10), np.linspace(-1, 1, 10)
    got = np.asarray(layer_norm(jnp.asarray(h, jnp.float32), jnp.asarray(gamma, jnp.float32),
                                jnp.asarray(beta, jnp.float32), eps=0.0))
    mu, sigma = h.mean(-1, keepdims=True), h.std(-1, keepdims=True)
    np.testing.assert_allclose(got, gamma * (h - mu) / sigma + beta, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layer_norm", LAYER_NORMS)
def test_layer_norm_gradients_match_finite_differences(layer_norm):
    """The backward pass (dx, dscale, dbias; xla_cpu's is hand-written) against central
    differences of the numpy formula in float64, for a [B, T, D] input and a random output
    cotangent."""
    rng = np.random.default_rng(1)
    h, cot = rng.normal(size=(2, 3, 6)) * 3 + 1, rng.normal(size=(2, 3, 6))
    gamma, beta = rng.normal(size=6), rng.normal(size=6)

    def objective(h, gamma, beta, eps=1e-5):
        mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        return np.sum(cot * (gamma * (h - mu) / np.sqrt(var + eps) + beta))

    def numeric(which):
        args = [h.copy(), gamma.copy(), beta.copy()]
        grad = np.zeros_like(args[which])
        for i in np.ndindex(grad.shape):
            plus, minus = [a.copy() for a in args], [a.copy() for a in args]
            plus[which][i] += 1e-6
            minus[which][i] -= 1e-6
            grad[i] = (objective(*plus) - objective(*minus)) / 2e-6
        return grad

    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    _, vjp = jax.vjp(layer_norm, f32(h), f32(gamma), f32(beta))
    for which, got in enumerate(vjp(f32(cot))):
        np.testing.assert_allclose(np.asarray(got), numeric(which), rtol=1e-3, atol=1e-3)


def test_layer_norm_sums_ask_for_full_f32_precision():
    """xla_cpu LayerNorm's sums are dots (row_mean): they must ask for HIGHEST precision,
    or GPUs run them in TF32 and TPUs in bf16 passes. Checked in the lowered program, since
    a CPU computes f32 dots exactly either way."""
    x = jnp.ones((4, 8), jnp.float32)
    for fn in (xla_cpu.row_mean, xla_cpu.column_sum):
        text = jax.jit(fn).lower(x).as_text()
        assert "dot_general" in text and "HIGHEST" in text, fn.__name__


def test_narrowing_projection_gradients_match_formula():
    """xla_cpu.dense with fan_in > fan_out (the MLP's F -> D) takes its weight gradient as the
    transposed [O, I] product; both gradients must still be dX = dY Wᵀ and dW = Xᵀ dY
    (numpy, float64), for a 3-D input and a two-axis kernel."""
    rng = np.random.default_rng(2)
    x, w = rng.normal(size=(2, 5, 3, 4)), rng.normal(size=(3, 4, 5))   # I = 12 > O = 5
    dy = rng.normal(size=(2, 5, 5))
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    y, vjp = jax.vjp(lambda x, w: xla_cpu.dense(x, w, in_dims=2), f32(x), f32(w))
    dx, dw = vjp(f32(dy))
    x2, w2, dy2 = x.reshape(10, 12), w.reshape(12, 5), dy.reshape(10, 5)
    np.testing.assert_allclose(np.asarray(y).reshape(10, 5), x2 @ w2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(dx).reshape(10, 12), dy2 @ w2.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(dw).reshape(12, 5), x2.T @ dy2, rtol=1e-5, atol=1e-5)
    assert dw.shape == w.shape and dx.shape == x.shape


def test_masks_jit_and_combine():
    f = jax.jit(lambda v: A.combine_masks(A.causal_mask(4), A.padding_mask(v), None))
    m = np.asarray(f(jnp.array([[1, 1, 1, 0]])))
    assert m.shape == (1, 1, 4, 4)
    assert not m[0, 0, 3, 3] and m[0, 0, 2, 1] and not m[0, 0, 1, 2]
    assert A.combine_masks(None, None) is None


@pytest.mark.parametrize("impl,block", [("jax", 8), ("blocked", 8), ("blocked", 32)])
def test_causal_implementations_match_reference_values_and_gradients(impl, block):
    """gpu's (XLA's jax.nn.dot_product_attention on CPU) and xla_cpu's blocked attention
    (block 32: one block, no split)."""
    q, k, v = (jnp.asarray(x, jnp.float32) for x in _qkv(4, T=32, S=32))

    def loss(fn, q, k, v):
        return jnp.sum(jnp.sin(fn(q, k, v)))

    ref = lambda q, k, v: A.dot_product_attention(q, k, v, A.causal_mask(32))  # noqa: E731
    fn = kernels.ATTENTION[impl]
    got = lambda q, k, v: fn(q, k, v, A.CAUSAL, block=block)  # noqa: E731
    np.testing.assert_allclose(np.asarray(got(q, k, v)), np.asarray(ref(q, k, v)),
                               rtol=1e-5, atol=1e-5)
    g_ref = jax.grad(lambda *a: loss(ref, *a), argnums=(0, 1, 2))(q, k, v)
    g_got = jax.grad(lambda *a: loss(got, *a), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(g_got, g_ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_blocked_attention_in_bfloat16_matches_float32_reference():
    """bf16 q, k, v (as model.dtype=bfloat16 gives): softmax in fp32, outputs and gradients
    in bf16, within bf16 rounding of the fp32 reference's."""
    q, k, v = (jnp.asarray(x, jnp.float32) for x in _qkv(6, T=32, S=32, H=8))

    def loss(fn, q, k, v):
        return jnp.sum(jnp.sin(fn(q, k, v).astype(jnp.float32)))

    ref = lambda q, k, v: A.dot_product_attention(q, k, v, A.causal_mask(32))  # noqa: E731
    got = lambda q, k, v: xla_cpu.attention(q, k, v, A.CAUSAL, block=8)  # noqa: E731
    low = [x.astype(jnp.bfloat16) for x in (q, k, v)]
    out = got(*low)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref(q, k, v)),
                               atol=3e-2)
    g_ref = jax.grad(lambda *a: loss(ref, *a), argnums=(0, 1, 2))(q, k, v)
    g_got = jax.grad(lambda *a: loss(got, *a), argnums=(0, 1, 2))(*low)
    for a, b in zip(g_got, g_ref):
        assert a.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b), atol=5e-2)


def test_blocked_attention_computes_fewer_flops():
    q = jnp.zeros((1, 256, 2, 16))
    f = lambda impl: jax.jit(lambda q: kernels.get("reference", impl, 64).attention(  # noqa: E731
        q, q, q, A.CAUSAL))
    flops = {i: f(i).lower(q).compile().cost_analysis() for i in ("xla", "blocked")}
    flops = {i: (c[0] if isinstance(c, list) else c)["flops"] for i, c in flops.items()}
    # 4 blocks: 10 of the 16 score blocks are computed.
    assert flops["blocked"] < 0.75 * flops["xla"]


@pytest.mark.parametrize("kind", ["none", "causal", "padding"])
def test_splash_kernel_matches_naive_reference(kind):
    """The Pallas splash kernel (run by the Pallas interpreter on CPU) against numpy loops."""
    q, k, v = _qkv(5, T=128, S=128, H=2)
    mask, dense = None, None
    if kind == "causal":
        mask, dense = A.CAUSAL, np.tril(np.ones((128, 128), bool))
    if kind == "padding":
        valid = np.ones((2, 128), bool)
        valid[0, 100:] = False
        valid[1, :] = False  # a row with no visible key returns zeros, as the reference
        mask = dense = np.asarray(A.padding_mask(jnp.asarray(valid)))
    got = tpu.attention(*(jnp.asarray(x, jnp.float32) for x in (q, k, v)),
                        jnp.asarray(mask) if kind == "padding" else mask, block=128)
    ref = naive_attention(q, k, v, None if dense is None else np.broadcast_to(dense, (2, 2, 128, 128)))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-5)


def test_splash_gradients_match_reference():
    q, k, v = (jnp.asarray(x, jnp.float32) for x in _qkv(6, T=128, S=128, H=8))

    def grads(fn):
        return jax.grad(lambda q, k, v: jnp.sum(jnp.sin(fn(q, k, v))), argnums=(0, 1, 2))(q, k, v)

    got = grads(lambda q, k, v: tpu.attention(q, k, v, A.CAUSAL, block=128))
    ref = grads(lambda q, k, v: A.dot_product_attention(q, k, v, A.causal_mask(128)))
    for a, b in zip(got, ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_splash_rejects_what_it_cannot_do():
    q = jnp.zeros((1, 128, 2, 8))
    with pytest.raises(ValueError, match="model.attention_impl: 'splash' takes no mask"):
        tpu.attention(q, q, q, A.causal_mask(128), block=128)
    with pytest.raises(ValueError, match="model.attention_block"):
        tpu.attention(q, q, q, A.CAUSAL, block=64)


def test_gpu_attention_with_padding_and_bias_matches_reference():
    """The masks and the bias the encoder and XLNet pass, fully masked rows included."""
    q, k, v = (jnp.asarray(x, jnp.float32) for x in _qkv(9, T=6, S=6))
    valid = np.ones((2, 6), bool)
    valid[0, 4:] = False
    valid[1, :] = False
    mask = A.padding_mask(jnp.asarray(valid))
    bias = jnp.asarray(np.random.default_rng(9).normal(size=(2, 2, 6, 6)), jnp.float32)

    def loss(fn):
        return lambda q, k, v: jnp.sum(jnp.sin(fn(q, k, v, mask, bias)))

    got, got_grads = jax.value_and_grad(loss(gpu.attention), argnums=(0, 1, 2))(q, k, v)
    ref, ref_grads = jax.value_and_grad(loss(A.attention), argnums=(0, 1, 2))(q, k, v)
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-5)
    for a, b in zip(got_grads, ref_grads):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def _mesh_context(layout=None):
    """run()'s context: the (data, fsdp, tensor) mesh over 8 fake CPU devices and the rules."""
    import contextlib

    import flax.linen as nn

    from scaling import sharding
    stack = contextlib.ExitStack()
    layout = layout or {"data": 2, "fsdp": 2, "tensor": 2}
    stack.enter_context(jax.set_mesh(sharding.make_mesh(layout)))
    stack.enter_context(nn.logical_axis_rules(sharding.logical_rules()))
    return stack


def test_per_shard_gives_each_device_its_batch_rows_and_heads():
    """Under a 2x2x2 mesh a kernel sees batch/4 and heads/2 (the rules' batch and heads
    axes) and whole lengths, and the result equals the unsharded reference."""
    q, k, v = (jnp.asarray(x, jnp.float32) for x in _qkv(7, B=4, T=8, S=8, N=2, H=4))
    seen = []

    def kernel(q, k, v, mask):
        seen.append((q.shape, k.shape))
        return A.dot_product_attention(q, k, v, A.causal_mask(q.shape[1]))

    with _mesh_context():
        got = jax.jit(lambda q, k, v: tpu.per_shard(kernel, q, k, v, A.CAUSAL))(q, k, v)
    assert seen == [((1, 8, 1, 4), (1, 8, 1, 4))]
    ref = naive_attention(*(np.asarray(x) for x in (q, k, v)),
                          np.broadcast_to(np.tril(np.ones((8, 8), bool)), (4, 2, 8, 8)))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-6)

    seen.clear()  # a batch the mesh cannot split (init traces one row) stays whole
    with _mesh_context():
        jax.jit(lambda q: tpu.per_shard(kernel, q, q, q, A.CAUSAL))(q[:1])
    assert seen == [((1, 8, 1, 4), (1, 8, 1, 4))]


@pytest.mark.parametrize("kind", ["causal", "padding"])
def test_splash_under_a_sharded_mesh_matches_unsharded_reference(kind):
    q, k, v = (jnp.asarray(x, jnp.float32) for x in _qkv(8, B=4, T=128, S=128, N=2, H=8))
    mask, dense = A.CAUSAL, jnp.tril(jnp.ones((128, 128), bool))[None, None]
    if kind == "padding":
        valid = np.ones((4, 128), bool)
        valid[1, 90:] = False
        valid[2, :] = False
        mask = dense = A.padding_mask(jnp.asarray(valid))

    def loss(fn):
        return lambda q, k, v: jnp.sum(jnp.sin(fn(q, k, v)))

    with _mesh_context():
        splash = jax.jit(jax.value_and_grad(
            loss(lambda q, k, v: tpu.attention(q, k, v, mask, block=128)),
            argnums=(0, 1, 2)))
        (got, got_grads), text = splash(q, k, v), splash.lower(q, k, v).as_text()
    assert "shard_map" in text or "sdy.manual_computation" in text
    ref, ref_grads = jax.value_and_grad(
        loss(lambda q, k, v: A.dot_product_attention(q, k, v, dense)), argnums=(0, 1, 2))(q, k, v)
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-4)
    for a, b in zip(got_grads, ref_grads):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
