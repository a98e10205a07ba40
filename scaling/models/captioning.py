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
    def __call__(self, batch, train: bool = False, stage: str = "both"):
        """Runs the whole model, or one half of it for decoding (see encode_images).

        stage "both" (training): batch['images'], batch['decoder_inputs'] -> logits;
        "encode": batch['images'] -> memory [B, Y·X, D];
        "decode": batch['memory'], batch['decoder_inputs'] -> logits [B, T, V_pad].
        The halves live in this one compact method so parameter names are the same in all
        three (Linen allows one compact method per module).
        """
        if stage not in ("both", "encode", "decode"):
            raise ValueError(f"Captioner stage={stage!r}: use 'both', 'encode' or 'decode'")
        s = self.spec
        if stage == "decode":
            memory = batch["memory"]
        else:
            images = batch["images"]
            grid = ConvBackbone(self.widths, self.depths, self.groups, s.compute_dtype,
                                name="backbone")(images)  # [B, Y, X, C]
            if self.image_attention:
                grid, _ = SelfAttention2d(dtype=s.compute_dtype, name="image_attention")(grid)
            grid = Dense(s.width, ("conv_in", "embed"), dtype=s.compute_dtype,
                         kernels=s.kernels, name="image_proj")(grid)  # [B, Y, X, D]
            x = grid_to_sequence(grid)  # [B, Y·X, D]: every cell is a token, none is padding
            memory = encode(s, x, None, not train)
            if stage == "encode":
                return memory
        embed = Embeddings(s, name="embed")  # the caption's embedding and output projection
        return decode(s, embed, batch["decoder_inputs"], memory, None, not train)

    def encode_images(self, images, train: bool = False):
        """images [B, height, width, 3] -> memory [B, Y·X, D], the decoder's image tokens.

        With decode_tokens, a caption is decoded with the images encoded once:
        `model.apply(variables, images, method=Captioner.encode_images)`.
        """
        return self({"images": images}, train, stage="encode")

    def decode_tokens(self, memory, decoder_inputs, train: bool = False):
        """memory [B, Y·X, D] (encode_images), decoder_inputs [B, T] -> logits [B, T, V_pad]."""
        return self({"memory": memory, "decoder_inputs": decoder_inputs}, train, stage="decode")
