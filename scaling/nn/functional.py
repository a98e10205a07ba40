"""Pure per-vector functions: positions, LayerNorm, MLP, embedding lookup and logits.

Axis letters as in `scaling.nn.attention` (B batch, T length, D width, F mlp, V vocab).
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


@jax.custom_vjp
def materialize_grad(x: Array) -> Array:
    """Identity whose gradient is written to memory once instead of being re-fused.

    XLA (CPU) otherwise fuses the chain of residual-stream gradients, i.e. the LayerNorm
    backward of every later layer, into each consumer of the gradient, such as the
    transposes that feed weight gradients; that elementwise work grows with depth squared
    and read 10+ arrays with a strided pattern. Profiled on the 4-layer quick-start model:
    copy fusions fell from 77 to 28 ms per step and tokens/s rose ~25 %
    (benchmarks/throughput.py, interleaved A/B runs).
    """
    return x


materialize_grad.defvjp(lambda x: (x, None), lambda _, g: (jax.lax.optimization_barrier(g),))


def layer_norm(x: Array, scale: Array, bias: Array, eps: float = 1e-5) -> Array:
    """y = scale * (x - mean) / sqrt(var + eps) + bias over the last axis.

    Statistics are taken in float32 for bf16 inputs; the result has x's dtype. The input's
    gradient is materialized (see materialize_grad).
    """
    x = materialize_grad(x)
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    z = (x32 - mean) * jax.lax.rsqrt(var + eps)
    return (z * scale + bias).astype(x.dtype)


ACTIVATIONS = {
    # GPT-2 and BERT use the tanh approximation of GELU.
    "gelu": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}


def mlp(x: Array, w_in: Array, b_in: Array | None, w_out: Array, b_out: Array | None,
        activation: str = "gelu") -> Array:
    """The per-vector feed-forward layer: act(x W_in + b_in) W_out + b_out; [B,T,D] -> [B,T,D]."""
    h = jnp.einsum("BTD,DF->BTF", x, w_in)
    if b_in is not None:
        h = h + b_in
    h = ACTIVATIONS[activation](h)
    y = jnp.einsum("BTF,FD->BTD", h, w_out)
    return y if b_out is None else y + b_out


def embed(ids: Array, table: Array) -> Array:
    """Token ids [B, T] -> vectors [B, T, D] from a [V, D] table."""
    return jnp.take(table, ids, axis=0)


def tied_logits(x: Array, table: Array) -> Array:
    """Output logits [B, T, V] with the embedding table as the output projection."""
    return jnp.einsum("BTD,VD->BTV", x, table)
