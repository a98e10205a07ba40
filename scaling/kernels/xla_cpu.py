"""Kernels for XLA on CPU: the reference functions rewritten for what XLA CPU runs fast.

Each function has the signature and, to float rounding, the result of its reference in
`scaling.nn` (tests/test_kernels.py checks forward, gradients and training steps). What they
change, and why (the measurements are in benchmarks/RESULTS.md):
  - projections, the MLP and the tied logits compute on [M, D] tokens (M = B·T), one 2-D
    matmul each (`dense`);
  - a narrowing projection's weight gradient and the attention backward's dV, dK are
    computed in the orientation XLA CPU runs faster, then transposed (`transposed`);
  - LayerNorm has a written-out backward whose sums are matrix-vector products, and its
    input gradient is written to memory once (`layer_norm`);
  - the MLP recomputes bias + activation in the backward pass instead of saving it;
  - causal self-attention skips fully masked key blocks and has a written-out backward
    (`attention`, `causal_blocked_attention`).
Axis letters as in `scaling.nn.attention`; M is the B·T tokens of a batch as matrix rows.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from scaling.nn import attention as reference_attention
from scaling.nn.functional import ACTIVATIONS

Array = jax.Array


def tokens(x: Array, feature_dims: int = 1) -> Array:
    """[B, T, ..., *features] -> [M, *features]: every token a row (M = B·T·...)."""
    return x.reshape((-1,) + x.shape[x.ndim - feature_dims:])


def dense(x: Array, kernel: Array, bias: Array | None = None, in_dims: int = 1) -> Array:
    """`scaling.nn.functional.dense` as one matmul [M, I]·[I, O].

    For the 3-D form XLA CPU computes the weight gradient (contracting both B and T) through
    a transposing copy of the output gradient, into which it fuses the elementwise backward
    of the layer after (GELU, bias), and it sums bias gradients over [B, T] with slow
    reduce-windows; with one token axis neither happens. GSPMD splits the merged token axis
    like the batch axis it starts with, so sharding is unchanged. A narrowing projection
    (fan_in > fan_out) takes its weight gradient transposed (see narrowing_matmul).
    """
    in_shape, out_shape = kernel.shape[:in_dims], kernel.shape[in_dims:]
    assert x.shape[x.ndim - in_dims:] == in_shape, (x.shape, kernel.shape)
    fan_in, fan_out = math.prod(in_shape), math.prod(out_shape)
    x2, w2 = x.reshape(-1, fan_in), kernel.reshape(fan_in, fan_out)
    y = narrowing_matmul(x2, w2) if fan_in > fan_out else x2 @ w2
    if bias is not None:
        y = y + bias.reshape(fan_out)
    return y.reshape(x.shape[:x.ndim - in_dims] + out_shape)


def transposed(wide, *operands):
    """`wide(*operands)` with its last two axes swapped: a product that XLA CPU runs faster
    in the `wide` orientation than in the one wanted.

    XLA folds a transpose after a dot back into the dot, so an optimization barrier keeps
    the wide form; the swap is one pass over the result.
    """
    return jnp.swapaxes(jax.lax.optimization_barrier(wide(*operands)), -1, -2)


@jax.custom_vjp
def narrowing_matmul(x: Array, w: Array) -> Array:
    """x [M, I] · w [I, O] for I > O (e.g. the MLP's F -> D), with the weight gradient
    computed as the [O, I] product dYᵀX and transposed (see `transposed`): XLA CPU computes
    a weight gradient XᵀdY (contracting the M rows of both) faster as the wide matrix.
    """
    return x @ w


def _narrowing_matmul_fwd(x, w):
    return x @ w, (x, w)


def _narrowing_matmul_bwd(residuals, dy):
    x, w = residuals
    dw = transposed(lambda dy, x: dy.T @ x, dy, x)
    return dy @ w.T, dw


narrowing_matmul.defvjp(_narrowing_matmul_fwd, _narrowing_matmul_bwd)


def layer_norm(x: Array, scale: Array, bias: Array, eps: float = 1e-5) -> Array:
    """`scaling.nn.functional.layer_norm` on [M, D] tokens, with the backward pass written
    out (see _layer_norm_bwd) so that every sum is a matrix-vector product (see row_mean).
    """
    return _layer_norm(tokens(x), scale, bias, eps).reshape(x.shape)


def row_mean(x: Array) -> Array:
    """Mean over the last axis of [M, D], as the matrix-vector product x · (1/D).

    XLA CPU turns a reduction into a reduce-window over blocks of 32 and a second reduce
    (for accuracy), several times slower than Eigen's matrix-vector product. HIGHEST
    precision, so that the statistics stay exact should this run where an f32 dot defaults
    to fewer bits (TF32 on GPU, bf16 passes on TPU); on CPU it changes nothing.
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
    depth squared.
    """
    z, rstd, scale = residuals
    g32 = g.astype(jnp.float32)
    dz = g32 * scale
    dx = rstd * (dz - row_mean(dz)[:, None] - z * row_mean(dz * z)[:, None])
    return (jax.lax.optimization_barrier(dx.astype(g.dtype)),
            column_sum(g32 * z).astype(scale.dtype), column_sum(g32).astype(scale.dtype))


_layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


def mlp(x: Array, w_in: Array, b_in: Array | None, w_out: Array, b_out: Array | None,
        activation: str = "gelu") -> Array:
    """`scaling.nn.functional.mlp` on [M, D] tokens, the activation recomputed in the backward."""
    # The hidden layer stays [M, F]: its GELU backward and bias gradient are then 2-D too.
    h = bias_activation(dense(tokens(x), w_in), b_in, activation)
    return dense(h, w_out, b_out).reshape(x.shape[:-1] + w_out.shape[-1:])


@functools.partial(jax.checkpoint, static_argnums=(2,))
def bias_activation(y: Array, bias: Array | None, activation: str) -> Array:
    """act(y + bias), recomputed in the backward pass from y instead of saved.

    Saving it would store tanh(...) for the backward pass and then read it back to form
    the output: two passes over the [M, F] hidden layer, the largest activation, where one
    suffices, and on CPU these elementwise passes are memory bound.
    """
    return ACTIVATIONS[activation](y if bias is None else y + bias)


def tied_logits(x: Array, table: Array) -> Array:
    """`scaling.nn.functional.tied_logits` as one [M, D]·[D, V] matmul."""
    logits = jnp.einsum("MD,VD->MV", tokens(x), table)
    return logits.reshape(x.shape[:-1] + table.shape[:1])


def attention(q: Array, k: Array, v: Array, mask: Array | str | None = None,
              bias: Array | None = None, block: int = 128) -> Array:
    """`scaling.nn.attention.attention`; causal self-attention without bias runs blocked
    (see causal_blocked_attention), everything else is the reference."""
    if isinstance(mask, str) and mask == reference_attention.CAUSAL and bias is None:
        return causal_blocked_attention(q, k, v, block)
    return reference_attention.attention(q, k, v, mask, bias)


def causal_blocked_attention(q: Array, k: Array, v: Array, block: int) -> Array:
    """Causal self-attention that never computes fully masked blocks of the score matrix.

    Query block i (positions [i*block, (i+1)*block)) attends only keys [0, (i+1)*block):
    with C blocks that is C(C+1)/2 of the C² score blocks (10 of 16 for C=4), saving work in
    the score and value matmuls, the softmax and their gradients. Each block runs
    `causal_softmax_attention`, which equals the reference to float rounding (tested).
    Heads move next to the batch once, here, rather than once per block inside its einsums.
    """
    t, h = q.shape[1], q.shape[-1]
    q = heads_major(q) * jnp.asarray(1 / math.sqrt(h), q.dtype)
    k, v = heads_major(k), heads_major(v)
    if t % block or t <= block:
        block = t
    outs = [causal_softmax_attention(q[:, :, i * block:(i + 1) * block],
                                     k[:, :, :(i + 1) * block], v[:, :, :(i + 1) * block])
            for i in range(t // block)]
    return heads_major(jnp.concatenate(outs, axis=2))


def heads_major(a: Array) -> Array:
    """[B, T, N, H] <-> [B, N, T, H]: batched matmuls want their batch axes (B, N) first."""
    return jnp.swapaxes(a, 1, 2)


@jax.custom_vjp
def causal_softmax_attention(q: Array, k: Array, v: Array) -> Array:
    """softmax(Q Kᵀ, causal) V on heads-major [B, N, T, H] q (already scaled by 1/sqrt(H))
    and [B, N, S, H] k, v, where the T queries are the last T of the S key positions.

    The same math as `dot_product_attention`, with a written-out backward pass that makes
    fewer passes over the [B, N, T, S] scores, which on CPU cost as much as their matmuls:
    the forward normalises the [T, H] output instead of the [T, S] probabilities, and the
    backward takes the softmax's row sums from dO·O ([T, H], FlashAttention's trick) and
    needs no masking (the saved exp(scores) are exactly 0 at masked keys).
    """
    return _causal_softmax_attention_fwd(q, k, v)[0]


def _causal_softmax_attention_fwd(q, k, v):
    t, s = q.shape[2], k.shape[2]
    logits = jnp.einsum("BNTH,BNSH->BNTS", q, k, preferred_element_type=jnp.float32)
    visible = jnp.arange(s)[None, :] <= jnp.arange(t)[:, None] + (s - t)
    logits = jnp.where(visible, logits, -jnp.inf)  # every row sees its own key: max finite
    e = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))  # [B, N, T, S]
    inv_sum = 1.0 / jnp.sum(e, axis=-1, keepdims=True)              # [B, N, T, 1]
    out = jnp.einsum("BNTS,BNSH->BNTH", e.astype(v.dtype), v,
                     preferred_element_type=jnp.float32) * inv_sum
    return out.astype(v.dtype), (q, k, v, e, inv_sum, out)


def _causal_softmax_attention_bwd(residuals, d_out):
    q, k, v, e, inv_sum, out = residuals
    # With P = e·inv_sum: dV = Pᵀ dO = eᵀ (dO·inv_sum), and the softmax backward
    # dS = P ∘ (dO Vᵀ - rowsum(dO ∘ O)) = e ∘ (g Vᵀ - rowsum(g ∘ O)) for g = dO·inv_sum.
    g = d_out.astype(jnp.float32) * inv_sum                       # [B, N, T, H]
    row = jnp.sum(g * out, axis=-1, keepdims=True)                # [B, N, T, 1]
    d_probs = jnp.einsum("BNTH,BNSH->BNTS", g.astype(v.dtype), v,
                         preferred_element_type=jnp.float32)
    d_logits = e * (d_probs - row)
    dq = jnp.einsum("BNTS,BNSH->BNTH", d_logits.astype(k.dtype), k,
                    preferred_element_type=jnp.float32)
    # dV and dK contract over T, the rows of both operands. XLA CPU computes that product
    # faster as [H, S] than as [S, H]; the swap back fuses into the copy to [B, S, N, H]
    # that follows anyway, and the values are the same bit for bit (benchmarks/RESULTS.md).
    wide = functools.partial(jnp.einsum, "BNTS,BNTH->BNHS", preferred_element_type=jnp.float32)
    dv = transposed(wide, e.astype(v.dtype), g.astype(v.dtype))
    dk = transposed(wide, d_logits.astype(q.dtype), q)
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype)


causal_softmax_attention.defvjp(_causal_softmax_attention_fwd, _causal_softmax_attention_bwd)
