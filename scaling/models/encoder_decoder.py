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
        memory_mask = padding_mask(valid)
        x = encode(s, embed(src, deterministic=not train), memory_mask, not train)
        return decode(s, embed, tgt, x, memory_mask, not train)


def encode(spec: ModelSpec, x, mask, deterministic: bool):
    """The encoder stack (+ its final LayerNorm): [B, S, D] -> [B, S, D].

    Call inside a compact method: the layers become the caller's submodules "encoder" and
    "ln_encoder" (the encoder-decoder's and the captioning model's parameter names).
    """
    x = BlockStack(EncoderBlock, spec, spec.num_layers, deterministic, name="encoder")(x, mask)
    if spec.final_norm:
        x = LayerNorm(spec.layer_norm_eps, spec.kernels, name="ln_encoder")(x)
    return x


def decode(spec: ModelSpec, embed: Embeddings, tgt, memory, memory_mask, deterministic: bool):
    """Teacher-forced decoder: ids [B, T] attending causally to themselves and to memory
    [B, S, D] (keys allowed by memory_mask, None = all) -> logits [B, T, V_pad].

    Call inside a compact method: the layers become the caller's submodules "decoder" and
    "ln_decoder"; the output projection is `embed.attend` (tied to the target embedding).
    """
    y = embed(tgt, deterministic=deterministic)
    y = BlockStack(DecoderBlock, spec, spec.decoder_layers, deterministic, name="decoder")(
        y, causal_mask(tgt.shape[1]), memory, memory_mask)
    if spec.final_norm:
        y = LayerNorm(spec.layer_norm_eps, spec.kernels, name="ln_decoder")(y)
    return embed.attend(y)
