"""Blocks and multi-head attention against independent per-head / per-position references."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling.nn.blocks import DecoderBlock, EncoderBlock
from scaling.spec import ModelSpec
from scaling.nn.layers import MultiHeadAttention

SPEC = ModelSpec(width=16, num_heads=4, mlp_dim=32, max_len=16)


def _x(T=6, B=2, D=16, seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (B, T, D))


def test_multihead_equals_per_head_concat_and_projection():
    mha = MultiHeadAttention(num_heads=4, use_bias=True)
    x = _x()
    params = nn.unbox(mha.init(jax.random.PRNGKey(1), x))["params"]
    # Give the biases non-zero values so they are checked too.
    params = jax.tree.map(lambda p: p + 0.1 if p.ndim <= 2 else p, params)
    got = np.asarray(mha.apply({"params": params}, x))

    p = jax.tree.map(np.asarray, params)
    xs = np.asarray(x)
    B, T, D = xs.shape
    N, H = 4, 4
    heads = []
    for n in range(N):  # one ordinary single-head attention per head
        q = xs @ p["w_q"][:, n, :] + p["b_q"][n]
        k = xs @ p["w_k"][:, n, :] + p["b_k"][n]
        v = xs @ p["w_v"][:, n, :] + p["b_v"][n]
        e = q @ k.transpose(0, 2, 1) / np.sqrt(H)
        a = np.exp(e - e.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        heads.append(a @ v)
    concat = np.concatenate(heads, axis=-1)  # [B, T, N*H]
    expected = concat @ p["w_o"].reshape(N * H, D) + p["b_o"]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("module", ["attention", "encoder_block"])
def test_permutation_equivariance_without_positions(module):
    x = _x(T=7)
    perm = np.random.default_rng(0).permutation(7)
    if module == "attention":
        layer = MultiHeadAttention(num_heads=4)
    else:
        layer = EncoderBlock(ModelSpec(width=16, num_heads=4, mlp_dim=32, norm="post"))
    variables = layer.init(jax.random.PRNGKey(0), x)
    f = lambda inp: np.asarray(layer.apply(variables, inp))  # noqa: E731
    np.testing.assert_allclose(f(x[:, perm]), f(x)[:, perm], rtol=1e-5, atol=1e-5)


def test_post_norm_block_output_is_normalised_pre_norm_is_not():
    x = _x() * 3 + 1
    for norm, normalised in (("post", True), ("pre", False)):
        block = EncoderBlock(ModelSpec(width=16, num_heads=4, mlp_dim=32, norm=norm))
        y = np.asarray(block.apply(block.init(jax.random.PRNGKey(0), x), x))
        # LayerNorm last (post) with unit scale / zero bias: each vector has mean 0, std 1.
        is_norm = np.allclose(y.mean(-1), 0, atol=1e-4) and np.allclose(y.std(-1), 1, atol=1e-2)
        assert is_norm == normalised, norm


def test_decoder_block_uses_encoder_outputs_and_respects_source_padding():
    block = DecoderBlock(ModelSpec(width=16, num_heads=4, mlp_dim=32))
    y, enc = _x(T=5, seed=1), _x(T=6, seed=2)
    self_mask = jnp.tril(jnp.ones((5, 5), bool))[None, None]
    valid = jnp.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    cross_mask = valid[:, None, None, :]
    v = block.init(jax.random.PRNGKey(0), y, self_mask, enc, cross_mask)
    out = block.apply(v, y, self_mask, enc, cross_mask)
    # Changing a padded source position changes nothing ...
    enc_pad_changed = enc.at[0, 5].set(100.0)
    np.testing.assert_allclose(block.apply(v, y, self_mask, enc_pad_changed, cross_mask), out,
                               atol=1e-6)
    # ... while changing a real source position changes the output (cross-attention works).
    enc_real_changed = enc.at[0, 0].set(100.0)
    assert np.abs(np.asarray(block.apply(v, y, self_mask, enc_real_changed, cross_mask)
                             - out)).max() > 1e-3
