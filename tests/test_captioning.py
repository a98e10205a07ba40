"""The captioning model: shapes, causal captions, images that matter, sharded = unsharded."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding

from scaling import sharding
from scaling.models.captioning import Captioner
from scaling.spec import ModelSpec
from scaling.train_step import weighted_cross_entropy

B, H, W, T, V = 8, 12, 12, 6, 48


def tiny_spec(**overrides):
    return ModelSpec(**{**dict(family="encoder_decoder", vocab_size=V, num_layers=1,
                               num_decoder_layers=1, width=32, num_heads=8, mlp_dim=64,
                               max_len=16, kernels="reference"), **overrides})


def tiny_batch(seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, V, size=(B, T + 1), dtype=np.int32)
    return {"images": rng.normal(size=(B, H, W, 3)).astype(np.float32),
            "decoder_inputs": ids[:, :-1], "targets": ids[:, 1:],
            "weights": (rng.random((B, T)) > 0.2).astype(np.float32)}


def _inputs(batch):
    return {k: batch[k] for k in ("images", "decoder_inputs")}


def _model(image_attention=False):
    return Captioner(tiny_spec(), widths=(8, 16), depths=(1, 1), groups=4,
                     image_attention=image_attention)


def _perturb_gamma(params):
    """SAGAN's gate starts at 0 (the identity); open it so the module is exercised."""
    return jax.tree_util.tree_map_with_path(
        lambda p, x: x + 0.5 if "gamma" in jax.tree_util.keystr(p) else x, params)


@pytest.mark.parametrize("image_attention", [False, True])
def test_shapes_causality_and_the_image_matters(image_attention):
    model = _model(image_attention)
    batch = tiny_batch()
    variables = model.init(jax.random.PRNGKey(0), _inputs(batch))
    if image_attention:
        assert "image_attention" in variables["params"]
        variables = _perturb_gamma(variables)
    apply = jax.jit(model.apply)
    logits = apply(variables, _inputs(batch))
    assert logits.shape == (B, T, tiny_spec().padded_vocab_size)
    # Image tokens: a 12x12 image over two stages (stride 2) is a 6x6 grid = 36 tokens.
    _, inter = jax.eval_shape(lambda v, b: model.apply(v, b, capture_intermediates=True,
                                                       mutable=["intermediates"]),
                              variables, _inputs(batch))
    enc = inter["intermediates"]["encoder"]["__call__"][0]
    assert enc.shape == (B, 36, 32)

    # Causal: changing caption tokens after t leaves logits up to t unchanged.
    t = 2
    changed = dict(_inputs(batch))
    changed["decoder_inputs"] = batch["decoder_inputs"].copy()
    changed["decoder_inputs"][:, t + 1:] = (changed["decoder_inputs"][:, t + 1:] + 7) % V
    other = apply(variables, changed)
    np.testing.assert_allclose(logits[:, :t + 1], other[:, :t + 1], atol=1e-5)
    assert np.abs(np.asarray(logits[:, t + 1:] - other[:, t + 1:])).max() > 1e-4

    # The image matters: other images, same caption -> different logits at every position.
    swapped = dict(_inputs(batch), images=tiny_batch(seed=1)["images"])
    diff = np.abs(np.asarray(apply(variables, swapped) - logits)).max(axis=(0, 2))
    assert (diff > 1e-4).all(), diff


def test_image_attention_changes_the_output_once_its_gate_opens():
    model = _model(image_attention=True)
    batch = tiny_batch()
    variables = model.init(jax.random.PRNGKey(0), _inputs(batch))
    closed = model.apply(variables, _inputs(batch))
    opened = model.apply(_perturb_gamma(variables), _inputs(batch))
    assert np.abs(np.asarray(closed - opened)).max() > 1e-4


def _loss(model, params, batch):
    logits = model.apply({"params": params}, _inputs(batch))
    loss_sum, _, _ = weighted_cross_entropy(logits, batch["targets"], batch["weights"])
    return loss_sum / jnp.sum(batch["weights"])


@pytest.fixture(scope="module")
def unsharded():
    """The model, its parameters, a batch, the jitted loss gradient and its 1-device value."""
    model = _model(image_attention=True)
    batch = tiny_batch()
    boxed = model.init(jax.random.PRNGKey(0), _inputs(batch))["params"]
    params = _perturb_gamma(nn.unbox(boxed))
    grad_fn = jax.jit(jax.value_and_grad(lambda p, b: _loss(model, p, b)))
    return model, boxed, params, batch, grad_fn, grad_fn(params, batch)


# d2f2t2 (data, fsdp and tensor at once) is the layout whose ConvBackbone gradients XLA's
# SPMD partitioner got wrong before Conv gathered its kernel's conv_in shards before use
# (see test_vision_layers.test_xla_partitioner_dot_bug).
@pytest.mark.parametrize("layout", [{"fsdp": 8}, {"tensor": 8},
                                    {"data": 2, "fsdp": 2, "tensor": 2}])
def test_sharded_loss_and_gradients_equal_unsharded(layout, unsharded):
    model, boxed, params, batch, grad_fn, (want_loss, want_grads) = unsharded
    mesh = sharding.make_mesh(layout)
    rules = sharding.logical_rules("default")
    specs, _ = sharding.param_specs(boxed, mesh, rules)
    shardings = jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                             is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    sharded = jax.device_put(params, shardings)
    batch_sh = sharding.batch_sharding(mesh)
    sharded_batch = {k: jax.device_put(v, batch_sh) for k, v in batch.items()}
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        got_loss, got_grads = grad_fn(sharded, sharded_batch)
    # The layout really is in place: the projection's input channels over fsdp (conv_in).
    if "fsdp" in layout:
        assert "fsdp" in str(sharded["image_proj"]["kernel"].sharding.spec)
    np.testing.assert_allclose(float(got_loss), float(want_loss), rtol=1e-5)
    for (path, got), want in zip(jax.tree_util.tree_flatten_with_path(got_grads)[0],
                                 jax.tree.leaves(want_grads)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6,
                                   err_msg=jax.tree_util.keystr(path))


def _hand_count(image_attention):
    """Parameters of tiny_spec's captioner with backbone (8, 16) x (1, 1), counted by hand."""
    conv = lambda i, o, k=3: k * k * i * o  # noqa: E731  (no bias: GroupNorm follows)
    norm = lambda c: 2 * c  # noqa: E731
    backbone = (conv(3, 8) + norm(8)                                     # stem
                + 2 * (conv(8, 8) + norm(8))                             # stage 0, 8 -> 8
                + conv(8, 16) + conv(16, 16) + 2 * norm(16)              # stage 1, stride 2
                + conv(8, 16, k=1) + norm(16))                           # its 1x1 shortcut
    sagan = 2 * (16 * 2 + 2) + 2 * (16 * 16 + 16) + 1 if image_attention else 0  # C' = 16/8
    d, f = 32, 64
    attn, mlp, ln = 4 * (d * d + d), d * f + f + f * d + d, 2 * d
    transformer = (V * d + 16 * d                                        # tied tokens, positions
                   + (attn + mlp + 2 * ln) + ln                          # encoder + final LN
                   + (2 * attn + mlp + 3 * ln) + ln)                     # decoder + final LN
    return backbone + sagan + (16 * d + d) + transformer                 # + image projection


@pytest.mark.parametrize("image_attention", [False, True])
def test_captioning_family_builds_and_counts_parameters(image_attention):
    from scaling.models import build_model, example_batch
    from scaling.sizes import count_params
    spec = tiny_spec(family="captioning", image_size=H, backbone_widths=[8, 16],
                     backbone_depths=[1, 1], backbone_groups=4, image_attention=image_attention)
    count = count_params(spec)
    assert count.total == _hand_count(image_attention)
    assert count.embedding == V * 32 + 16 * 32
    batch = example_batch(spec, batch_size=2, target_len=T, abstract=True)
    assert batch["images"].shape == (2, H, W, 3)
    logits = jax.eval_shape(lambda b: build_model(spec).init_with_output(
        jax.random.PRNGKey(0), b)[0], batch)
    assert logits.shape == (2, T, spec.padded_vocab_size)


@pytest.mark.parametrize("image_attention", [False, True])
def test_encode_then_decode_equals_the_whole_model(image_attention):
    """Decoding encodes the images once (encode_images) and reruns only decode_tokens."""
    model = _model(image_attention)
    batch = tiny_batch()
    variables = _perturb_gamma(model.init(jax.random.PRNGKey(0), _inputs(batch)))
    want = jax.jit(model.apply)(variables, _inputs(batch))
    memory = jax.jit(lambda v, x: model.apply(v, x, method=Captioner.encode_images))(
        variables, batch["images"])
    assert memory.shape == (B, 36, 32)
    got = jax.jit(lambda v, m, t: model.apply(v, m, t, method=Captioner.decode_tokens))(
        variables, memory, batch["decoder_inputs"])
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
    # Another image's memory changes the logits: decode_tokens really reads `memory`.
    other = jax.jit(lambda v, m, t: model.apply(v, m, t, method=Captioner.decode_tokens))(
        variables, memory[::-1], batch["decoder_inputs"])
    assert np.abs(np.asarray(other - want)).max() > 1e-4
