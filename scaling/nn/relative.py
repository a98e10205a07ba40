"""Transformer-XL / XLNet relative-position attention and two-stream masks, as pure functions.

Axis letters as in `scaling.nn.attention` (B batch, T query length, S key length, N heads,
H head dim, D width), plus
    P  relative distances: the 2T values T, T-1, ..., -T+1 (P = 2T, keys = queries, no memory)

The score of query i for key j (Dai et al. 2019, eq. 4; Yang et al. 2019, section 2.5):

    ( (q_i + r_w_bias)·k_j                       content term
    + (q_i + r_r_bias)·r_{i-j}                   position term, r = sinusoid(i - j) W_r
    + (q_i + r_s_bias)·seg_embed[s_ij] ) / sqrt(H)   segment term, s_ij = (seg_i != seg_j)

The content term is what `dot_product_attention` already computes for queries q + r_w_bias;
the position and segment terms are computed here as its additive `bias`, so masking and the
softmax stay in one place (the attention function).

Two-stream masks follow a factorization order given as ranks: rank[t] is the step at which
position t is generated. The content stream at i sees j iff rank[j] <= rank[i] (itself
included); the query stream at i sees j iff rank[j] < rank[i] (not its own token).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from scaling.nn.attention import attention

Array = jax.Array


def relative_distances(length: int) -> np.ndarray:
    """[P = 2T] the distances i - j that the position term indexes: T, T-1, ..., -T+1.

    Entry m is distance T - m; query i and key j use entry T - i + j (see `rel_shift`).
    Distance T itself is never used; it pads P to 2T, as in XLNet (klen + qlen).
    """
    return np.arange(length, -length, -1, dtype=np.float64)


def relative_sinusoid(length: int, width: int, dtype=jnp.float32) -> Array:
    """[P, D] sinusoidal encodings of `relative_distances(length)` (XLNet's layout).

    enc[m] = concat(sin(d_m * f), cos(d_m * f)) with f_i = 1 / 10000^(2i/D): sines in the
    first half, cosines in the second (Transformer-XL / XLNet, not Vaswani's interleaving).
    Computed with numpy so that it is a compile-time constant.
    """
    if width % 2:
        raise ValueError(f"model.width: relative sinusoids need an even width, got {width}")
    inv_freq = 1.0 / np.power(10000.0, np.arange(0, width, 2, dtype=np.float64) / width)
    angle = relative_distances(length)[:, None] * inv_freq[None, :]
    return jnp.asarray(np.concatenate([np.sin(angle), np.cos(angle)], axis=-1), dtype=dtype)


def rel_shift(x: Array) -> Array:
    """[B, N, T, P=2T] scores by relative-distance index -> [B, N, T, T] scores by key.

    out[..., i, j] = x[..., i, T - i + j], i.e. the score at distance i - j. The
    Transformer-XL trick: reinterpret the [T, P] block as [P, T], drop its first row, and
    reinterpret as [T, P - 1]; each row is then shifted left by one more than the row above.
    Only reshapes and one slice, no gather.
    """
    b, n, t, p = x.shape
    if p != 2 * t:
        raise ValueError(f"rel_shift: expected [B, N, T, 2T] scores, got {x.shape}")
    x = x.reshape(b, n, p, t)[:, :, 1:, :]        # [B, N, P-1, T]
    x = x.reshape(b, n, t, p - 1)[:, :, :, :t]    # [B, N, T, T]
    return x


def relative_bias(q: Array, r: Array, r_r_bias: Array, r_s_bias: Array | None = None,
                  seg_embed: Array | None = None, segments: Array | None = None) -> Array:
    """The position (+ segment) terms of the scores, already scaled by 1/sqrt(H).

    Args:
      q: [B, T, N, H] queries (without any bias).
      r: [P=2T, N, H] projected relative encodings (`relative_sinusoid(T, D) @ W_r`).
      r_r_bias: [N, H] position bias (XLNet's r_r_bias, Transformer-XL's v).
      r_s_bias: [N, H] segment bias; with seg_embed and segments, adds the segment term.
      seg_embed: [2, N, H] encodings of "same segment" (row 0) and "different" (row 1).
      segments: [B, T] segment ids; query i and key j are "different" iff they differ.

    Returns:
      [B, N, T, T] float32, to pass as `bias` to `dot_product_attention`.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    by_distance = jnp.einsum("BTNH,PNH->BNTP", q + r_r_bias, r,
                             preferred_element_type=jnp.float32)
    bias = rel_shift(by_distance)
    if segments is not None:
        per_type = jnp.einsum("BTNH,KNH->BNTK", q + r_s_bias, seg_embed,
                              preferred_element_type=jnp.float32)      # [B, N, T, 2]
        different = (segments[:, :, None] != segments[:, None, :])[:, None]  # [B, 1, T, S]
        bias = bias + jnp.where(different, per_type[..., 1:2], per_type[..., 0:1])
    return bias * scale


def relative_attention(q: Array, k: Array, v: Array, r: Array, r_w_bias: Array,
                       r_r_bias: Array, mask: Array | None = None,
                       r_s_bias: Array | None = None, seg_embed: Array | None = None,
                       segments: Array | None = None, attend=attention) -> Array:
    """Multi-head attention with relative positions (and relative segments).

    Args:
      q: [B, T, N, H] queries; k, v: [B, T, N, H] keys and values (self-attention: S = T).
      r: [2T, N, H] projected relative encodings.
      r_w_bias, r_r_bias: [N, H] content and position biases.
      mask: boolean, broadcastable to [B, N, T, T]; True where a query may attend a key.
      r_s_bias, seg_embed, segments: the segment term (see `relative_bias`); optional.
      attend: the attention function (scaling.nn.attention.attention, or a kernel set's).

    Returns:
      [B, T, N, H]; a query with no visible key gets zeros (dot_product_attention's rule).
    """
    bias = relative_bias(q, r, r_r_bias, r_s_bias, seg_embed, segments)
    return attend(q + r_w_bias, k, v, mask=mask, bias=bias)


# ----------------------------------------------------------------------------- factorization order

def check_permutation(ranks, name: str = "perm_ranks") -> None:
    """Raises ValueError unless every row of `ranks` ([T] or [B, T]) is a permutation of 0..T-1."""
    ranks = np.asarray(ranks)
    rows = ranks.reshape(-1, ranks.shape[-1]) if ranks.ndim else ranks.reshape(1, 1)
    length = rows.shape[-1]
    expected = np.arange(length)
    for b, row in enumerate(rows):
        if not np.issubdtype(row.dtype, np.integer) or not np.array_equal(np.sort(row), expected):
            raise ValueError(f"{name}: row {b} is not a permutation of 0..{length - 1} "
                             f"(got {row.tolist()[:16]}{' ...' if length > 16 else ''})")


def order_to_ranks(order) -> np.ndarray:
    """A factorization order (positions in generation order) -> ranks (step of each position).

    Raises ValueError if `order` ([T] or [B, T]) is not a permutation.
    """
    order = np.asarray(order)
    check_permutation(order, "factorization order")
    ranks = np.empty_like(order, dtype=np.int32)
    np.put_along_axis(ranks, order.astype(np.int64),
                      np.broadcast_to(np.arange(order.shape[-1], dtype=np.int32), order.shape),
                      axis=-1)
    return ranks


def two_stream_masks(ranks) -> tuple[Array, Array]:
    """Content and query masks [B, 1, T, T] from ranks [B, T] of a factorization order.

    content[b, 0, i, j] = rank[j] <= rank[i]  (sees earlier positions in the order and itself)
    query[b, 0, i, j]   = rank[j] <  rank[i]  (sees earlier positions only, never its token)

    Concrete (host) ranks are checked to be permutations (ValueError otherwise); traced ranks
    inside jit cannot be checked and are trusted (the data pipeline builds them).
    """
    if not isinstance(ranks, jax.core.Tracer):
        check_permutation(ranks)
    ranks = jnp.asarray(ranks)
    earlier_or_same = ranks[:, None, :] <= ranks[:, :, None]   # [B, T(query), T(key)]
    same = jnp.eye(ranks.shape[-1], dtype=bool)[None]
    content = earlier_or_same[:, None]
    query = (earlier_or_same & ~same)[:, None]
    return content, query
