"""Every kernel set that runs on CPU equals the reference math of scaling.nn, on every model
family: the forward pass, the gradients and three AdamW training steps agree to 1e-5
(relative, fp32). The gpu set's attention runs here as XLA's jax.nn.dot_product_attention
(cuDNN needs a GPU); the tpu set's splash kernel is checked in the Pallas interpreter by
tests/test_attention.py. Also: how model.kernels is chosen and refused."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import kernels
from scaling.config_loading import load
from scaling.kernels import gpu, tpu
from scaling.models import build_model, model_spec
from scaling.nn import attention as nn_attention
from scaling.nn import functional as nn_functional
from scaling.optim import make_optimizer, make_schedule
from scaling.train_state import make_init_fn
from scaling.train_step import make_train_step

FAMILIES = ["gpt2", "megatron", "bert", "roberta", "transformer", "xlnet"]
# Kernel sets against the reference: (model.kernels, model.attention_impl). ("reference",
# "jax") is the gpu set (asserted in test_gpu_and_tpu_sets_are_the_reference_plus_attention).
CANDIDATES = {"xla_cpu": ("xla_cpu", "auto"), "gpu": ("reference", "jax")}
B, T, TARGET = 2, 16, 8
RTOL = 1e-5


def tiny_spec(family: str, kernels_name: str, attention_impl: str = "auto"):
    config = load(f"experiments/{family}.py:tiny")
    config.model.update(num_layers=2, width=32, num_heads=2, mlp_dim=128, dropout=0.0,
                        attention_block=8,  # blocked attention: 2 query blocks of T = 16
                        kernels=kernels_name, attention_impl=attention_impl)
    return model_spec(config), config


def random_batch(spec, rng: np.random.Generator) -> dict:
    """Random tokens with every input the family reads (padding and permutations included)."""
    ids = lambda *shape: jnp.asarray(rng.integers(5, spec.vocab_size, shape), jnp.int32)  # noqa: E731
    out_len = TARGET if spec.family == "encoder_decoder" else T
    batch = {"inputs": ids(B, T), "targets": ids(B, out_len),
             "weights": jnp.asarray(rng.random((B, out_len)) < 0.8, jnp.float32)}
    if spec.family in ("encoder", "encoder_decoder"):
        valid = np.ones((B, T), np.int32)
        valid[0, T - 5:] = 0  # padding in the first example
        batch["input_mask"] = jnp.asarray(valid)
    if spec.family == "encoder":
        batch["token_types"] = jnp.zeros((B, T), jnp.int32)
    if spec.family == "encoder_decoder":
        batch["decoder_inputs"] = ids(B, TARGET)
    if spec.family == "xlnet":
        batch["perm_ranks"] = jnp.asarray(np.stack([rng.permutation(T) for _ in range(B)]),
                                          jnp.int32)
        batch["token_types"] = jnp.asarray(np.arange(T)[None] >= T // 2, jnp.int32) * \
            jnp.ones((B, 1), jnp.int32)
    return batch


def relative_error(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def _flat(leaves) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in leaves])


def run_model(family: str, kernels_name: str, attention_impl: str = "auto"):
    """(logits, gradients of a fixed random projection of the logits, three-step losses,
    parameters after three steps) of one family under one kernel set; same init and data."""
    spec, config = tiny_spec(family, kernels_name, attention_impl)
    model = build_model(spec)
    rng = np.random.default_rng(0)
    batches = [random_batch(spec, rng) for _ in range(3)]
    inputs = {k: v for k, v in batches[0].items() if k not in ("targets", "weights")}
    tx = make_optimizer(config.optim, 10)
    state = jax.jit(make_init_fn(model, tx, inputs))(jax.random.PRNGKey(0))

    @jax.jit
    def forward_and_grads(params):
        logits, vjp = jax.vjp(lambda p: model.apply({"params": p}, inputs), params)
        cotangent = jax.random.normal(jax.random.PRNGKey(1), logits.shape, logits.dtype)
        return logits, vjp(cotangent)[0]

    logits, grads = forward_and_grads(state.params)
    step = jax.jit(make_train_step(model, tx, make_schedule(config.optim, 10)))
    losses = []
    for batch in batches:
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    return logits, grads, losses, state.params


@pytest.fixture(scope="module")
def reference_runs():
    return {}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("candidate", sorted(CANDIDATES))
def test_kernel_set_equals_reference(family, candidate, reference_runs):
    if family not in reference_runs:
        reference_runs[family] = run_model(family, "reference", "xla")
    want_logits, want_grads, want_losses, want_params = reference_runs[family]
    logits, grads, losses, params = run_model(family, *CANDIDATES[candidate])

    assert relative_error(logits, want_logits) < RTOL
    flat_want = jax.tree_util.tree_leaves_with_path(want_grads)
    flat_got = jax.tree.leaves(grads)
    assert len(flat_got) == len(flat_want)
    assert relative_error(_flat(flat_got), _flat(leaf for _, leaf in flat_want)) < RTOL
    scale = np.linalg.norm(_flat(leaf for _, leaf in flat_want))
    for (path, want), got in zip(flat_want, flat_got):
        # Every parameter's gradient too, but the key biases': softmax ignores a constant
        # added to every score, so theirs is zero but for rounding, in both.
        if np.linalg.norm(want) > 1e-6 * scale:
            assert relative_error(got, want) < RTOL, jax.tree_util.keystr(path)
    assert losses == pytest.approx(want_losses, rel=RTOL)
    assert losses[2] != losses[0]  # the steps really trained
    assert relative_error(_flat(jax.tree.leaves(params)),
                          _flat(jax.tree.leaves(want_params))) < RTOL


def test_gpu_and_tpu_sets_are_the_reference_plus_attention():
    for name, attention in (("gpu", gpu.attention), ("tpu", tpu.attention)):
        ops = kernels.get(name, block=128)
        assert (ops.dense, ops.layer_norm, ops.mlp, ops.tied_logits) == (
            nn_functional.dense, nn_functional.layer_norm, nn_functional.mlp,
            nn_functional.tied_logits)
        assert ops.attention.func is attention and ops.attention.keywords == {"block": 128}
    assert kernels.get("reference").attention is nn_attention.attention


def test_auto_resolves_per_platform():
    assert kernels.resolve("auto", "cpu") == "xla_cpu"
    assert kernels.resolve("auto", "gpu") == "gpu"
    assert kernels.resolve("auto", "tpu") == "reference"  # splash is opt-in
    assert kernels.resolve("reference", "tpu") == "reference"
    assert kernels.get("auto").name == kernels.resolve("auto")
    # attention_impl overrides the attention alone
    assert kernels.get("xla_cpu", "xla").attention is nn_attention.attention
    assert kernels.get("xla_cpu", "xla").layer_norm is not nn_functional.layer_norm


@pytest.mark.parametrize("value,platform,message", [
    ("cuda", "cpu", "model.kernels: unknown 'cuda'; allowed: 'auto', 'reference'"),
    ("tpu", "cpu", "model.kernels: 'tpu' is for tpu and JAX runs on cpu here"),
    ("xla_cpu", "gpu", "model.kernels: 'xla_cpu' is for cpu and JAX runs on gpu here"),
])
def test_bad_kernels_fail_in_one_line(value, platform, message):
    with pytest.raises(ValueError, match=message) as info:
        kernels.resolve(value, platform)
    assert "\n" not in str(info.value)


def test_bad_kernels_fail_before_anything_compiles():
    with pytest.raises(ValueError, match="model.kernels: unknown value 'fast'"):
        tiny_spec("gpt2", "fast")
    spec, _ = tiny_spec("gpt2", "gpu")  # valid everywhere as a value; refused on CPU
    with pytest.raises(ValueError, match="model.kernels: 'gpu' is for gpu"):
        build_model(spec)
    with pytest.raises(ValueError, match="model.kernels: 'tpu' attention"):
        tiny_spec("xlnet", "tpu")
    assert build_model(dataclasses.replace(spec, kernels="reference")) is not None


def test_state_is_donated_on_accelerators_only():
    # Accelerators need donation to fit; on CPU fresh buffers are faster (state_donation).
    from scaling.train_step import state_donation
    assert state_donation("cpu") == ()
    assert state_donation("gpu") == (0,) and state_donation("tpu") == (0,)
