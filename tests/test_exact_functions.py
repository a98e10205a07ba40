"""The functions that published checkpoints were trained with: GELU forms and RoBERTa positions.

Each is checked against an independent numpy/scipy formula, not against our own code.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from scaling.config_loading import load
from scaling.models import build_model
from scaling.models.embeddings import Embeddings
from scaling.nn.functional import ACTIVATIONS
from scaling.spec import ModelSpec

X = np.linspace(-6.0, 6.0, 1001)


def test_gelu_is_exact_erf_form():
    want = 0.5 * X * (1.0 + scipy.special.erf(X / np.sqrt(2.0)))
    got = np.asarray(ACTIVATIONS["gelu"](jnp.asarray(X, jnp.float32)))
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_gelu_tanh_is_the_tanh_approximation():
    want = 0.5 * X * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (X + 0.044715 * X ** 3)))
    got = np.asarray(ACTIVATIONS["gelu_tanh"](jnp.asarray(X, jnp.float32)))
    np.testing.assert_allclose(got, want, atol=2e-6)
    # The two forms differ by up to ~5e-4 here: enough to matter for imported weights.
    assert np.abs(got - 0.5 * X * (1 + scipy.special.erf(X / np.sqrt(2)))).max() > 1e-4


@pytest.mark.parametrize("experiment, activation", [
    ("gpt2", "gelu_tanh"), ("megatron", "gelu_tanh"), ("bert", "gelu"), ("roberta", "gelu"),
    ("xlnet", "gelu"), ("transformer", "relu")])
def test_family_defaults_match_the_published_implementations(experiment, activation):
    assert load(f"experiments/{experiment}.py:tiny").model.activation == activation


def test_roberta_positions_start_at_row_two():
    """Position p reads row p + 2 of the table (fairseq's padding_idx + 1)."""
    spec = ModelSpec(family="encoder", vocab_size=50, width=8, num_heads=2, max_len=12,
                     position_offset=2)
    ids = jnp.array([[7, 3, 9, 11]])
    module = Embeddings(spec)
    params = nn.unbox(module.init(jax.random.PRNGKey(0), ids)["params"])
    params = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(1), p.shape), params)
    got = np.asarray(module.apply({"params": params}, ids))
    tokens = np.asarray(params["tokens"]["embedding"])
    positions = np.asarray(params["positions"]["embedding"])
    want = tokens[np.asarray(ids[0])] + positions[2:6]
    np.testing.assert_allclose(got[0], want, rtol=1e-6)


def test_roberta_config_reserves_two_rows():
    config = load("experiments/roberta.py:large")
    assert config.model.position_offset == 2 and config.model.max_len == 514
    assert config.data.seq_len <= 512


def test_sequence_longer_than_rows_past_the_offset_is_rejected():
    from scaling.train import validate
    config = load("experiments/roberta.py:tiny")
    config.data.seq_len = config.model.max_len  # 130 rows, but only 128 past the offset
    with pytest.raises(ValueError, match="data.seq_len.*position_offset=2"):
        validate(config)


def test_offset_outside_learned_table_is_rejected():
    with pytest.raises(ValueError, match="model.position_offset"):
        ModelSpec(max_len=4, position_offset=4)
    with pytest.raises(ValueError, match="model.position_offset"):
        ModelSpec(positions="sinusoidal", position_offset=2)


def test_roberta_tiny_builds_and_runs_at_its_longest_sequence():
    config = load("experiments/roberta.py:tiny")
    from scaling.models import example_batch, model_spec
    spec = model_spec(config)
    model = build_model(spec)
    batch = example_batch(spec, 1, spec.max_positions)
    variables = model.init(jax.random.PRNGKey(0), batch)
    assert model.apply(variables, batch).shape[:2] == (1, 128)
