"""Input embeddings shared by every family: tokens + positions (+ token types)."""
from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp

from scaling.spec import ModelSpec
from scaling.nn import functional as F
from scaling.nn.layers import Embed, LayerNorm, constrain

# The byte and SentencePiece tokenizers pad with id 0; an hf:<dir> tokenizer may not (RoBERTa:
# 1), so batches carry masks and models use this only as a fallback (encoder_decoder, whose
# objectives refuse such tokenizers) or where any id does (sample's unread buffer tail).
PAD_ID = 0


class Embeddings(nn.Module):
    """ids [B, T] -> [B, T, D]; `attend` turns [B, T, D] back into vocabulary logits.

    The token table has spec.padded_vocab_size rows (Megatron pads 50,257 to 51,200 so the
    vocabulary splits evenly over tensor-parallel devices); logits of the padding rows are
    pushed to a large negative value so they never receive probability.
    """
    spec: ModelSpec

    def setup(self):
        s = self.spec
        self.tokens = Embed(s.padded_vocab_size, s.width, kernels=s.kernels, name="tokens")
        if s.positions == "learned":
            self.position_table = Embed(s.max_len, s.width, axes=("positions", "embed"),
                                        name="positions")
        if s.type_vocab_size:
            self.type_table = Embed(s.type_vocab_size, s.width, axes=("types", "embed"),
                                    name="types")
        if s.embedding_norm:
            self.norm = LayerNorm(s.layer_norm_eps, s.kernels, name="ln")
        # Declared here: a setup() module cannot create submodules in __call__ (layers.dropout).
        self.drop = nn.Dropout(s.dropout)

    def __call__(self, ids, token_types=None, deterministic: bool = True):
        s = self.spec
        dtype = s.compute_dtype
        length = ids.shape[1]
        x = self.tokens(ids, dtype)
        if s.embed_scale:
            x = x * math.sqrt(s.width)
        if s.positions == "learned":
            rows = jnp.arange(length) + s.position_offset  # RoBERTa: rows 0-1 unused
            x = x + self.position_table(rows, dtype)[None]
        elif s.positions == "sinusoidal":
            x = x + F.sinusoidal_positions(length, s.width, dtype)[None]
        if s.type_vocab_size:
            types = jnp.zeros_like(ids) if token_types is None else token_types
            x = x + self.type_table(types, dtype)
        if s.embedding_norm:
            x = self.norm(x)
        if s.dropout and not deterministic:
            x = self.drop(x, deterministic=False)
        return constrain(x)

    def attend(self, x):
        """Tied output logits [B, T, V_pad], padding rows masked out."""
        logits = self.tokens.attend(x)
        return mask_padded_vocab(logits, self.spec)


def mask_padded_vocab(logits, spec: ModelSpec):
    if spec.padded_vocab_size == spec.vocab_size:
        return logits
    real = jnp.arange(spec.padded_vocab_size) < spec.vocab_size
    return jnp.where(real, logits, jnp.asarray(-1e9, logits.dtype))
