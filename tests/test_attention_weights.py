"""Attention weights sown on request: a naive softmax(Q Kᵀ / sqrt(H)); outputs unchanged."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from scaling.models.captioning import Captioner
from scaling.nn import attention as A
from scaling.nn.layers import ATTENTION_WEIGHTS
from scaling.spec import ModelSpec

B, SIZE, T, V = 2, 8, 5, 32


def _spec(**overrides):
    return ModelSpec(**{**dict(family="encoder_decoder", vocab_size=V, num_layers=1,
                               num_decoder_layers=2, width=16, num_heads=4, mlp_dim=32,
                               max_len=8, kernels="reference"), **overrides})


def _batch():
    rng = np.random.default_rng(0)
    return {"images": rng.normal(size=(B, SIZE, SIZE, 3)).astype(np.float32),
            "decoder_inputs": rng.integers(1, V, size=(B, T), dtype=np.int32)}


def _naive_softmax_weights(x, kv, w_q, b_q, w_k, b_k):
    """softmax over keys of q·k / sqrt(H), with loops over batch, head and query in numpy."""
    q = np.einsum("btd,dnh->btnh", x, w_q) + b_q
    k = np.einsum("bsd,dnh->bsnh", kv, w_k) + b_k
    b, t, n, h = q.shape
    out = np.zeros((b, n, t, kv.shape[1]))
    for i in range(b):
        for j in range(n):
            for r in range(t):
                logits = k[i, :, j] @ q[i, r, j] / np.sqrt(h)
                e = np.exp(logits - logits.max())
                out[i, j, r] = e / e.sum()
    return out


def test_attention_weights_is_what_dot_product_attention_averages_with():
    rng = np.random.default_rng(1)
    q, k, v = (jnp.asarray(rng.normal(size=(2, s, 3, 4)), jnp.float32) for s in (5, 7, 7))
    mask = A.causal_mask(5, 7)
    probs = A.attention_weights(q, k, mask)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(A.dot_product_attention(q, k, v, mask),
                               jnp.einsum("BNTS,BSNH->BTNH", probs, v), atol=1e-6)
    assert float(jnp.abs(jnp.where(mask, 0.0, probs)).max()) == 0.0


def _captioner(scan_layers=False, image_attention=True):
    return Captioner(_spec(scan_layers=scan_layers), widths=(8, 8), depths=(1, 1), groups=4,
                     image_attention=image_attention)


def test_sown_cross_attention_equals_naive_softmax_and_outputs_are_unchanged():
    model, batch = _captioner(), _batch()
    params = nn.unbox(model.init(jax.random.PRNGKey(0), batch)["params"])
    plain = model.apply({"params": params}, batch)
    logits, state = model.apply({"params": params}, batch, capture_intermediates=True,
                                mutable=[ATTENTION_WEIGHTS, "intermediates"])
    np.testing.assert_array_equal(np.asarray(plain), np.asarray(logits))

    sown, inter = state[ATTENTION_WEIGHTS], state["intermediates"]
    # Pre-norm: cross-attention's queries come from ln_cross's output, its keys from the
    # encoder's output (after ln_encoder).
    encoded = np.asarray(inter["ln_encoder"]["__call__"][0], np.float64)  # [B, S, D]
    for layer in ("layer_0", "layer_1"):
        got = np.asarray(sown["decoder"][layer]["cross_attn"]["weights"][0])
        h = np.asarray(inter["decoder"][layer]["ln_cross"]["__call__"][0], np.float64)
        p = {name: np.asarray(value, np.float64)
             for name, value in params["decoder"][layer]["cross_attn"].items()}
        want = _naive_softmax_weights(h, encoded, p["w_q"], p["b_q"], p["w_k"], p["b_k"])
        assert got.shape == (B, 4, T, 4 * 4)  # 8x8 image, two stages -> 4x4 grid of keys
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)

    # Causal self-attention: its sown weights are zero above the diagonal.
    self_w = np.asarray(sown["decoder"]["layer_0"]["attn"]["weights"][0])
    assert float(np.abs(np.triu(self_w, k=1)).max()) == 0.0
    # SAGAN's module sows the weights it returns: [B, Y·X, Y·X], rows sum to 1.
    sagan = np.asarray(sown["image_attention"]["weights"][0])
    assert sagan.shape == (B, 16, 16)  # on the backbone's 4x4 grid
    np.testing.assert_allclose(sagan.sum(-1), 1.0, atol=1e-5)


def test_scanned_layers_sow_their_weights_stacked_on_a_layer_axis():
    batch = _batch()
    unrolled, scanned = _captioner(), _captioner(scan_layers=True)
    params = nn.unbox(scanned.init(jax.random.PRNGKey(0), batch)["params"])
    _, state = scanned.apply({"params": params}, batch, mutable=[ATTENTION_WEIGHTS])
    stacked = state[ATTENTION_WEIGHTS]["decoder"]["layers"]["cross_attn"]["weights"][0]
    # The same parameters, one subtree per layer, through the unrolled model.
    per_layer = dict(params)
    for stack in ("encoder", "decoder"):
        layers = params[stack]["layers"]
        count = jax.tree_util.tree_leaves(layers)[0].shape[0]
        per_layer[stack] = {f"layer_{i}": jax.tree_util.tree_map(lambda a, i=i: a[i], layers)
                            for i in range(count)}
    _, ref = unrolled.apply({"params": per_layer}, batch, mutable=[ATTENTION_WEIGHTS])
    for i in range(2):
        want = ref[ATTENTION_WEIGHTS]["decoder"][f"layer_{i}"]["cross_attn"]["weights"][0]
        np.testing.assert_allclose(np.asarray(stacked[i]), np.asarray(want), atol=1e-6)


def test_nothing_is_sown_unless_the_collection_is_mutable():
    model = _captioner(image_attention=False)
    batch = _batch()
    variables = model.init(jax.random.PRNGKey(0), batch)
    assert list(variables) == ["params"]  # init sows nothing either
    _, state = model.apply(variables, batch, mutable=["intermediates"])
    assert ATTENTION_WEIGHTS not in state
