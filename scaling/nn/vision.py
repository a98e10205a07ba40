"""Pure functions for attention over images: convolutions, GroupNorm, the SAGAN self-attention
module for feature maps, and the grid-to-sequence step with 2-D sinusoidal positions.

The reference math, written plainly and differentiated by JAX; the Linen modules that create
the parameters are in `scaling.nn.vision_layers`. Feature maps are channels-last.

Axis letters used in the shapes and einsum strings of this file (the text legend of
`scaling.nn.attention` uses H for the head dimension and N for heads, so the image axes get
letters of their own):
    B  batch                 Y  grid rows (height)      X  grid columns (width)
    C  feature-map channels  E  query/key channels (C' of SAGAN)   U  value channels
    P  query positions       Q  key positions (both Y·X flattened row-major)
    D  model width (the channels of the feature grid handed to the Transformer)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from scaling.nn.functional import sinusoidal_positions

Array = jax.Array


def conv2d(x: Array, kernel: Array, bias: Array | None = None, stride: int = 1) -> Array:
    """x [B, Y, X, C] * kernel [I, J, C, O] (+ bias [O]) -> [B, ceil(Y/s), ceil(X/s), O].

    Cross-correlation as in every deep-learning library, with symmetric zero padding of
    (I-1)/2 rows and (J-1)/2 columns (odd windows), so a stride-1 convolution keeps the grid
    and a stride-s one gives ceil(Y/s) x ceil(X/s).
    """
    kh, kw = kernel.shape[:2]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel: window {kh}x{kw} must have odd sides (3x3, 1x1, ...)")
    y = jax.lax.conv_general_dilated(
        x, kernel, window_strides=(stride, stride),
        padding=((kh // 2, kh // 2), (kw // 2, kw // 2)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))  # lax's letters: N batch, H/W grid, I/O
    return y if bias is None else y + bias


def group_norm(x: Array, scale: Array, bias: Array, groups: int, eps: float = 1e-5) -> Array:
    """GroupNorm (Wu & He 2018): normalise each example over (Y, X, the channels of a group).

    x [B, Y, X, C], scale and bias [C]; C must divide by `groups`. The statistics are each
    example's own, so there is no running batch-statistics state: training and evaluation
    compute the same function, and the result does not depend on how the batch is split
    over devices. Statistics in float32 for bf16 inputs; the result has x's dtype.
    """
    b, y, xx, c = x.shape
    if c % groups:
        raise ValueError(f"groups: {c} channels are not divisible by groups={groups}")
    g = x.astype(jnp.float32).reshape(b, y, xx, groups, c // groups)
    mean = jnp.mean(g, axis=(1, 2, 4), keepdims=True)
    var = jnp.mean(jnp.square(g - mean), axis=(1, 2, 4), keepdims=True)
    z = ((g - mean) * jax.lax.rsqrt(var + eps)).reshape(b, y, xx, c)
    return (z * scale + bias).astype(x.dtype)


def backbone_grid(height: int, width: int, num_stages: int) -> tuple[int, int]:
    """The feature grid (rows, cols) of a backbone with `num_stages` stages on an image.

    Every stage after the first halves the grid (stride 2, rounding up), so the total stride
    is 2^(num_stages-1). Raises a one-line ValueError, before anything is compiled, when the
    image is smaller than that stride.
    """
    if num_stages < 1:
        raise ValueError(f"widths: the backbone needs at least one stage, got {num_stages}")
    stride = 2 ** (num_stages - 1)
    if height < stride or width < stride:
        raise ValueError(f"images: {height}x{width} is smaller than the backbone's total stride "
                         f"{stride} ({num_stages} stages in widths); use images of at least "
                         f"{stride}x{stride} or fewer stages")
    rows, cols = height, width
    for _ in range(num_stages - 1):
        rows, cols = -(-rows // 2), -(-cols // 2)
    return rows, cols


def sagan_attention(x: Array, w_query: Array, w_key: Array, w_value: Array, w_out: Array,
                    gamma: Array, b_query: Array | None = None, b_key: Array | None = None,
                    b_value: Array | None = None, b_out: Array | None = None
                    ) -> tuple[Array, Array]:
    """The self-attention module of SAGAN (Zhang et al. 2019) on a feature map.

    Every 1x1 convolution is a per-position matrix product. With the paper's names
    (f the keys, g the queries, h the values, v the output convolution):
        g = x W_query [P, E],  f = x W_key [Q, E],  h = x W_value [Q, U]
        s_pq = g_p · f_q  (unscaled, as in the paper),  β_p = softmax_q(s_p)
        o_p = (Σ_q β_pq h_q) W_out,  y_p = γ o_p + x_p
    γ is a learned scalar, initialised to 0, so the module starts as the identity and learns
    how much non-local evidence to mix in (the learned residual gate).

    Args:
      x: [B, Y, X, C] feature map.
      w_query, w_key: [C, E]; w_value: [C, U]; w_out: [U, C]; b_*: their optional biases.
      gamma: scalar gate.

    Returns:
      (y [B, Y, X, C] in x's dtype, weights [B, P, Q] float32: row p is query position p's
      distribution over the key positions, both flattened row-major over the Y x X grid).
    """
    b, rows, cols, c = x.shape
    seq = x.reshape(b, rows * cols, c)  # [B, P, C]

    def proj(w, bias):
        y = jnp.einsum("BPC,CE->BPE", seq, w)
        return y if bias is None else y + bias

    g, f, h = proj(w_query, b_query), proj(w_key, b_key), proj(w_value, b_value)
    logits = jnp.einsum("BPE,BQE->BPQ", g, f, preferred_element_type=jnp.float32)
    weights = jax.nn.softmax(logits, axis=-1)  # float32: softmax over the keys Q
    o = jnp.einsum("BPQ,BQU->BPU", weights.astype(h.dtype), h)
    o = jnp.einsum("BPU,UC->BPC", o, w_out)
    if b_out is not None:
        o = o + b_out
    y = gamma.astype(x.dtype) * o.reshape(x.shape).astype(x.dtype) + x
    return y, weights


def sinusoidal_positions_2d(rows: int, cols: int, width: int, dtype=jnp.float32) -> Array:
    """[Y, X, D] fixed 2-D encoding: the first D/2 channels encode the row, the last the column.

    Each half is the 1-D encoding of Vaswani et al. (scaling.nn.functional's
    sinusoidal_positions) with D/2 channels, so PE[r, c] = concat(PE1(r), PE1(c)).
    """
    if width % 2:
        raise ValueError(f"width: the 2-D positional encoding needs an even width, got {width}")
    row = sinusoidal_positions(rows, width // 2, dtype)  # [Y, D/2]
    col = sinusoidal_positions(cols, width // 2, dtype)  # [X, D/2]
    return jnp.concatenate([jnp.broadcast_to(row[:, None], (rows, cols, width // 2)),
                            jnp.broadcast_to(col[None, :], (rows, cols, width // 2))], axis=-1)


def grid_to_sequence(grid: Array, add_positions: bool = True) -> Array:
    """[B, Y, X, D] feature grid -> [B, Y·X, D] sequence, row-major, + 2-D sinusoidal positions.

    Position y·X + x of the sequence is grid cell (y, x), so the Transformer encoder and the
    decoder's cross-attention consume image features exactly as they consume tokens.
    """
    b, rows, cols, d = grid.shape
    if add_positions:
        grid = grid + sinusoidal_positions_2d(rows, cols, d, grid.dtype)
    return grid.reshape(b, rows * cols, d)
