"""Encoder-only models: BERT and RoBERTa (learned positions, token types, post-LN, pooler).

Parameters of the masked-LM pretraining head (BERT's transform and output bias) live under
the `head` collection key so that parameter counts can report the backbone alone, as the
published BERT/RoBERTa figures do.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from scaling.nn.blocks import BlockStack, EncoderBlock
from scaling.models.embeddings import Embeddings, mask_padded_vocab
from scaling.spec import ModelSpec
from scaling.nn.attention import padding_mask
from scaling.nn.functional import ACTIVATIONS
from scaling.nn.layers import Dense, LayerNorm, _param, zeros


class MlmHead(nn.Module):
    """BERT's prediction head: dense + activation + LayerNorm, then tied logits + bias."""
    spec: ModelSpec

    @nn.compact
    def __call__(self, x, embed: Embeddings):
        s = self.spec
        if s.mlm_head:
            x = Dense(s.width, ("embed", "mlp"), True, s.compute_dtype, s.kernels,
                      name="transform")(x)
            x = ACTIVATIONS[s.activation](x)
            x = LayerNorm(s.layer_norm_eps, s.kernels, name="ln")(x)
        logits = embed.tokens.attend(x)
        if s.output_bias:
            logits = logits + _param(self, "bias", zeros, (s.padded_vocab_size,),
                                     ("vocab",)).astype(logits.dtype)
        return mask_padded_vocab(logits, s)


def encoder_body(s: ModelSpec, batch, train: bool):
    """Embeddings -> blocks -> [ln_final] -> [pooler], created inside the calling compact module.

    The submodules get the same names (embed, blocks, ln_final, pooler) in whatever module
    calls this, so a task model's backbone reads a pretrained checkpoint's parameters.

    Returns:
      (hidden [B, T, D], pooled [B, D] tanh-pooled first token or None, embed).
    """
    ids = batch["inputs"]
    valid = batch.get("input_mask")
    valid = jnp.ones_like(ids) if valid is None else valid
    embed = Embeddings(s, name="embed")
    x = embed(ids, batch.get("token_types"), deterministic=not train)
    x = BlockStack(EncoderBlock, s, s.num_layers, not train, name="blocks")(
        x, padding_mask(valid))
    if s.final_norm:
        x = LayerNorm(s.layer_norm_eps, s.kernels, name="ln_final")(x)
    pooled = None
    if s.pooler:
        pooled = jnp.tanh(Dense(s.width, ("embed", "mlp"), True, s.compute_dtype, s.kernels,
                                name="pooler")(x[:, 0]))
    return x, pooled, embed


class EncoderModel(nn.Module):
    """batch['inputs'] [B, T] (+ 'token_types', 'input_mask') -> MLM logits [B, T, V_pad].

    The pooled [CLS] vector (tanh dense over the first position) is sown into the
    'intermediates' collection; classification heads (scaling.models.task) read it.
    """
    spec: ModelSpec

    @nn.compact
    def __call__(self, batch, train: bool = False):
        x, pooled, embed = encoder_body(self.spec, batch, train)
        if pooled is not None:
            self.sow("intermediates", "pooled", pooled)
        return MlmHead(self.spec, name="head")(x, embed)
