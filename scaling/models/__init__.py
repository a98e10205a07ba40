"""Model families, built from a ModelSpec; every model maps a batch dict to logits."""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from scaling import kernels
from scaling.batch_spec import model_input_spec
from scaling.models.decoder import DecoderLM
from scaling.models.encoder import EncoderModel
from scaling.models.encoder_decoder import EncoderDecoder
from scaling.spec import ModelSpec

_FAMILIES = {
    "decoder": DecoderLM,
    "encoder": EncoderModel,
    "encoder_decoder": EncoderDecoder,
}


def build_model(spec: ModelSpec, task=None) -> nn.Module:
    """The Linen module for spec.family, or with a scaling.tasks.TaskSpec its task model.

    Raises ValueError if spec.kernels names a kernel set made for another platform.
    """
    kernels.resolve(spec.kernels)
    if task is not None:
        from scaling.models.task import TaskModel  # noqa: PLC0415
        return TaskModel(spec, task)
    if spec.family == "xlnet":
        from scaling.models.xlnet import XLNet  # noqa: PLC0415  (optional family)
        return XLNet(spec)
    if spec.family == "captioning":
        from scaling.models.captioning import Captioner  # noqa: PLC0415
        return Captioner(spec, tuple(spec.backbone_widths), tuple(spec.backbone_depths),
                         spec.backbone_groups, spec.image_attention)
    return _FAMILIES[spec.family](spec)


def example_batch(spec: ModelSpec, batch_size: int = 2, seq_len: int | None = None,
                  target_len: int | None = None, abstract: bool = False) -> dict:
    """A batch with the keys and shapes spec's model reads (zeros, or ShapeDtypeStructs).

    The keys are scaling.batch_spec.model_input_spec's; XLNet's ranks are the identity order.
    """
    t = seq_len or min(spec.max_positions, 128)
    shapes = model_input_spec(spec.family, batch_size, t, target_len or 0, spec.image_size)
    if abstract:
        return {k: jax.ShapeDtypeStruct(shape, dtype) for k, (shape, dtype) in shapes.items()}
    batch = {k: jnp.zeros(shape, dtype) for k, (shape, dtype) in shapes.items()}
    if spec.family == "xlnet":  # ranks must be a permutation: the identity order
        batch["perm_ranks"] = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (batch_size, t))
    return batch


def abstract_params(spec: ModelSpec, seq_len: int = 8):
    """Parameter shapes (with logical partitioning boxes) without allocating memory.

    Traced with the reference kernels: kernels own no parameters, and a short example
    length would not fit kernels with length rules (splash: multiples of 128).
    """
    model = build_model(dataclasses.replace(spec, kernels="reference", attention_impl="xla"))
    batch = example_batch(spec, 1, min(seq_len, spec.max_positions), abstract=True)
    return jax.eval_shape(lambda b: model.init(jax.random.PRNGKey(0), b), batch)["params"]


__all__ = ["ModelSpec", "build_model", "example_batch", "abstract_params", "model_spec"]


# Vocabulary of the default byte-level tokenizer (scaling.data.tokenizer): 256 bytes plus
# special and sentinel ids. A model config with vocab_size 0 takes the tokenizer's size.
BYTE_VOCAB_SIZE = 384


def model_spec(config) -> ModelSpec:
    """The validated ModelSpec of a run config, resolving vocab_size 0 from the tokenizer."""
    model = config.model.to_dict() if hasattr(config.model, "to_dict") else dict(config.model)
    if model.get("vocab_size", 0) == 0:
        if "data" in config:
            from scaling.data import tokenizer_vocab_size  # noqa: PLC0415  (a light import)
            model["vocab_size"] = tokenizer_vocab_size(config.data)
        else:
            model["vocab_size"] = BYTE_VOCAB_SIZE
    return ModelSpec.from_config(model)
