"""Scaled dot-product attention and its masks, as pure functions on arrays.

The reference math, differentiated by JAX; faster versions for one backend (blocked causal
attention, cuDNN, splash) live in `scaling.kernels` and are tested equal to it.

Axis letters used in every shape and einsum string of this package:
    B  batch                 T  query length           S  key/value length
    N  attention heads       H  head dimension         D  model width
    F  MLP hidden width      V  vocabulary             L  layers
    M  tokens (B·T flattened: the rows of a matmul in scaling.kernels.xla_cpu)

Masks are boolean with True meaning "may attend", shaped to broadcast against the
attention logits [B, N, T, S] (usually [B, 1, T, S] or [B, 1, 1, S]).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jax.Array


def causal_mask(query_length: int, key_length: int | None = None) -> Array:
    """[1, 1, T, S] mask that lets query i see keys j <= i (+ offset if S > T).

    When S > T the queries are the last T positions of the S keys (e.g. decoding with a
    cache), so query i sits at key position i + S - T.
    """
    key_length = query_length if key_length is None else key_length
    offset = key_length - query_length
    q = jnp.arange(query_length)[:, None] + offset
    k = jnp.arange(key_length)[None, :]
    return (k <= q)[None, None]


def padding_mask(key_valid: Array) -> Array:
    """[B, 1, 1, S] mask from a [B, S] array that is true (or 1) at real, non-pad keys."""
    return key_valid.astype(bool)[:, None, None, :]


def combine_masks(*masks: Array | None) -> Array | None:
    """Logical AND of the masks that are not None (None if all are None)."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = jnp.logical_and(out, m)
    return out


def attention_weights(q: Array, k: Array, mask: Array | None = None,
                      bias: Array | None = None) -> Array:
    """softmax(Q Kᵀ / sqrt(H) + bias, masked): every head's distribution over the keys.

    Args:
      q: [B, T, N, H] queries.
      k: [B, S, N, H] keys.
      mask: boolean, broadcastable to [B, N, T, S]; True where a query may attend a key.
      bias: added to the scaled logits, broadcastable to [B, N, T, S] (e.g. relative positions).

    Returns:
      probs [B, N, T, S] float32 whatever the input dtype (bf16 softmax loses too much
      precision); row (b, n, t) sums to 1 over S, or is all zeros when every key is masked
      (instead of NaN, or a uniform distribution over masked keys).
    """
    head_dim = q.shape[-1]
    logits = jnp.einsum("BTNH,BSNH->BNTS", q, k, preferred_element_type=jnp.float32)
    logits = logits / math.sqrt(head_dim)
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1)
    if mask is not None:
        # A fully masked row softmaxes to a uniform distribution over masked keys; zero it.
        probs = jnp.where(mask, probs, 0.0)
    return probs


def dot_product_attention(q: Array, k: Array, v: Array, mask: Array | None = None,
                          bias: Array | None = None) -> Array:
    """softmax(Q Kᵀ / sqrt(H) + bias, masked) V for every head.

    Args:
      q: [B, T, N, H] queries.
      k: [B, S, N, H] keys.
      v: [B, S, N, H] values.
      mask: boolean, broadcastable to [B, N, T, S]; True where a query may attend a key.
      bias: added to the scaled logits, broadcastable to [B, N, T, S] (e.g. relative positions).

    Returns:
      [B, T, N, H] in v's dtype. The weights are `attention_weights` (float32 logits and
      softmax whatever the input dtype); a query whose keys are all masked gets an output of
      exactly zero instead of NaN.
    """
    probs = attention_weights(q, k, mask, bias)  # [B, N, T, S]
    return jnp.einsum("BNTS,BSNH->BTNH", probs.astype(v.dtype), v)


CAUSAL = "causal"  # pass as `mask` to say "exactly the causal mask", so kernels can use it


def attention(q: Array, k: Array, v: Array, mask: Array | str | None = None,
              bias: Array | None = None) -> Array:
    """`dot_product_attention`, also taking CAUSAL for the causal mask of self-attention.

    Every kernel set's attention has this signature and contract (scaling.kernels).
    """
    if isinstance(mask, str):
        if mask != CAUSAL:
            raise ValueError(f"mask: unknown {mask!r}; use an array, None or {CAUSAL!r}")
        mask = causal_mask(q.shape[1], k.shape[1])
    return dot_product_attention(q, k, v, mask, bias)
