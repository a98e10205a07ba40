"""XLNet (Yang et al. 2019): two-stream relative-position attention for permutation LM.

batch['inputs'] [B, T] (+ 'perm_ranks' [B, T], 'token_types' [B, T]) -> logits [B, T, V_pad]

Two streams run through the same layers and weights:
  content stream h   starts at the word embeddings; position i sees the positions that come
                     no later than i in the factorization order (itself included), like
                     a standard Transformer-XL hidden state.
  query stream g     starts at the learned `mask_emb`; position i sees only the content of
                     positions strictly earlier in the order, so it knows *where* it is (by
                     relative positions) but never its own token. Its keys and values are the
                     content stream's.
The logits are the query stream's last layer through the tied embedding plus an LM bias
(under the `head` key, so `scaling params` reports the backbone as published: 360,268,800
for XLNet-Large). Which positions count in the loss (partial prediction) is decided by the
data (`weights`, see scaling.data.objectives.permutation_lm), not here.

Without 'perm_ranks' the order is the identity: the content stream is then a causal
relative-position Transformer. The final content stream is sown as intermediates/content.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from scaling.nn.blocks import BlockStack
from scaling.models.embeddings import Embeddings, mask_padded_vocab
from scaling import kernels as kernel_sets
from scaling.nn import relative
from scaling.nn.layers import LayerNorm, Mlp, _param, constrain, dense_init, dropout, zeros
from scaling.spec import ModelSpec

_HEAD_AXES = ("heads", "head_dim")
_BIAS_NAMES = ("r_w_bias", "r_r_bias", "r_s_bias")


def _relative_biases(module: nn.Module, spec: ModelSpec) -> dict:
    """r_w_bias (content), r_r_bias (position) and r_s_bias (segment), each [N, H]."""
    shape = (spec.num_heads, spec.head_dim)
    return {name: _param(module, name, dense_init, shape, _HEAD_AXES) for name in _BIAS_NAMES}


class TwoStreamAttention(nn.Module):
    """Relative multi-head attention applied to the content and the query stream.

    Parameters (per layer): w_q, w_k, w_v, w_r [D, N, H], w_o [N, H, D], no biases;
    seg_embed [2, N, H]; and r_w/r_r/r_s_bias [N, H] unless the model shares them.
    """
    spec: ModelSpec

    @nn.compact
    def __call__(self, h, g, r_enc, segments, content_mask, query_mask, shared_biases=None):
        """h, g: [B, T, D]; r_enc: [2T, D]; segments: [B, T]; masks: [B, 1, T, T].

        Returns the attention outputs (after the output projection) of both streams.
        """
        s = self.spec
        d, n, hd = s.width, s.num_heads, s.head_dim
        dtype = s.compute_dtype

        def kernel(name):
            return _param(self, name, dense_init, (d, n, hd),
                          ("embed", "heads", "head_dim")).astype(dtype)

        w_q, w_k, w_v, w_r = (kernel(f"w_{x}") for x in "qkvr")
        w_o = _param(self, "w_o", dense_init, (n, hd, d), ("heads", "head_dim", "embed"))
        seg_embed = _param(self, "seg_embed", dense_init, (2, n, hd),
                           ("types", "heads", "head_dim")).astype(dtype)
        biases = shared_biases if shared_biases is not None else _relative_biases(self, s)
        biases = {k: v.astype(dtype) for k, v in biases.items()}

        ops = kernel_sets.get(s.kernels, s.attention_impl)
        k = ops.dense(h, w_k)                                    # [B, T, N, H]
        v = ops.dense(h, w_v)
        r = jnp.einsum("PD,DNH->PNH", r_enc.astype(dtype), w_r)  # [2T, N, H]

        def attend(x, mask):
            y = relative.relative_attention(
                ops.dense(x, w_q), k, v, r, biases["r_w_bias"], biases["r_r_bias"],
                mask=mask, r_s_bias=biases["r_s_bias"], seg_embed=seg_embed, segments=segments,
                attend=ops.attention)
            return ops.dense(y, w_o.astype(dtype), in_dims=2)

        return attend(h, content_mask), attend(g, query_mask)


class XLNetBlock(nn.Module):
    """Two-stream attention, then (per stream, shared weights) post-LN residual and MLP."""
    spec: ModelSpec
    deterministic: bool = True
    scan_carry: bool = False  # return (streams, None) as nn.scan expects

    @nn.compact
    def __call__(self, streams, r_enc, segments, content_mask, query_mask, shared_biases=None):
        s = self.spec
        h, g = streams
        attn_h, attn_g = TwoStreamAttention(s, name="attn")(
            h, g, r_enc, segments, content_mask, query_mask, shared_biases)
        ln_attn = LayerNorm(s.layer_norm_eps, s.kernels, name="ln_attn")
        mlp = Mlp(s.mlp_dim, s.activation, s.mlp_bias, s.compute_dtype, s.kernels, name="mlp")
        ln_mlp = LayerNorm(s.layer_norm_eps, s.kernels, name="ln_mlp")

        def finish(x, attn_out):  # post-LN, as XLNet: LN(x + f(x)) twice
            x = ln_attn(x + dropout(attn_out, s.dropout, self.deterministic))
            return constrain(ln_mlp(x + dropout(mlp(x), s.dropout, self.deterministic)))

        out = (finish(h, attn_h), finish(g, attn_g))
        return (out, None) if self.scan_carry else out


class XLNet(nn.Module):
    """The XLNet pretraining model; see the module docstring for the batch keys."""
    spec: ModelSpec

    @nn.compact
    def __call__(self, batch, train: bool = False):
        s = self.spec
        if s.norm != "post":
            raise ValueError(f"model.norm: the xlnet family is post-LN; got {s.norm!r}")
        ids = batch["inputs"]
        b, t = ids.shape
        ranks = batch.get("perm_ranks")
        if ranks is None:  # identity order: a causal relative-position model
            ranks = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        segments = batch.get("token_types")
        segments = jnp.zeros_like(ids) if segments is None else segments
        content_mask, query_mask = relative.two_stream_masks(ranks)     # [B, 1, T, T] each
        deterministic = not train

        embed = Embeddings(s, name="embed")  # word embeddings only: positions are relative
        h = embed(ids, deterministic=deterministic)                      # [B, T, D]
        # XLNet stores mask_emb as [1, 1, D]; kept as [D] here (same 1,024 parameters for
        # Large) so that no parameter carries a size-1 axis named like a sharded one.
        mask_emb = _param(self, "mask_emb", dense_init, (s.width,), ("embed",))
        g = jnp.broadcast_to(mask_emb.astype(h.dtype), h.shape)
        g = constrain(dropout(g, s.dropout, deterministic))
        r_enc = dropout(relative.relative_sinusoid(t, s.width, s.compute_dtype), s.dropout,
                        deterministic)                                   # [2T, D]
        shared = None if s.untie_relative_bias else _relative_biases(self, s)

        h, g = BlockStack(XLNetBlock, s, s.num_layers, deterministic, name="blocks")(
            (h, g), r_enc, segments, content_mask, query_mask, shared)
        self.sow("intermediates", "content", h)
        g = dropout(g, s.dropout, deterministic)
        return LmHead(s, name="head")(g, embed)


class LmHead(nn.Module):
    """Tied output logits plus XLNet's LM bias ([V_pad], counted apart from the backbone)."""
    spec: ModelSpec

    @nn.compact
    def __call__(self, x, embed: Embeddings):
        s = self.spec
        logits = embed.tokens.attend(x)
        if s.output_bias:
            logits = logits + _param(self, "bias", zeros, (s.padded_vocab_size,),
                                     ("vocab",)).astype(logits.dtype)
        return mask_padded_vocab(logits, s)
