"""The encoder-decoder Transformer of Vaswani et al. (Transformer-Base/Large).

One embedding matrix serves the source embedding, the target embedding and the pre-softmax
projection (section 3.4 of the paper, with embeddings multiplied by sqrt(D)); positions are
sinusoidal; blocks are post-LN with no final LayerNorm.
"""
from __future__ import annotations

import flax.linen as nn

from scaling.nn.blocks import BlockStack, DecoderBlock, EncoderBlock
from scaling.models.embeddings import PAD_ID, Embeddings
from scaling.spec import ModelSpec
from scaling.nn.attention import causal_mask, padding_mask
from scaling.nn.layers import LayerNorm


class EncoderDecoder(nn.Module):
    """batch['inputs'] [B, S], batch['decoder_inputs'] [B, T] -> logits [B, T, V_pad].

    Source padding comes from batch['input_mask'] when given, else from inputs != PAD_ID.
    """
    spec: ModelSpec

    @nn.compact
    def __call__(self, batch, train: bool = False):
        s = self.spec
        src, tgt = batch["inputs"], batch["decoder_inputs"]
        valid = batch.get("input_mask")
        valid = (src != PAD_ID) if valid is None else valid
        embed = Embeddings(s, name="embed")  # shared by source, target and output

        x = embed(src, deterministic=not train)
        x = BlockStack(EncoderBlock, s, s.num_layers, not train, name="encoder")(
            x, padding_mask(valid))
        if s.final_norm:
            x = LayerNorm(s.layer_norm_eps, s.kernels, name="ln_encoder")(x)

        y = embed(tgt, deterministic=not train)
        y = BlockStack(DecoderBlock, s, s.decoder_layers, not train, name="decoder")(
            y, causal_mask(tgt.shape[1]), x, padding_mask(valid))
        if s.final_norm:
            y = LayerNorm(s.layer_norm_eps, s.kernels, name="ln_decoder")(y)
        return embed.attend(y)
