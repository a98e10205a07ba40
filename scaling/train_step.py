"""The pure training and evaluation steps.

    train_step(state, batch) -> (state, metrics)

Batches are dicts of [B, ...] arrays (see scaling.data): `targets` and `weights` give the
loss; the model reads the rest. Gradient accumulation splits B into `micro_batches` slices
and sums token-weighted losses and gradients with lax.scan, so the update equals the one of
the whole batch (up to float summation order).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import optax

from scaling.batch_spec import LABEL_KEYS
from scaling.train_state import TrainState


def weighted_cross_entropy(logits, targets, weights):
    """Sum of token losses, correct predictions and weights (float32).

    Returns sums, not means, so micro-batches and hosts can be combined exactly.
    """
    logits = logits.astype(jnp.float32)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
    return (jnp.sum(losses * weights), jnp.sum(correct * weights), jnp.sum(weights))


def weighted_squared_error(predictions, targets, weights):
    """Regression (STS-B): sums of squared errors, of a zero "correct" count, and of weights."""
    errors = (predictions.astype(jnp.float32) - targets.astype(jnp.float32)) ** 2
    return (jnp.sum(errors * weights), jnp.zeros((), jnp.float32), jnp.sum(weights))


# Loss by name: classification (tokens or sequences) and regression heads.
LOSSES = {"cross_entropy": weighted_cross_entropy, "squared_error": weighted_squared_error}


def loss_name(task) -> str:
    """The loss of a scaling.tasks.TaskSpec (None = pretraining: cross-entropy)."""
    return "squared_error" if task is not None and task.kind == "regression" else "cross_entropy"


def _model_inputs(batch):
    return {k: v for k, v in batch.items() if k not in LABEL_KEYS}


def make_train_step(model, tx: optax.GradientTransformation, schedule, micro_batches: int = 1,
                    nonfinite: str = "skip", axis_name: str | None = None,
                    loss: str = "cross_entropy"):
    """Build `train_step(state, batch) -> (state, metrics)`; jit it where it is used.

    Args:
      model: a Linen model mapping a batch dict to logits [B, T, V].
      tx: the optax transformation (clipping + AdamW).
      schedule: the learning-rate schedule, for logging.
      micro_batches: gradient accumulation steps inside one update.
      nonfinite: "skip" or "stop": either way a non-finite loss or gradient leaves the
        state unchanged and reports `nonfinite=1`; the loop decides whether to stop.
      axis_name: under jax.pmap, the mapped axis: every device divides its token-weighted
        loss sum by the token count summed over the axis, and the gradients are summed over
        it (the token-weighted mean of gradients, i.e. what lax.pmean of per-device means
        gives when devices hold equal token counts, and exact when they do not), so every
        device applies the update of the whole global batch.
      loss: a LOSSES name: "cross_entropy" (logits [..., C], integer targets) or
        "squared_error" (a regression head's values, float targets).
    """
    loss_sums = LOSSES[loss]

    def loss_fn(params, batch, rng, total_weight):
        logits = model.apply({"params": params}, _model_inputs(batch), train=True,
                             rngs={"dropout": rng})
        loss_sum, correct, _ = loss_sums(logits, batch["targets"], batch["weights"])
        # The mean over the whole batch's tokens, so the gradients come out as means: dividing
        # the summed gradients afterwards is one more pass over every parameter-sized array.
        # The total is known before the forward pass.
        return loss_sum / total_weight, (loss_sum, correct)

    grad_fn = jax.grad(loss_fn, has_aux=True)

    def train_step(state: TrainState, batch):
        rng = jax.random.fold_in(state.rng, state.step)
        if axis_name is not None:  # pmap: each device draws its own dropout masks
            rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
        tokens = jnp.sum(batch["weights"].astype(jnp.float32))  # loss-weighted tokens
        if axis_name is not None:
            tokens = jax.lax.psum(tokens, axis_name)
        total_weight = jnp.maximum(tokens, 1.0)
        if micro_batches == 1:
            grads, (loss_sum, correct) = grad_fn(state.params, batch, rng, total_weight)
        else:
            split = jax.tree.map(
                lambda x: x.reshape(micro_batches, x.shape[0] // micro_batches, *x.shape[1:]),
                batch)

            def accumulate(carry, xs):
                i, micro = xs
                g, aux = grad_fn(state.params, micro, jax.random.fold_in(rng, i), total_weight)
                return jax.tree.map(jnp.add, carry, (g, aux)), None

            zeros = (jax.tree.map(jnp.zeros_like, state.params), (0.0, 0.0))
            (grads, (loss_sum, correct)), _ = jax.lax.scan(
                accumulate, zeros, (jnp.arange(micro_batches), split))
        if axis_name is not None:
            loss_sum, correct, grads = jax.lax.psum((loss_sum, correct, grads), axis_name)
        loss = loss_sum / total_weight

        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        # A non-finite step is not applied: parameters and optimizer state stay as they were.
        keep = functools.partial(jnp.where, finite)
        new_state = state.replace(
            step=state.step + 1,
            params=jax.tree.map(keep, params, state.params),
            opt_state=jax.tree.map(keep, opt_state, state.opt_state))
        # No parameter norm here: a reduction over every parameter at the very end of the
        # step, on its critical path. The loop takes it at log steps with `param_norm`.
        metrics = {
            "loss": loss,
            "accuracy": correct / total_weight,
            "grad_norm": grad_norm,
            "lr": schedule(state.step),
            "tokens": tokens,
            "nonfinite": (~finite).astype(jnp.int32),
        }
        return new_state, metrics

    return train_step


def param_norm(params) -> jax.Array:
    """The global L2 norm of the parameters (a metric the loop logs at log steps)."""
    return optax.tree.norm(params)


def state_donation(platform: str | None = None) -> tuple[int, ...]:
    """`donate_argnums` for the jitted train step: the state (argument 0), except on CPU.

    Donating lets XLA write the new parameters and AdamW moments into the old buffers, which
    accelerators need to fit large models. XLA CPU, though, then copies every moment that the
    parameter update still reads after it was overwritten in place; fresh buffers are faster
    there (benchmarks/RESULTS.md).
    """
    platform = platform or jax.default_backend()
    return () if platform == "cpu" else (0,)


def make_eval_step(model, loss: str = "cross_entropy", token_bytes=None):
    """`eval_step(params, batch) -> {loss_sum, correct, weight[, bytes]}` (sums: combine over
    batches, then divide).

    token_bytes: [vocab] bytes of text per token id (the tokenizer's `token_bytes`); when
      given, `bytes` sums them over the weighted targets, the denominator of bits per byte.
    """
    loss_sums = LOSSES[loss]
    table = None if token_bytes is None else jnp.asarray(token_bytes, jnp.float32)

    def eval_step(params, batch):
        logits = model.apply({"params": params}, _model_inputs(batch), train=False)
        loss_sum, correct, weight = loss_sums(logits, batch["targets"], batch["weights"])
        out = {"loss_sum": loss_sum, "correct": correct, "weight": weight}
        if table is not None:
            out["bytes"] = jnp.sum(table[batch["targets"]] * batch["weights"])
        return out

    return eval_step


def bits_per_byte(loss_sum: float, num_bytes: float) -> float | None:
    """Loss in bits per byte of predicted text: summed nats / ln 2 / bytes (None for no bytes).

    Tokenizers cut text into pieces of different lengths, so only a per-byte loss compares
    runs (and scaling-law fits) across tokenizers.
    """
    return loss_sum / math.log(2) / num_bytes if num_bytes > 0 else None
