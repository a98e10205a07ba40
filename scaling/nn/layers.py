"""Linen modules that create parameters (with logical axis names) and call the pure functions.

Every parameter is created through `_param`, which attaches logical axis names from
LOGICAL_AXES. The mesh is never named here: `scaling.sharding` maps these names to mesh
axes with one rules table. The math comes from the kernel set a module is given by name
(`kernels`, see scaling.kernels): the reference in scaling.nn unless a model says otherwise.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from scaling import kernels as kernel_sets
from scaling.nn import functional as F
from scaling.nn.attention import attention_weights, causal_mask
from scaling.nn.logical import LOGICAL_AXES

# The collection that attention modules sow their weights into when it is mutable:
# model.apply(..., mutable=[ATTENTION_WEIGHTS]) -> [B, N, T, S] per MultiHeadAttention and
# [B, Y·X, Y·X] per SelfAttention2d, under the module's path, in a tuple named "weights".
ATTENTION_WEIGHTS = "attention_weights"

dense_init = nn.initializers.normal(stddev=0.02)  # BERT / GPT-2 initialisation
zeros = nn.initializers.zeros
ones = nn.initializers.ones


def _param(module: nn.Module, name: str, init, shape, axes):
    """Create a float32 parameter annotated with logical axis names."""
    assert len(shape) == len(axes) and all(a in LOGICAL_AXES for a in axes), (name, axes)
    return module.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.float32)


def constrain(x, axes=("batch", "length", "embed")):
    """Constrain an activation's sharding by logical names (a no-op without a mesh)."""
    return nn.with_logical_constraint(x, axes)


class LayerNorm(nn.Module):
    eps: float = 1e-5
    kernels: str = "reference"

    @nn.compact
    def __call__(self, x):
        d = x.shape[-1]
        scale = _param(self, "scale", ones, (d,), ("embed",))
        bias = _param(self, "bias", zeros, (d,), ("embed",))
        return kernel_sets.get(self.kernels).layer_norm(x, scale, bias, self.eps)


class Mlp(nn.Module):
    """Position-wise feed-forward: D -> F -> D."""
    mlp_dim: int
    activation: str = "gelu"
    use_bias: bool = True
    dtype: jnp.dtype = jnp.float32
    kernels: str = "reference"

    @nn.compact
    def __call__(self, x):
        d = x.shape[-1]
        w_in = _param(self, "w_in", dense_init, (d, self.mlp_dim), ("embed", "mlp"))
        w_out = _param(self, "w_out", dense_init, (self.mlp_dim, d), ("mlp", "embed"))
        b_in = b_out = None
        if self.use_bias:
            b_in = _param(self, "b_in", zeros, (self.mlp_dim,), ("mlp",)).astype(self.dtype)
            b_out = _param(self, "b_out", zeros, (d,), ("embed",)).astype(self.dtype)
        return kernel_sets.get(self.kernels).mlp(x, w_in.astype(self.dtype), b_in,
                                                 w_out.astype(self.dtype), b_out, self.activation)


class MultiHeadAttention(nn.Module):
    """Multi-head attention; self-attention when `kv` is None, cross-attention otherwise.

    Weights are stored split by head ([D, N, H] and [N, H, D]) so shapes document themselves
    and tensor parallelism can shard the N axis.
    """
    num_heads: int
    use_bias: bool = True
    dtype: jnp.dtype = jnp.float32
    impl: str = "auto"  # model.attention_impl: "auto" is the kernel set's attention
    block: int = 128
    kernels: str = "reference"

    @nn.compact
    def __call__(self, x, kv=None, mask=None, bias=None):
        ops = kernel_sets.get(self.kernels, self.impl, self.block)
        kv = x if kv is None else kv
        d = x.shape[-1]
        n, h = self.num_heads, d // self.num_heads

        def proj(name):
            w = _param(self, f"w_{name}", dense_init, (d, n, h), ("embed", "heads", "head_dim"))
            b = (_param(self, f"b_{name}", zeros, (n, h), ("heads", "head_dim")).astype(self.dtype)
                 if self.use_bias else None)
            return w.astype(self.dtype), b

        q = ops.dense(x, *proj("q"))   # [B, T, N, H]
        k = ops.dense(kv, *proj("k"))  # [B, S, N, H]
        v = ops.dense(kv, *proj("v"))
        y = ops.attention(q, k, v, mask=mask, bias=bias)
        if self.is_mutable_collection(ATTENTION_WEIGHTS) and not self.is_initializing():
            # Recomputed from q and k by the reference math, only when asked for, so every
            # kernel (blocked, cuDNN, splash) stays as it is and nothing runs otherwise.
            ref_mask = causal_mask(q.shape[1], k.shape[1]) if isinstance(mask, str) else mask
            self.sow(ATTENTION_WEIGHTS, "weights", attention_weights(q, k, ref_mask, bias))
        w_o = _param(self, "w_o", dense_init, (n, h, d), ("heads", "head_dim", "embed"))
        b_o = (_param(self, "b_o", zeros, (d,), ("embed",)).astype(self.dtype)
               if self.use_bias else None)
        return ops.dense(y, w_o.astype(self.dtype), b_o, in_dims=2)  # [B, T, D]


class Embed(nn.Module):
    """A [V, D] token table used for lookup and, when tied, for the output logits."""
    num_embeddings: int
    width: int
    axes: tuple = ("vocab", "embed")
    kernels: str = "reference"

    def setup(self):
        self.table = _param(self, "embedding", dense_init, (self.num_embeddings, self.width),
                            self.axes)

    def __call__(self, ids, dtype=jnp.float32):
        return F.embed(ids, self.table.astype(dtype))

    def attend(self, x):
        """Logits [B, T, V] = x · tableᵀ."""
        return kernel_sets.get(self.kernels).tied_logits(x, self.table.astype(x.dtype))


class Dense(nn.Module):
    """A plain [D_in, D_out] projection (poolers, untied heads, MLM transform).

    A D -> D projection names its output axis 'mlp' (an array may not repeat a logical
    name), so tensor parallelism splits it like the MLP's hidden layer.
    """
    features: int
    axes: tuple = ("embed", "mlp")
    use_bias: bool = True
    dtype: jnp.dtype = jnp.float32
    kernels: str = "reference"

    @nn.compact
    def __call__(self, x):
        w = _param(self, "kernel", dense_init, (x.shape[-1], self.features), self.axes)
        b = (_param(self, "bias", zeros, (self.features,), self.axes[-1:]).astype(self.dtype)
             if self.use_bias else None)
        return kernel_sets.get(self.kernels).dense(x, w.astype(self.dtype), b)


def dropout(x, rate: float, deterministic: bool):
    """Dropout that costs nothing when off (rate 0 or evaluation); call inside a compact method."""
    if rate == 0.0 or deterministic:
        return x
    return nn.Dropout(rate)(x, deterministic=False)

