"""Scaled dot-product attention and its masks, as pure functions on arrays.

Axis letters used in every shape and einsum string of this package:
    B  batch                 T  query length           S  key/value length
    N  attention heads       H  head dimension         D  model width
    F  MLP hidden width      V  vocabulary             L  layers

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
      [B, T, N, H] in v's dtype. The logits and softmax are computed in float32 whatever the
      input dtype, since bf16 softmax loses too much precision. A query whose keys are all
      masked gets an output of exactly zero instead of NaN.
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
    return jnp.einsum("BNTS,BSNH->BTNH", probs.astype(v.dtype), v)


CAUSAL = "causal"  # pass as `mask` to say "exactly the causal mask", so kernels can use it


def causal_blocked_attention(q: Array, k: Array, v: Array, block: int) -> Array:
    """Causal self-attention that never computes fully masked blocks of the score matrix.

    Query block i (positions [i*block, (i+1)*block)) attends only keys [0, (i+1)*block):
    with C blocks that is C(C+1)/2 of the C² score blocks (10 of 16 for C=4), saving work in
    the score and value matmuls, the softmax and their gradients. Each block is the
    reference `dot_product_attention`, so the numerics are the same.
    """
    t = q.shape[1]
    if t % block or t <= block:
        return dot_product_attention(q, k, v, causal_mask(t))
    outs = []
    for i in range(t // block):
        end = (i + 1) * block
        outs.append(dot_product_attention(q[:, i * block:end], k[:, :end], v[:, :end],
                                          causal_mask(block, end)))
    return jnp.concatenate(outs, axis=1)


ATTENTION_IMPLS = ("xla", "jax", "blocked")


def attention(q: Array, k: Array, v: Array, mask: Array | str | None = None,
              bias: Array | None = None, impl: str = "xla", block: int = 128) -> Array:
    """Dispatch to an attention implementation with the same contract as above.

    Args:
      mask: a boolean mask, None, or CAUSAL ("causal") for exactly the causal mask of
        self-attention, which lets "jax" and "blocked" skip the masked half.
      impl: "xla" is the einsum reference; "jax" calls `jax.nn.dot_product_attention`
        (cuDNN flash attention on GPU where it applies); "blocked" computes causal
        attention block by block (see causal_blocked_attention) and is the reference
        otherwise.
      block: query/key block length for impl="blocked".
    """
    causal = isinstance(mask, str)
    if causal and mask != CAUSAL:
        raise ValueError(f"mask: unknown {mask!r}; use an array, None or {CAUSAL!r}")
    if impl == "blocked" and causal and bias is None:
        return causal_blocked_attention(q, k, v, block)
    if impl in ("xla", "blocked"):
        return dot_product_attention(q, k, v, causal_mask(q.shape[1], k.shape[1])
                                     if causal else mask, bias)
    if impl == "jax":
        if causal:
            return jax.nn.dot_product_attention(q, k, v, bias=bias, is_causal=True)
        out = jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask)
        if mask is not None:  # same fully-masked-row contract as the reference
            any_key = jnp.any(jnp.broadcast_to(mask, mask.shape[:-1] + (k.shape[1],)), axis=-1)
            out = jnp.where(jnp.moveaxis(any_key, 1, 2)[..., None], out, 0.0)
        return out
    raise ValueError(f"model.attention_impl: unknown {impl!r}; allowed: "
                     + ", ".join(repr(i) for i in ATTENTION_IMPLS))


def split_heads(x: Array, kernel: Array, bias: Array | None = None) -> Array:
    """Project [B, T, D] inputs to [B, T, N, H] heads with a [D, N, H] kernel."""
    y = jnp.einsum("BTD,DNH->BTNH", x, kernel)
    return y if bias is None else y + bias


def merge_heads(y: Array, kernel: Array, bias: Array | None = None) -> Array:
    """Concatenate [B, T, N, H] heads and project to [B, T, D] with a [N, H, D] kernel."""
    out = jnp.einsum("BTNH,NHD->BTD", y, kernel)
    return out if bias is None else out + bias
