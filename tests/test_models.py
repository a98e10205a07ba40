"""Model families: shapes, causality, logical axis names, parameter counts, bad configs."""
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.size_table import ROWS
from scaling.config_loading import ConfigError, load
from scaling.models import BYTE_VOCAB_SIZE, abstract_params, build_model, example_batch, model_spec
from scaling.spec import ModelSpec
from scaling.nn.logical import LOGICAL_AXES
from scaling.sizes import count_params

FAMILIES = ["gpt2", "megatron", "bert", "roberta", "transformer"]


def tiny(family, **model):
    config = load(f"experiments/{family}.py:tiny")
    config.model.update(model)
    return model_spec(config)


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_forward_shapes(family):
    spec = tiny(family)
    model = build_model(spec)
    batch = example_batch(spec, batch_size=3, seq_len=16, target_len=8)
    variables = model.init(jax.random.PRNGKey(0), batch)
    logits = model.apply(variables, batch)
    t = 8 if spec.family == "encoder_decoder" else 16
    assert logits.shape == (3, t, spec.padded_vocab_size)
    assert spec.vocab_size == BYTE_VOCAB_SIZE


def test_causal_decoder_ignores_future_tokens():
    spec = tiny("gpt2")
    model = build_model(spec)
    ids = jax.random.randint(jax.random.PRNGKey(0), (2, 20), 0, spec.vocab_size)
    variables = model.init(jax.random.PRNGKey(1), {"inputs": ids})
    t = 11
    changed = ids.at[:, t + 1:].set((ids[:, t + 1:] + 7) % spec.vocab_size)
    a = model.apply(variables, {"inputs": ids})
    b = model.apply(variables, {"inputs": changed})
    np.testing.assert_allclose(a[:, :t + 1], b[:, :t + 1], atol=1e-6)
    assert np.abs(np.asarray(a[:, t + 1:] - b[:, t + 1:])).max() > 1e-4


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("scan", [False, True])
def test_every_parameter_has_logical_axis_names(family, scan):
    params = abstract_params(tiny(family, scan_layers=scan))
    leaves = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert leaves
    for leaf in leaves:
        assert isinstance(leaf, nn.LogicallyPartitioned), leaf
        assert len(leaf.names) == len(leaf.value.shape)
        assert all(name in LOGICAL_AXES for name in leaf.names), leaf.names
        if scan and leaf.names[0] == "layers":
            assert leaf.value.shape[0] == tiny(family).num_layers


def test_scan_equals_loop_with_the_same_weights():
    spec = tiny("gpt2")
    batch = {"inputs": jax.random.randint(jax.random.PRNGKey(0), (2, 12), 0, 300)}
    loop = build_model(spec)
    params = nn.unbox(loop.init(jax.random.PRNGKey(1), batch))["params"]
    layers = [params["blocks"][f"layer_{i}"] for i in range(spec.num_layers)]
    scanned_params = dict(params, blocks={"layers": jax.tree.map(lambda *x: jnp.stack(x),
                                                                 *layers)})
    scanned = build_model(tiny("gpt2", scan_layers=True, remat="full"))
    np.testing.assert_allclose(scanned.apply({"params": scanned_params}, batch),
                               loop.apply({"params": params}, batch), rtol=1e-5, atol=1e-5)


def test_bf16_forward_finite_and_close_to_fp32():
    batch = {"inputs": jax.random.randint(jax.random.PRNGKey(0), (2, 32), 0, 300)}
    f32 = build_model(tiny("gpt2"))
    variables = f32.init(jax.random.PRNGKey(1), batch)
    ref = np.asarray(f32.apply(variables, batch))
    low = np.asarray(build_model(tiny("gpt2", dtype="bfloat16")).apply(variables, batch),
                     np.float32)
    assert np.all(np.isfinite(low))
    assert np.abs(low - ref).max() / np.abs(ref).max() < 5e-2
    # Same predictions almost everywhere.
    assert (low.argmax(-1) == ref.argmax(-1)).mean() > 0.9


def test_encoder_padding_does_not_leak():
    spec = tiny("bert")
    model = build_model(spec)
    ids = jax.random.randint(jax.random.PRNGKey(0), (1, 10), 5, 300)
    mask = jnp.array([[1] * 7 + [0] * 3])
    batch = {"inputs": ids, "input_mask": mask, "token_types": jnp.zeros_like(ids)}
    variables = model.init(jax.random.PRNGKey(1), batch)
    a = model.apply(variables, batch)
    b = model.apply(variables, dict(batch, inputs=ids.at[0, 8].set(7)))
    np.testing.assert_allclose(a[:, :7], b[:, :7], atol=1e-5)


EXACT = [r for r in ROWS if r.exact is not None and r.experiment != "xlnet"]


@pytest.mark.parametrize("row", EXACT, ids=[r.key for r in EXACT])
def test_parameter_counts_equal_the_exact_reference(row):
    spec = model_spec(load(f"experiments/{row.experiment}.py:{row.variant}"))
    assert count_params(spec).backbone == row.exact


@pytest.mark.parametrize("impl", ["auto", "splash"])
def test_gpt2_small_count_by_hand(impl):
    # Independent of the size table: GPT-2 small from its formula. Splash (lengths in
    # multiples of 128) must not change the count, nor fail on the short traced length.
    V, P, D, F, L = 50257, 1024, 768, 3072, 12
    per_layer = 2 * 2 * D + (3 * D * D + 3 * D) + (D * D + D) + (D * F + F + F * D + D)
    config = load("experiments/gpt2.py:small")
    config.model.attention_impl = impl
    assert count_params(model_spec(config)).total == V * D + P * D + L * per_layer + 2 * D


@pytest.mark.parametrize("field,value,words", [
    ("width", 130, "model.width"),           # not divisible by 4 heads
    ("norm", "middle", "model.norm"),
    ("num_layers", 0, "model.num_layers"),
    ("mlp_dim", -5, "model.mlp_dim"),
    ("family", "rnn", "model.family"),
    ("remat", "sometimes", "model.remat"),
    ("attention_impl", "flash", "model.attention_impl"),
    ({"attention_impl": "splash", "family": "xlnet", "positions": "relative"},
     None, "model.attention_impl: 'splash' takes no attention bias"),
    ({"attention_impl": "splash", "attention_block": 96}, None, "model.attention_block"),
])
def test_bad_model_config_names_the_field(field, value, words):
    fields = field if isinstance(field, dict) else {field: value}
    with pytest.raises(ValueError, match=words):
        ModelSpec(**fields)
    with pytest.raises(ValueError) as info:
        ModelSpec(**fields)
    assert "\n" not in str(info.value)


def test_unknown_variant_and_field():
    with pytest.raises(ConfigError, match="unknown variant 'huge'.*tiny"):
        load("experiments/gpt2.py:huge")
    with pytest.raises(ValueError, match="model.colour"):
        ModelSpec.from_config({"colour": "red"})


def test_params_command_unknown_family_exits_nonzero_one_line():
    proc = subprocess.run([sys.executable, "-m", "scaling.cli", "params", "gpt5"],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "gpt5" in proc.stderr


def test_params_command_json_lists_the_table():
    import json
    proc = subprocess.run([sys.executable, "-m", "scaling.cli", "params", "--json"],
                          capture_output=True, text=True, check=True)
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert len(rows) == 8
    for r in rows.values():
        assert {"name", "layers", "width", "heads", "params", "published"} <= set(r)
    assert rows["GPT-2 (XL)"]["params"] == 1_557_611_200
    assert rows["Megatron-LM"]["params"] == 8_317_040_640
