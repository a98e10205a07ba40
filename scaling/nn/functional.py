"""Pure per-vector functions: positions, projections, LayerNorm, MLP, embedding and logits.

Axis letters as in `scaling.nn.attention` (B batch, T length, D width, F mlp, V vocab), plus
M for the B·T tokens of a batch flattened into the rows of one matrix (see `dense`).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def sinusoidal_positions(length: int, width: int, dtype=jnp.float32) -> Array:
    """[T, D] fixed encoding of Vaswani et al. 2017, section 3.5.

    PE[pos, 2i] = sin(pos / 10000^(2i/D)),  PE[pos, 2i+1] = cos(pos / 10000^(2i/D)).
    Computed with numpy so that it is a compile-time constant.
    """
    pos = np.arange(length, dtype=np.float64)[:, None]
    two_i = np.arange(0, width, 2, dtype=np.float64)[None, :]
    angle = pos / np.power(10000.0, two_i / width)
    pe = np.zeros((length, width), dtype=np.float64)
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : width // 2])
    return jnp.asarray(pe, dtype=dtype)


def tokens(x: Array, feature_dims: int = 1) -> Array:
    """[B, T, ..., *features] -> [M, *features]: every token a row (M = B·T·...)."""
    return x.reshape((-1,) + x.shape[x.ndim - feature_dims:])


def dense(x: Array, kernel: Array, bias: Array | None = None, in_dims: int = 1) -> Array:
    """x [..., *I] · kernel [*I, *O] (+ bias [*O]) -> [..., *O] as one matmul [M, I]·[I, O].

    The same math as einsum("BTD,DF->BTF"), written 2-D on purpose: for the 3-D form XLA
    CPU computes the weight gradient (contracting both B and T) through a transposing copy
    of the output gradient, into which it fuses the elementwise backward of the layer
    after (GELU, bias), and it sums bias gradients over [B, T] with slow reduce-windows.
    With one token axis neither happens, and the step is faster (benchmarks/RESULTS.md).
    GSPMD splits the merged token axis like the batch axis it
    starts with, so sharding is unchanged. A narrowing projection (fan_in > fan_out) takes
    its weight gradient transposed (see narrowing_matmul).
    """
    in_shape, out_shape = kernel.shape[:in_dims], kernel.shape[in_dims:]
    assert x.shape[x.ndim - in_dims:] == in_shape, (x.shape, kernel.shape)
    fan_in, fan_out = math.prod(in_shape), math.prod(out_shape)
    x2, w2 = x.reshape(-1, fan_in), kernel.reshape(fan_in, fan_out)
    y = narrowing_matmul(x2, w2) if fan_in > fan_out else x2 @ w2
    if bias is not None:
        y = y + bias.reshape(fan_out)
    return y.reshape(x.shape[:x.ndim - in_dims] + out_shape)


def transposed_on_cpu(wide, tall, *operands):
    """`tall(*operands)`, computed on CPU as `wide(*operands)` with its last two axes swapped.

    For products that XLA CPU runs faster in the other orientation (see narrowing_matmul and
    the attention backward). XLA folds a transpose after a dot back into the dot, so an
    optimization barrier keeps the wide form; the swap is one pass over the result. Other
    platforms compute `tall` directly: their matmul libraries have no such preference.
    """
    def cpu(*args):
        return jnp.swapaxes(jax.lax.optimization_barrier(wide(*args)), -1, -2)

    return jax.lax.platform_dependent(*operands, cpu=cpu, default=tall)


@jax.custom_vjp
def narrowing_matmul(x: Array, w: Array) -> Array:
    """x [M, I] · w [I, O] for I > O (e.g. the MLP's F -> D), with the weight gradient
    computed on CPU as the [O, I] product dYᵀX and transposed (transposed_on_cpu).

    XLA CPU computes a weight gradient XᵀdY (contracting the M rows of both) faster as the
    wide [O, I] matrix than as the tall [I, O] one; the losses are the same (figures: benchmarks/RESULTS.md).
    """
    return x @ w


def _narrowing_matmul_fwd(x, w):
    return x @ w, (x, w)


def _narrowing_matmul_bwd(residuals, dy):
    x, w = residuals
    dw = transposed_on_cpu(lambda dy, x: dy.T @ x, lambda dy, x: x.T @ dy, dy, x)
    return dy @ w.T, dw


narrowing_matmul.defvjp(_narrowing_matmul_fwd, _narrowing_matmul_bwd)


def layer_norm(x: Array, scale: Array, bias: Array, eps: float = 1e-5) -> Array:
    """y = scale * (x - mean) / sqrt(var + eps) + bias over the last axis.

    Statistics are taken in float32 for bf16 inputs; the result has x's dtype. Computed on
    [M, D] tokens, with the backward pass written out (see _layer_norm_bwd) so that every
    sum is a matrix-vector product (see row_mean).
    """
    return _layer_norm(tokens(x), scale, bias, eps).reshape(x.shape)


def row_mean(x: Array) -> Array:
    """Mean over the last axis of [M, D], as the matrix-vector product x · (1/D).

    XLA CPU turns a reduction into a reduce-window over blocks of 32 and a second reduce
    (for accuracy), several times slower than Eigen's matrix-vector product (figures: benchmarks/RESULTS.md).
    HIGHEST precision: by default accelerators run an f32 dot in TF32 (GPU) or bf16 passes
    (TPU), too coarse for statistics; on CPU it changes nothing.
    """
    return jnp.dot(x, jnp.full(x.shape[-1:], 1.0 / x.shape[-1], x.dtype),
                   precision=jax.lax.Precision.HIGHEST)


def column_sum(x: Array) -> Array:
    """Sum over the first axis of [M, D] as ones · x (see row_mean)."""
    return jnp.dot(jnp.ones(x.shape[:1], x.dtype), x, precision=jax.lax.Precision.HIGHEST)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _layer_norm(x: Array, scale: Array, bias: Array, eps: float) -> Array:
    return _layer_norm_fwd(x, scale, bias, eps)[0]


def _layer_norm_fwd(x, scale, bias, eps):
    x32 = x.astype(jnp.float32)
    centred = x32 - row_mean(x32)[:, None]
    rstd = jax.lax.rsqrt(row_mean(jnp.square(centred))[:, None] + eps)
    z = centred * rstd
    return (z * scale + bias).astype(x.dtype), (z, rstd, scale)


def _layer_norm_bwd(eps, residuals, g):
    """dx = rstd · (dz - mean(dz) - z · mean(dz · z)) with dz = g · scale; the scale and
    bias gradients sum over M with column_sum.

    dx is written to memory once (optimization_barrier) instead of being re-fused: XLA CPU
    otherwise fuses the chain of residual-stream gradients, i.e. the LayerNorm backward of
    every later layer, into each consumer of the gradient; that elementwise work grows with
    depth squared (figures: benchmarks/RESULTS.md).
    """
    z, rstd, scale = residuals
    g32 = g.astype(jnp.float32)
    dz = g32 * scale
    dx = rstd * (dz - row_mean(dz)[:, None] - z * row_mean(dz * z)[:, None])
    return (jax.lax.optimization_barrier(dx.astype(g.dtype)),
            column_sum(g32 * z).astype(scale.dtype), column_sum(g32).astype(scale.dtype))


_layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


ACTIVATIONS = {
    # Exact GELU, x·Φ(x) with the Gaussian CDF from erf: Hugging Face's and fairseq's BERT,
    # RoBERTa and XLNet, whose published weights are used with it.
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    # The tanh approximation: GPT-2 and Megatron-LM (and Google's original BERT code).
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}


def mlp(x: Array, w_in: Array, b_in: Array | None, w_out: Array, b_out: Array | None,
        activation: str = "gelu") -> Array:
    """The per-vector feed-forward layer: act(x W_in + b_in) W_out + b_out; [B,T,D] -> [B,T,D]."""
    # The hidden layer stays [M, F]: its GELU backward and bias gradient are then 2-D too.
    h = bias_activation(dense(tokens(x), w_in), b_in, activation)
    return dense(h, w_out, b_out).reshape(x.shape[:-1] + w_out.shape[-1:])


@functools.partial(jax.checkpoint, static_argnums=(2,))
def bias_activation(y: Array, bias: Array | None, activation: str) -> Array:
    """act(y + bias), recomputed in the backward pass from y instead of saved.

    Saving it would store tanh(...) for the backward pass and then read it back to form
    the output: two passes over the [M, F] hidden layer, the largest activation, where
    one suffices, and on CPU these elementwise passes are memory bound (figures: benchmarks/RESULTS.md). On
    accelerators this is the usual
    trade of a few recomputed FLOPs for activation memory.
    """
    return ACTIVATIONS[activation](y if bias is None else y + bias)


def embed(ids: Array, table: Array) -> Array:
    """Token ids [B, T] -> vectors [B, T, D] from a [V, D] table."""
    return jnp.take(table, ids, axis=0)


def tied_logits(x: Array, table: Array) -> Array:
    """Output logits [B, T, V] with the embedding table as the output projection."""
    logits = jnp.einsum("MD,VD->MV", tokens(x), table)  # 2-D, see `dense`
    return logits.reshape(x.shape[:-1] + table.shape[:1])
