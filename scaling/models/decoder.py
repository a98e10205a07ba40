"""Decoder-only language models: GPT-2 and Megatron-LM (pre-LN, final LN, tied head)."""
from __future__ import annotations

import flax.linen as nn

from scaling.nn.blocks import BlockStack, EncoderBlock
from scaling.models.embeddings import Embeddings, mask_padded_vocab
from scaling.spec import ModelSpec
from scaling.nn.attention import CAUSAL
from scaling.nn.layers import Dense, LayerNorm


def decoder_body(s: ModelSpec, batch, train: bool):
    """Embeddings -> causal blocks -> [ln_final], created inside the calling compact module
    under the names embed, blocks, ln_final (shared by the LM and task models).

    Returns:
      (hidden [B, T, D], embed).
    """
    embed = Embeddings(s, name="embed")
    x = embed(batch["inputs"], deterministic=not train)
    x = BlockStack(EncoderBlock, s, s.num_layers, not train, name="blocks")(x, CAUSAL)
    if s.final_norm:
        x = LayerNorm(s.layer_norm_eps, s.kernels, name="ln_final")(x)
    return x, embed


class DecoderLM(nn.Module):
    """batch['inputs'] [B, T] -> next-token logits [B, T, V_pad].

    A decoder-only block is an encoder block (self-attention + MLP) under a causal mask.
    """
    spec: ModelSpec

    @nn.compact
    def __call__(self, batch, train: bool = False):
        s = self.spec
        x, embed = decoder_body(s, batch, train)
        if s.tie_embeddings:
            return embed.attend(x)
        logits = Dense(s.padded_vocab_size, ("embed", "vocab"), s.output_bias, s.compute_dtype,
                       s.kernels, name="lm_head")(x)
        return mask_padded_vocab(logits, s)
