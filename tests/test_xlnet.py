"""XLNet: relative attention vs naive loops, two-stream visibility, permutation LM, sizes, training."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
import pytest

import flax.linen as nn

from scaling import kernels
from scaling.commands.params import count_row
from scaling.config_loading import load
from scaling.data import objectives
from scaling.data.pipeline import ExampleMaker
from scaling.models import abstract_params, build_model, example_batch, model_spec
from scaling.nn import relative
from scaling.nn.attention import causal_mask
from scaling.sizes import count_params
from experiments.size_table import BY_KEY


def small_spec(**model):
    config = load("experiments/xlnet.py:tiny")
    config.model.update(num_layers=2, width=32, num_heads=2, mlp_dim=64, **model)
    return model_spec(config)


# ----------------------------------------------------------------------------- naive references

def sinusoid(distance: float, width: int) -> np.ndarray:
    """XLNet's encoding of one relative distance: [sin(d f), cos(d f)], f_i = 10000^(-2i/D)."""
    angle = distance / np.power(10000.0, np.arange(0, width, 2) / width)
    return np.concatenate([np.sin(angle), np.cos(angle)])


def naive_relative_attention(q, k, v, w_r, r_w, r_r, r_s, seg_embed, segments, mask):
    """One (b, n, i, j) at a time, in float64: the score formula of relative.py's docstring."""
    q, k, v, w_r, r_w, r_r, r_s, seg_embed = (np.asarray(a, np.float64) for a in
                                              (q, k, v, w_r, r_w, r_r, r_s, seg_embed))
    b_size, t, n_heads, h = q.shape
    out = np.zeros_like(q)
    for b in range(b_size):
        for n in range(n_heads):
            for i in range(t):
                scores = np.full(t, -np.inf)
                for j in range(t):
                    if not mask[b, i, j]:
                        continue
                    r_ij = sinusoid(i - j, w_r.shape[0]) @ w_r[:, n, :]
                    s_ij = int(segments[b, i] != segments[b, j])
                    scores[j] = ((q[b, i, n] + r_w[n]) @ k[b, j, n]
                                 + (q[b, i, n] + r_r[n]) @ r_ij
                                 + (q[b, i, n] + r_s[n]) @ seg_embed[s_ij, n]) / math.sqrt(h)
                if np.isinf(scores).all():
                    continue  # no visible key: zeros
                p = np.exp(scores - scores.max())
                out[b, i, n] = (p / p.sum()) @ v[b, :, n]
    return out


def rand(key, *shape):
    return jax.random.normal(jax.random.PRNGKey(key), shape)


# ----------------------------------------------------------------------------- pure functions

def test_rel_shift_picks_the_score_at_distance_i_minus_j():
    t = 5
    x = np.arange(2 * 3 * t * 2 * t, dtype=np.float32).reshape(2, 3, t, 2 * t)
    out = np.asarray(relative.rel_shift(jnp.asarray(x)))
    distances = relative.relative_distances(t)
    for i in range(t):
        for j in range(t):
            m = t - i + j
            assert distances[m] == i - j
            np.testing.assert_array_equal(out[:, :, i, j], x[:, :, i, m])
    with pytest.raises(ValueError, match=r"\[B, N, T, 2T\]"):
        relative.rel_shift(jnp.zeros((1, 1, 4, 7)))


@pytest.mark.parametrize("impl", ["xla", "jax"])  # the reference; the gpu kernel set's
def test_relative_attention_matches_naive_loop(impl):
    b, t, n, h, d = 2, 6, 2, 4, 8
    q, k, v = rand(0, b, t, n, h), rand(1, b, t, n, h), rand(2, b, t, n, h)
    w_r = rand(3, d, n, h) * 0.5
    r_w, r_r, r_s = rand(4, n, h), rand(5, n, h), rand(6, n, h)
    seg_embed = rand(7, 2, n, h)
    segments = np.array([[0, 0, 0, 1, 1, 1], [0, 1, 0, 1, 1, 0]])
    ranks = np.stack([np.random.default_rng(s).permutation(t) for s in range(b)])
    content, query = relative.two_stream_masks(ranks)
    r = jnp.einsum("PD,DNH->PNH", relative.relative_sinusoid(t, d), w_r)
    for mask in (content, query):
        got = relative.relative_attention(q, k, v, r, r_w, r_r, mask, r_s, seg_embed,
                                          jnp.asarray(segments), attend=kernels.ATTENTION[impl])
        want = naive_relative_attention(q, k, v, w_r, r_w, r_r, r_s, seg_embed, segments,
                                        np.asarray(mask)[:, 0])
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5)


def test_two_stream_masks_follow_the_ranks():
    ranks = np.array([[2, 0, 3, 1], [0, 1, 2, 3]])
    content, query = (np.asarray(m)[:, 0] for m in relative.two_stream_masks(ranks))
    for b in range(2):
        for i in range(4):
            for j in range(4):
                assert content[b, i, j] == (ranks[b, j] <= ranks[b, i])
                assert query[b, i, j] == (ranks[b, j] < ranks[b, i])
    # The identity order is causal masking: content sees j <= i, query j < i.
    np.testing.assert_array_equal(content[1], np.asarray(causal_mask(4))[0, 0])
    np.testing.assert_array_equal(query[1], np.tril(np.ones((4, 4), bool), -1))


@pytest.mark.parametrize("bad", [[0, 0, 1, 2], [0, 1, 2, 4], [0.0, 1.0, 2.0, 3.0]])
def test_orders_that_are_not_permutations_are_rejected(bad):
    with pytest.raises(ValueError, match="not a permutation"):
        relative.two_stream_masks(np.array([bad]))
    with pytest.raises(ValueError, match="must be a permutation"):
        objectives.permutation_lm(np.arange(5, 9), 4, 0, 6, order=np.array(bad))
    with pytest.raises(ValueError, match="not a permutation"):
        relative.order_to_ranks(np.array(bad))


def test_model_rejects_concrete_ranks_that_are_not_a_permutation():
    spec = small_spec()
    model = build_model(spec)
    batch = example_batch(spec, 1, 4)
    with pytest.raises(ValueError, match="not a permutation"):
        model.init(jax.random.PRNGKey(0), dict(batch, perm_ranks=jnp.asarray([[0, 2, 2, 1]])))


def test_order_to_ranks_inverts_the_order():
    order = np.array([[3, 0, 2, 1]])
    ranks = relative.order_to_ranks(order)
    np.testing.assert_array_equal(ranks, [[1, 3, 2, 0]])
    np.testing.assert_array_equal(ranks[0][order[0]], np.arange(4))


# ----------------------------------------------------------------------------- objective

def test_permutation_lm_predicts_the_last_part_of_the_order():
    rng = np.random.default_rng(0)
    ex = objectives.permutation_lm(np.arange(10, 30), 24, 0, 6, rng)  # 20 real + 4 padding
    ranks, weights = ex["perm_ranks"], ex["weights"]
    assert {k: v.dtype for k, v in ex.items()} == dict(
        inputs=np.int32, targets=np.int32, weights=np.float32, perm_ranks=np.int32,
        token_types=np.int32)
    np.testing.assert_array_equal(np.sort(ranks), np.arange(24))
    np.testing.assert_array_equal(ex["targets"], ex["inputs"])
    np.testing.assert_array_equal(ranks[20:], np.arange(20, 24))  # padding comes last
    assert weights.sum() == math.ceil(20 / 6) and not weights[20:].any()
    assert set(ranks[weights == 1]) == {16, 17, 18, 19}
    # K = 1 predicts every real token; an explicit order is used as given.
    assert objectives.permutation_lm(np.arange(5, 9), 4, 0, 1, rng)["weights"].sum() == 4
    ex = objectives.permutation_lm(np.arange(5, 9), 4, 0, 2, order=np.array([3, 1, 0, 2]))
    np.testing.assert_array_equal(ex["perm_ranks"], [2, 1, 3, 0])
    np.testing.assert_array_equal(ex["weights"], [1, 0, 1, 0])


@pytest.mark.parametrize("k", [0, 0.5, -1])
def test_perm_k_below_one_is_an_error_naming_the_field(k):
    with pytest.raises(ValueError, match=r"data\.perm_k"):
        objectives.permutation_lm(np.arange(5, 9), 4, 0, k, np.random.default_rng(0))
    config = load("experiments/xlnet.py:tiny")
    config.data.perm_k = k
    with pytest.raises(ValueError, match=r"data\.perm_k"):
        ExampleMaker([], None, config.data, seed=0)


def test_scaling_train_rejects_perm_k_below_one_with_exit_2(tmp_path, capsys):
    from scaling.commands import train as train_cmd

    rc = train_cmd.main(["--config", "experiments/xlnet.py:tiny", "--workdir", str(tmp_path),
                         "--config.data.perm_k=0.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "data.perm_k" in err[0], err


# ----------------------------------------------------------------------------- the model

def test_query_stream_never_sees_its_own_or_later_tokens():
    spec = small_spec()
    model = build_model(spec)
    t = 12
    ids = jax.random.randint(jax.random.PRNGKey(0), (2, t), 5, spec.vocab_size)
    ranks = np.stack([np.random.default_rng(s).permutation(t) for s in (1, 2)]).astype(np.int32)
    batch = {"inputs": ids, "perm_ranks": jnp.asarray(ranks),
             "token_types": jnp.zeros_like(ids)}
    params = model.init(jax.random.PRNGKey(1), batch)
    # One compiled forward returning (logits, {"intermediates": {"content": ...}}).
    apply = jax.jit(lambda p, b: model.apply(p, b, mutable="intermediates"))
    base = np.asarray(apply(params, batch)[0])
    for cut in (0, 5, t - 1):
        # Change every token whose rank is >= cut: positions with rank <= cut must not move
        # (the one with rank == cut had its own token changed); later ones must.
        later = ranks >= cut
        changed = jnp.where(later, (ids + 7 - 5) % (spec.vocab_size - 5) + 5, ids)
        out = np.asarray(apply(params, dict(batch, inputs=changed))[0])
        same = ranks <= cut
        np.testing.assert_allclose(out[same], base[same], atol=1e-5)
        if cut < t - 1:
            assert np.abs(out[~same] - base[~same]).max(axis=-1).min() > 1e-4
    # The content stream does see its own token.
    _, state = apply(params, dict(batch, inputs=ids.at[:, 0].set(ids[:, 0] % 300 + 6)))
    _, base_state = apply(params, batch)
    h, h0 = (s["intermediates"]["content"][0][:, 0] for s in (state, base_state))
    assert np.abs(np.asarray(h - h0)).max() > 1e-4


def _layer_norm(x, p, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * np.asarray(p["scale"]) + np.asarray(p["bias"])


def _gelu(x):  # exact GELU, x·Φ(x) (XLNet's default activation)
    return 0.5 * x * (1 + scipy.special.erf(x / np.sqrt(2)))


def test_content_stream_with_identity_order_is_causal_relative_attention():
    """The model's content stream vs an independent numpy Transformer-XL with a causal mask."""
    spec = small_spec()
    model = build_model(spec)
    t = 7
    ids = jax.random.randint(jax.random.PRNGKey(2), (1, t), 5, spec.vocab_size)
    segments = np.array([[0, 0, 0, 1, 1, 1, 1]])
    batch = {"inputs": ids, "token_types": jnp.asarray(segments)}  # no perm_ranks: identity
    variables = nn.unbox(model.init(jax.random.PRNGKey(3), batch))
    _, state = model.apply(variables, batch, mutable="intermediates")
    got = np.asarray(state["intermediates"]["content"][0])

    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    x = p["embed"]["tokens"]["embedding"][np.asarray(ids)]
    causal = np.tril(np.ones((1, t, t), bool))
    for i in range(spec.num_layers):
        layer = p["blocks"][f"layer_{i}"]
        a = layer["attn"]
        q, k, v = (np.einsum("btd,dnh->btnh", x, a[f"w_{n}"]) for n in "qkv")
        y = naive_relative_attention(q, k, v, a["w_r"], a["r_w_bias"], a["r_r_bias"],
                                     a["r_s_bias"], a["seg_embed"], segments, causal)
        x = _layer_norm(x + np.einsum("btnh,nhd->btd", y, a["w_o"]), layer["ln_attn"],
                        spec.layer_norm_eps)
        m = layer["mlp"]
        f = _gelu(x @ m["w_in"] + m["b_in"]) @ m["w_out"] + m["b_out"]
        x = _layer_norm(x + f, layer["ln_mlp"], spec.layer_norm_eps)
    np.testing.assert_allclose(got, x, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("scan", [False, True])
def test_every_parameter_has_logical_axis_names(scan):
    params = abstract_params(small_spec(scan_layers=scan, untie_relative_bias=scan))
    leaves = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert leaves
    for leaf in leaves:
        assert isinstance(leaf, nn.LogicallyPartitioned), leaf
        assert len(leaf.names) == len(leaf.value.shape)


def test_xlnet_large_has_exactly_360_268_800_parameters():
    spec = model_spec(load("experiments/xlnet.py:large"))
    d, f, v, n_layers = 1024, 4096, 32_000, 24
    per_layer = 5 * d * d + 3 * d + 2 * d + 2 * d + (2 * d * f + f + d) + 2 * d
    assert v * d + d + n_layers * per_layer == 360_268_800  # the layout, by hand
    counts = count_params(spec)
    assert counts.backbone == BY_KEY["xlnet:large"].exact == 360_268_800
    assert counts.head == 32_000 and counts.embedding == v * d
    # Shared (tied) r_w/r_r/r_s biases: one set instead of 24.
    tied = count_params(model_spec(load("experiments/xlnet.py:large",
                                        {"model.untie_relative_bias": False})))
    assert counts.backbone - tied.backbone == 23 * 3 * d
    row = count_row(BY_KEY["xlnet:large"])
    assert row["status"] == "ok" and row["diff_vs_exact"] == 0


def test_flop_accounting_counts_both_streams():
    spec = model_spec(load("experiments/xlnet.py:large"))
    d, f = 1024, 4096
    assert spec.matmul_params() == 24 * (8 * d * d + 4 * d * f) + 32_000 * d
    t = 512
    assert spec.train_flops_per_sequence(t) == 6 * spec.matmul_params() * t + 12 * 24 * 4 * t * t * d


# ----------------------------------------------------------------------------- training

def test_tiny_config_loss_falls(tmp_path):
    from scaling import train

    config = load("experiments/xlnet.py:tiny")  # 2 layers, narrowed to keep the test short
    config.model.update(width=64, num_heads=4, mlp_dim=256)
    config.data.update(seq_len=32, perm_k=2.0)
    config.train.update(steps=30, batch_size=8, log_every=10, eval_every=30, eval_steps=1)
    config.metrics.update(tensorboard=False, device_peak_tflops=1.0)
    config.parallel.update(num_devices=1, mesh={"data": 1, "fsdp": 1, "tensor": 1})
    result = train.run(config, str(tmp_path))
    losses = result["train_losses"]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 0.5, losses
