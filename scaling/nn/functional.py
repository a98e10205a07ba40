"""Pure per-vector functions: positions, projections, LayerNorm, MLP, embedding and logits.

The reference math, written plainly and differentiated by JAX. Faster versions of the same
functions for one backend live in `scaling.kernels`. Axis letters as in
`scaling.nn.attention` (B batch, T length, D width, F mlp, V vocab).
"""
from __future__ import annotations

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


def dense(x: Array, kernel: Array, bias: Array | None = None, in_dims: int = 1) -> Array:
    """x [..., *I] · kernel [*I, *O] (+ bias [*O]) -> [..., *O].

    The last `in_dims` axes of x are contracted with the first of the kernel, so one
    function serves [D, F] projections, the [D, N, H] split into heads and the [N, H, D]
    merge (in_dims=2).
    """
    y = jnp.tensordot(x, kernel, axes=in_dims)
    return y if bias is None else y + bias


def layer_norm(x: Array, scale: Array, bias: Array, eps: float = 1e-5) -> Array:
    """y = scale * (x - mean) / sqrt(var + eps) + bias over the last axis.

    Statistics are taken in float32 for bf16 inputs; the result has x's dtype.
    """
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    z = (x32 - mean) * jax.lax.rsqrt(var + eps)
    return (z * scale + bias).astype(x.dtype)


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
    h = ACTIVATIONS[activation](dense(x, w_in, b_in))  # [B, T, F]
    return dense(h, w_out, b_out)


def embed(ids: Array, table: Array) -> Array:
    """Token ids [B, T] -> vectors [B, T, D] from a [V, D] table."""
    return jnp.take(table, ids, axis=0)


def tied_logits(x: Array, table: Array) -> Array:
    """Output logits [B, T, V] with the embedding table as the output projection."""
    return jnp.einsum("...D,VD->...V", x, table)
