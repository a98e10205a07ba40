"""An image-captioning model: a convolutional backbone feeding the encoder-decoder Transformer.

images [B, height, width, 3] -> ConvBackbone (optionally SAGAN self-attention after it) ->
feature grid [B, Y, X, C] -> a 1x1 projection to the model width D -> the grid as a sequence
of Y·X image tokens with 2-D sinusoidal positions -> the Transformer encoder -> the
encoder-decoder's decoder, cross-attending to every image token, teacher-forced on the
caption -> logits [B, T, V_pad]. The caption loss is the decoder's: batch['targets'] and
batch['weights'] as for the encoder-decoder.

The Transformer stacks are scaling.models.encoder_decoder's `encode` and `decode`; only the
image front end is new here.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn

from scaling.models.embeddings import Embeddings
from scaling.models.encoder_decoder import decode, encode
from scaling.nn.layers import Dense
from scaling.nn.vision import grid_to_sequence
from scaling.nn.vision_layers import ConvBackbone, SelfAttention2d
from scaling.spec import ModelSpec


class Captioner(nn.Module):
    """batch['images'] [B, height, width, 3] float, batch['decoder_inputs'] [B, T] ->
    logits [B, T, V_pad].

    Attributes:
      spec: the Transformer (width, heads, layers, vocabulary, ...).
      widths, depths, groups: the ConvBackbone's stages (see scaling.nn.vision_layers).
      image_attention: SAGAN self-attention on the backbone's feature map before the
        projection to width D.
    """
    spec: ModelSpec
    widths: Sequence[int] = (32, 64)
    depths: Sequence[int] = (1, 1)
    groups: int = 8
    image_attention: bool = False

    @nn.compact
    def __call__(self, batch, train: bool = False):
        s = self.spec
        images, tgt = batch["images"], batch["decoder_inputs"]
        grid = ConvBackbone(self.widths, self.depths, self.groups, s.compute_dtype,
                            name="backbone")(images)  # [B, Y, X, C]
        if self.image_attention:
            grid, _ = SelfAttention2d(dtype=s.compute_dtype, name="image_attention")(grid)
        grid = Dense(s.width, ("conv_in", "embed"), dtype=s.compute_dtype, kernels=s.kernels,
                     name="image_proj")(grid)  # [B, Y, X, D]
        x = grid_to_sequence(grid)  # [B, Y·X, D]: every cell is a token, none is padding
        x = encode(s, x, None, not train)
        embed = Embeddings(s, name="embed")  # the caption's embedding and output projection
        return decode(s, embed, tgt, x, None, not train)
