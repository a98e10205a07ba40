"""Transformer blocks (Linen) and the stack that repeats them, optionally scanned and remat'd.

Each sub-block (attention, cross-attention, MLP) is wrapped the same way:
    norm='pre'  (GPT-2):           x + Dropout(f(LN(x)))
    norm='post' (Vaswani, BERT):   LN(x + Dropout(f(x)))
Activations are sharding-constrained only at block edges ([B, T, D] -> batch/length/embed).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from scaling.nn.attention import CAUSAL
from scaling.nn.layers import (ATTENTION_WEIGHTS, LayerNorm, Mlp, MultiHeadAttention, constrain,
                                dropout)
from scaling.spec import ModelSpec

REMAT_POLICIES = {
    "full": None,  # save nothing: recompute the whole block in the backward pass
    "dots": jax.checkpoint_policies.checkpoint_dots,  # keep matmul outputs, recompute the rest
}


def _residual(spec: ModelSpec, x, sublayer, norm: LayerNorm, deterministic: bool):
    if spec.norm == "pre":
        return x + dropout(sublayer(norm(x)), spec.dropout, deterministic)
    return norm(x + dropout(sublayer(x), spec.dropout, deterministic))


class EncoderBlock(nn.Module):
    """Self-attention (bidirectional, or causal) followed by the MLP."""
    spec: ModelSpec
    deterministic: bool = True
    scan_carry: bool = False  # return (x, None) as nn.scan expects
    causal: bool = False      # exactly causal self-attention (mask must then be None)

    @nn.compact
    def __call__(self, x, mask=None):
        s = self.spec
        attn = MultiHeadAttention(s.num_heads, s.attention_bias, s.compute_dtype,
                                  s.attention_impl, s.attention_block, s.kernels, name="attn")
        mlp = Mlp(s.mlp_dim, s.activation, s.mlp_bias, s.compute_dtype, s.kernels, name="mlp")
        x = _residual(s, x, lambda h: attn(h, mask=CAUSAL if self.causal else mask),
                      LayerNorm(s.layer_norm_eps, s.kernels, name="ln_attn"), self.deterministic)
        x = _residual(s, x, mlp, LayerNorm(s.layer_norm_eps, s.kernels, name="ln_mlp"),
                      self.deterministic)
        x = constrain(x)
        return (x, None) if self.scan_carry else x


class DecoderBlock(nn.Module):
    """Masked self-attention, cross-attention over encoder outputs, then the MLP."""
    spec: ModelSpec
    deterministic: bool = True
    scan_carry: bool = False

    @nn.compact
    def __call__(self, x, self_mask, encoded, cross_mask):
        s = self.spec
        ln = lambda name: LayerNorm(s.layer_norm_eps, s.kernels, name=name)  # noqa: E731
        self_attn = MultiHeadAttention(s.num_heads, s.attention_bias, s.compute_dtype,
                                       s.attention_impl, s.attention_block, s.kernels,
                                       name="attn")
        cross_attn = MultiHeadAttention(s.num_heads, s.attention_bias, s.compute_dtype,
                                        s.attention_impl, kernels=s.kernels, name="cross_attn")
        mlp = Mlp(s.mlp_dim, s.activation, s.mlp_bias, s.compute_dtype, s.kernels, name="mlp")
        x = _residual(s, x, lambda h: self_attn(h, mask=self_mask), ln("ln_attn"),
                      self.deterministic)
        x = _residual(s, x, lambda h: cross_attn(h, kv=encoded, mask=cross_mask),
                      ln("ln_cross"), self.deterministic)
        x = _residual(s, x, mlp, ln("ln_mlp"), self.deterministic)
        x = constrain(x)
        return (x, None) if self.scan_carry else x


class BlockStack(nn.Module):
    """`num_layers` copies of `block`, applied in order to x; extra args are shared by all.

    With spec.scan_layers the layers are one `nn.scan` (parameters stacked on a leading
    'layers' axis), so compile time does not grow with depth. spec.remat wraps each block in
    `nn.remat` with the named policy to trade recomputation for activation memory.
    """
    block: Any  # EncoderBlock or DecoderBlock
    spec: ModelSpec
    num_layers: int
    deterministic: bool = True

    @nn.compact
    def __call__(self, x, *args):
        """Apply the layers; args[0] may be CAUSAL ("causal") instead of a mask array.

        A string cannot travel through nn.scan / nn.remat as an argument, so causality
        becomes the blocks' `causal` attribute.
        """
        s = self.spec
        block_cls = self.block
        extra = {}
        if args and isinstance(args[0], str):
            if args[0] != CAUSAL:
                raise ValueError(f"mask: unknown {args[0]!r}; use an array, None or {CAUSAL!r}")
            extra, args = {"causal": True}, (None, *args[1:])
        if s.remat != "none":
            # Under scan, CSE cannot merge the recomputation, so prevent_cse is not needed.
            block_cls = nn.remat(block_cls, policy=REMAT_POLICIES[s.remat],
                                 prevent_cse=not s.scan_layers)
        if s.scan_layers:
            scanned = nn.scan(block_cls,
                              # sown attention weights (when asked for) stack like params
                              variable_axes={"params": 0, ATTENTION_WEIGHTS: 0},
                              split_rngs={"params": True, "dropout": True},
                              in_axes=(nn.broadcast,) * len(args),
                              length=self.num_layers,
                              metadata_params={nn.PARTITION_NAME: "layers"})
            x, _ = scanned(s, self.deterministic, True, name="layers", **extra)(x, *args)
            return x
        for i in range(self.num_layers):
            x = block_cls(s, self.deterministic, name=f"layer_{i}", **extra)(x, *args)
        return x
