"""Performance changes keep the numerics: 3 fp32 training steps of the optimized path
(projections on [M, D] tokens, narrowing projections' weight gradients taken transposed,
LayerNorm with its written-out backward and gradient materialization, GELU recomputed in
the backward pass, blocked causal attention, no state donation on CPU) equal the plain
path: einsums, autodiff everywhere, reference attention."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling.config_loading import load
from scaling.models import build_model, model_spec
from scaling.nn import functional
from scaling.optim import make_optimizer, make_schedule
from scaling.train_state import TrainState
from scaling.train_step import make_train_step, state_donation


def three_step_losses(attention_impl: str, donate: tuple) -> list[float]:
    config = load("experiments/gpt2.py:tiny")
    config.model.update(num_layers=2, width=64, num_heads=4, mlp_dim=256, max_len=64,
                        attention_impl=attention_impl, attention_block=16)
    model = build_model(model_spec(config))
    tx = make_optimizer(config.optim, 10)
    rng = np.random.default_rng(0)
    params = nn.unbox(model.init(jax.random.PRNGKey(0),
                                 {"inputs": jnp.zeros((1, 64), jnp.int32)}))["params"]
    state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), jax.random.PRNGKey(1))
    step = jax.jit(make_train_step(model, tx, make_schedule(config.optim, 10)),
                   donate_argnums=donate)
    losses = []
    for _ in range(3):
        ids = rng.integers(5, 300, (4, 65))
        batch = {"inputs": jnp.asarray(ids[:, :-1], jnp.int32),
                 "targets": jnp.asarray(ids[:, 1:], jnp.int32),
                 "weights": jnp.ones((4, 64), jnp.float32)}
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    return losses


@pytest.mark.parametrize("impl", ["auto", "blocked"])
def test_optimized_path_matches_plain_path(monkeypatch, impl):
    optimized = three_step_losses(impl, state_donation())
    # The plain path: 3-D einsums, LayerNorm and GELU differentiated by JAX and nothing
    # recomputed, einsum reference attention, the state donated (run() does not on CPU).
    def plain_dense(x, kernel, bias=None, in_dims=1):
        y = jnp.tensordot(x, kernel, axes=in_dims)
        return y if bias is None else y + bias

    def plain_layer_norm(x, scale, bias, eps=1e-5):
        mean = jnp.mean(x, -1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + eps) * scale + bias

    monkeypatch.setattr(functional, "tokens", lambda x, feature_dims=1: x)
    monkeypatch.setattr(functional, "dense", plain_dense)
    monkeypatch.setattr(functional, "layer_norm", plain_layer_norm)
    monkeypatch.setattr(functional, "bias_activation",
                        lambda y, b, act: functional.ACTIVATIONS[act](y + b))
    monkeypatch.setattr(functional, "tied_logits",
                        lambda x, table: jnp.einsum("BTD,VD->BTV", x, table))
    plain = three_step_losses("xla", (0,))
    assert optimized == pytest.approx(plain, rel=1e-5)
    assert optimized[2] != optimized[0]  # the steps really trained


def test_state_is_donated_on_accelerators_only():
    # Accelerators need donation to fit; on CPU fresh buffers are faster (state_donation).
    assert state_donation("cpu") == ()
    assert state_donation("gpu") == (0,) and state_donation("tpu") == (0,)
