"""Task heads for fine-tuning, on the backbone of an encoder (BERT, RoBERTa) or decoder (GPT-2).

The backbone's submodules keep the pretraining models' names (embed, blocks, ln_final,
pooler), so `checkpoint.init_from` fills them from a pretrained run; the head is one dense
layer named `task_head`, always freshly initialised:

  sequence_classification  pooled [B, D] -> logits [B, C]
  regression               pooled [B, D] -> value  [B]
  token_classification     hidden [B, T, D] -> logits [B, T, C]

Pooling: "first" is the [CLS] position, through the model's tanh pooler when it has one
(BERT); "last" is the last real token (input_mask), the only one a causal decoder has
read the whole sequence at; "mean" averages the real tokens' hidden states.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import flax.linen as nn
import jax.numpy as jnp

from scaling.models.decoder import decoder_body

if TYPE_CHECKING:  # scaling.tasks builds TaskSpecs; models need only its fields
    from scaling.tasks import TaskSpec
from scaling.models.encoder import encoder_body
from scaling.nn.layers import Dense, dropout
from scaling.spec import ModelSpec


def pool(hidden, input_mask, pooling: str, pooled=None):
    """hidden [B, T, D] -> [B, D]: the first position (or the pooler's output), the last
    real one, or the mean over real ones (input_mask [B, T]; None = every position is real)."""
    if pooling == "first":
        return hidden[:, 0] if pooled is None else pooled
    if pooling == "mean":
        mask = (jnp.ones(hidden.shape[:2]) if input_mask is None else input_mask)
        mask = mask.astype(hidden.dtype)[..., None]
        return jnp.sum(hidden * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)
    if input_mask is None:
        return hidden[:, -1]
    last = jnp.maximum(jnp.sum(input_mask, axis=-1) - 1, 0)            # [B]
    return jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]


class TaskModel(nn.Module):
    """A batch (see scaling.tasks.data) -> task outputs (see the module docstring)."""
    spec: ModelSpec
    task: TaskSpec  # kind, num_labels, pooling

    @nn.compact
    def __call__(self, batch, train: bool = False):
        s, t = self.spec, self.task
        if s.family == "encoder":
            hidden, pooled, _ = encoder_body(s, batch, train)
        else:
            (hidden, _), pooled = decoder_body(s, batch, train), None  # no pooler
        if t.kind == "token_classification":
            features = hidden
        else:
            features = pool(hidden, batch.get("input_mask"), t.pooling, pooled)
        features = dropout(features, s.dropout, not train)
        outputs = 1 if t.kind == "regression" else t.num_labels
        out = Dense(outputs, ("embed", "labels"), True, s.compute_dtype, s.kernels,
                    name="task_head")(
            features)
        return out[..., 0] if t.kind == "regression" else out
