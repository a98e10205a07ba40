"""Kernels for GPU: attention through `jax.nn.dot_product_attention`.

Everything but attention is the reference (scaling.nn). On a GPU, jax.nn.dot_product_attention
runs cuDNN's fused flash attention where it applies (fp16/bf16, supported head dims) and
XLA's own attention otherwise; elsewhere it is XLA's, which is how tests/test_kernels.py
checks this module against the reference on CPU.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from scaling.nn.attention import CAUSAL

Array = jax.Array


def attention(q: Array, k: Array, v: Array, mask: Array | str | None = None,
              bias: Array | None = None, block: int = 128) -> Array:
    """`scaling.nn.attention.attention` by jax.nn.dot_product_attention (block: unused).

    A query whose keys are all masked gets zeros, as in the reference.
    """
    del block  # the library picks its own tiling
    if bias is not None:
        bias = bias.astype(q.dtype)  # the library wants the bias in the inputs' dtype
    if isinstance(mask, str):
        if mask != CAUSAL:
            raise ValueError(f"mask: unknown {mask!r}; use an array, None or {CAUSAL!r}")
        return jax.nn.dot_product_attention(q, k, v, bias=bias, is_causal=True)
    out = jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask)
    if mask is not None:
        any_key = jnp.any(jnp.broadcast_to(mask, mask.shape[:-1] + (k.shape[1],)), axis=-1)
        out = jnp.where(jnp.moveaxis(any_key, 1, 2)[..., None], out, 0.0)
    return out
