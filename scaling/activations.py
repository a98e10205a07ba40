"""Activation memory of a training step, read off the traced backward pass.

What a step keeps for its backward pass is what JAX's autodiff saves: the residuals of the
VJP (`jax._src.ad_checkpoint.saved_residuals`), with their real shapes and dtypes, after
the model's remat policy. Tracing is abstract (ShapeDtypeStructs, no arrays, nothing
compiled), so this sizes an 8.3B model at its real micro-batch in seconds. Depth enters
linearly: models of 1 and 2 layers give the per-layer part (R2 - R1) and the rest (the
embedding, the final norm and the logits of the loss: R1 - per layer).

On a tensor-parallel mesh a residual is split over the `tensor` devices when one of its
axes is a split one (heads, MLP hidden, vocabulary); the residual stream [B, T, D] and the
LayerNorm statistics stay whole on every device (no sequence parallelism).
"""
from __future__ import annotations

import dataclasses
import functools
import math

# The objective that defines each family's inputs (scaling.batch_spec.FAMILY_OBJECTIVES).
_FAMILY_OBJECTIVE = {"decoder": "causal_lm", "encoder": "mlm",
                     "encoder_decoder": "span_corruption", "xlnet": "permutation_lm",
                     "captioning": "captioning"}


@dataclasses.dataclass(frozen=True)
class Residuals:
    """Bytes one device keeps for the backward pass of one micro-batch."""
    per_layer: float   # one block (encoder-decoder: the mean of an encoder and decoder block)
    other: float       # embeddings, final norm, logits and loss
    largest: float     # the largest residual of a block (e.g. attention probabilities)

    def total(self, layers: int) -> float:
        return layers * self.per_layer + self.other


def _split_axes(spec) -> set[int]:
    """Axis sizes that tensor parallelism splits (heads, MLP hidden, padded vocabulary)."""
    return {spec.num_heads, spec.mlp_dim, spec.padded_vocab_size}


@functools.lru_cache(maxsize=64)
def _traced_residuals(spec, objective: str, rows: int, seq_len: int,
                      target_len: int) -> tuple[tuple[tuple[int, ...], int], ...]:
    """(shape, bytes per element) of each residual autodiff saves, parameters, the batch
    and position masks left out. The trace does not depend on the mesh, so one serves every
    tensor-parallel size."""
    import jax  # noqa: PLC0415
    from jax._src.ad_checkpoint import saved_residuals  # noqa: PLC0415

    from scaling.batch_spec import LABEL_KEYS, batch_spec  # noqa: PLC0415
    from scaling.models import build_model, example_batch  # noqa: PLC0415
    from scaling.train_step import weighted_cross_entropy  # noqa: PLC0415

    model = build_model(spec)
    batch = {k: jax.ShapeDtypeStruct(shape, dtype) for k, (shape, dtype)
             in batch_spec(objective, rows, seq_len, target_len, spec.image_size).items()}
    init_batch = example_batch(spec, 1, seq_len, target_len or None, abstract=True)
    params = jax.eval_shape(lambda b: model.init(jax.random.PRNGKey(0), b)["params"],
                            init_batch)

    def loss(params, batch):
        inputs = {k: v for k, v in batch.items() if k not in LABEL_KEYS}
        logits = model.apply({"params": params}, inputs, train=True,
                             rngs={"dropout": jax.random.PRNGKey(0)})
        return weighted_cross_entropy(logits, batch["targets"], batch["weights"])[0]

    kept = []
    for aval, source in saved_residuals(loss, params, batch):
        if "argument" in source:        # parameters and the batch: counted elsewhere
            continue
        if aval.dtype == bool and "stochastic" not in source:
            continue    # masks from position comparisons: XLA recomputes them in fusions
                        # (dropout's random masks, from flax's stochastic.py, are kept)
        kept.append((tuple(aval.shape), aval.dtype.itemsize))
    return tuple(kept)


def _residual_bytes(spec, objective: str, rows: int, seq_len: int, target_len: int,
                    tensor: int) -> tuple[float, float]:
    """(total, largest block residual) bytes per device."""
    split = _split_axes(spec)
    total = largest = 0.0
    for shape, itemsize in _traced_residuals(spec, objective, rows, seq_len, target_len):
        size = math.prod(shape) * itemsize
        divided = tensor > 1 and any(d in split for d in shape[1:])
        total += size / tensor if divided else size
        if spec.padded_vocab_size not in shape:      # a block's, not the logits'
            largest = max(largest, size / tensor if divided else size)
    return total, largest


def residuals(spec, objective: str, rows: int, seq_len: int, target_len: int = 0,
              tensor: int = 1, remat: str | None = None) -> Residuals:
    """Residual bytes per device for `rows` sequences of one micro-batch.

    Args:
      spec: the scaling.spec.ModelSpec.
      objective: data.objective ("task" is sized as the family's pretraining objective).
      rows: sequences per device per micro-step.
      seq_len, target_len: data.seq_len and data.target_len (0 = seq_len).
      tensor: the mesh's tensor-parallel size.
      remat: a model.remat policy (default: the spec's).
    """
    if objective not in _FAMILY_OBJECTIVE.values() and objective != "translation":
        objective = _FAMILY_OBJECTIVE[spec.family]
    spec = dataclasses.replace(spec, scan_layers=False, remat=remat or spec.remat,
                               kernels="reference", attention_impl="xla")
    depth = {}
    two_stacks = spec.family in ("encoder_decoder", "captioning")
    for layers in (1, 2):
        shallow = dataclasses.replace(
            spec, num_layers=layers,
            num_decoder_layers=layers if two_stacks else 0)
        depth[layers] = _residual_bytes(shallow, objective, max(int(rows), 1), seq_len,
                                        target_len, tensor)
    per_pair = depth[2][0] - depth[1][0]
    largest = depth[1][1]
    if two_stacks:       # one encoder + one decoder layer per step
        return Residuals(per_pair / 2, depth[1][0] - per_pair, largest)
    return Residuals(per_pair, depth[1][0] - per_pair, largest)
