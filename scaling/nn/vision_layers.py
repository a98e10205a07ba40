"""Linen modules for images: convolution, GroupNorm, a ResNet-style backbone, and SAGAN's
self-attention module. They create parameters (with logical axis names, through
`scaling.nn.layers._param`) and call the pure functions of `scaling.nn.vision`.

A convolution kernel is [I, J, C, O] with logical names (conv_rows, conv_cols, conv_in,
conv_out); 1x1 projections are stored as [C, O] matrices named (conv_in, conv_out). The mesh
is never named here (the rules table in scaling.sharding maps these names).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from scaling.nn import vision as V
from scaling.nn.layers import ATTENTION_WEIGHTS, _param, constrain, ones, zeros

# He et al. 2015 for the ReLU network: variance 2/fan_in, fan_in = I·J·C of an [I, J, C, O]
# kernel (and C of a [C, O] matrix).
conv_init = nn.initializers.he_normal()
projection_init = nn.initializers.lecun_normal()  # the SAGAN 1x1 projections (no ReLU after)


class Conv(nn.Module):
    """A `window` x `window` convolution with stride `stride` to `features` channels."""
    features: int
    window: int = 3
    stride: int = 1
    use_bias: bool = False  # a normalisation follows every convolution of the backbone
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kernel = _param(self, "kernel", conv_init,
                        (self.window, self.window, x.shape[-1], self.features),
                        ("conv_rows", "conv_cols", "conv_in", "conv_out"))
        # Use the kernel with its input channels whole (conv_in gathered, as FSDP gathers
        # every weight before use). Left sharded, XLA's SPMD partitioner computes the input
        # gradient of a conv chain on a data x fsdp x tensor mesh with batch rows on the
        # wrong devices (tests/test_vision_layers.py::test_xla_partitioner_dot_bug).
        kernel = constrain(kernel, ("conv_rows", "conv_cols", None, "conv_out"))
        bias = (_param(self, "bias", zeros, (self.features,), ("conv_out",)).astype(self.dtype)
                if self.use_bias else None)
        return V.conv2d(x.astype(self.dtype), kernel.astype(self.dtype), bias, self.stride)


class GroupNorm(nn.Module):
    """GroupNorm over [B, Y, X, C] with a per-channel scale and bias (see vision.group_norm)."""
    groups: int = 8
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        scale = _param(self, "scale", ones, (c,), ("conv_out",))
        bias = _param(self, "bias", zeros, (c,), ("conv_out",))
        return V.group_norm(x, scale, bias, self.groups, self.eps)


class BasicBlock(nn.Module):
    """He et al. 2016's basic residual block, with GroupNorm in place of BatchNorm:
    y = relu(x' + GN(conv3x3(relu(GN(conv3x3_stride(x)))))), where x' is x, or a strided
    1x1 convolution + GN of x when the block changes the grid or the channel count.
    """
    features: int
    stride: int = 1
    groups: int = 8
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        h = Conv(self.features, 3, self.stride, dtype=self.dtype, name="conv1")(x)
        h = jax.nn.relu(GroupNorm(self.groups, name="norm1")(h))
        h = Conv(self.features, 3, 1, dtype=self.dtype, name="conv2")(h)
        h = GroupNorm(self.groups, name="norm2")(h)
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = Conv(self.features, 1, self.stride, dtype=self.dtype, name="proj")(x)
            shortcut = GroupNorm(self.groups, name="proj_norm")(shortcut)
        return jax.nn.relu(h + shortcut)


class ConvBackbone(nn.Module):
    """A small ResNet: images [B, height, width, 3] -> feature grid [B, Y, X, widths[-1]].

    A 3x3 stem (stride 1) to widths[0], then one stage per entry of widths: depths[i] basic
    blocks of widths[i] channels, the first block of every stage after the first with
    stride 2, so the grid is the image over 2^(len(widths)-1) (rounded up).

    Normalisation is GroupNorm, not BatchNorm: it keeps no running statistics, so the model
    has parameters only (no mutable batch_stats collection to thread through the train step,
    checkpoints and sharding), evaluates as it trains, and gives the same result however
    the batch is split over devices.
    """
    widths: Sequence[int] = (32, 64)
    depths: Sequence[int] = (1, 1)
    groups: int = 8
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images):
        check_backbone(self.widths, self.depths, self.groups)
        V.backbone_grid(images.shape[1], images.shape[2], len(self.widths))
        x = Conv(self.widths[0], 3, 1, dtype=self.dtype, name="stem")(images)
        x = jax.nn.relu(GroupNorm(self.groups, name="stem_norm")(x))
        for stage, (width, depth) in enumerate(zip(self.widths, self.depths)):
            for block in range(depth):
                stride = 2 if stage > 0 and block == 0 else 1
                x = BasicBlock(width, stride, self.groups, self.dtype,
                               name=f"stage{stage}_block{block}")(x)
        return x


def check_backbone(widths: Sequence[int], depths: Sequence[int], groups: int) -> None:
    """One-line ValueErrors for backbone arguments that cannot build, raised before tracing."""
    if not widths or len(widths) != len(depths):
        raise ValueError(f"depths: needs one entry per stage of widths={tuple(widths)}, got "
                         f"{tuple(depths)}")
    if min(depths) < 1 or min(widths) < 1:
        raise ValueError(f"widths/depths: every stage needs >= 1 channel and >= 1 block, got "
                         f"widths={tuple(widths)}, depths={tuple(depths)}")
    bad = [w for w in widths if w % groups]
    if bad:
        raise ValueError(f"groups: widths {bad} are not divisible by groups={groups}; choose "
                         "widths that are multiples of it")


class SelfAttention2d(nn.Module):
    """SAGAN's self-attention module (Zhang et al. 2019) on a [B, Y, X, C] feature map.

    Queries and keys by 1x1 convolution to C' = C // key_ratio channels (C/8 in the paper),
    values to value_dim channels (default C), softmax over the Y·X keys, a 1x1 output
    convolution back to C, and y = γ·o + x with γ a learned scalar initialised to 0.
    Returns (y [B, Y, X, C], attention weights [B, Y·X, Y·X], rows = query positions).
    """
    key_ratio: int = 8
    value_dim: int | None = None
    use_bias: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        e = max(c // self.key_ratio, 1)
        u = self.value_dim or c

        def proj(name, d_in, d_out):
            w = _param(self, f"w_{name}", projection_init, (d_in, d_out),
                       ("conv_in", "conv_out")).astype(self.dtype)
            b = (_param(self, f"b_{name}", zeros, (d_out,), ("conv_out",)).astype(self.dtype)
                 if self.use_bias else None)
            return w, b

        (wq, bq), (wk, bk) = proj("query", c, e), proj("key", c, e)
        (wv, bv), (wo, bo) = proj("value", c, u), proj("out", u, c)
        gamma = _param(self, "gamma", zeros, (), ())
        y, weights = V.sagan_attention(x.astype(self.dtype), wq, wk, wv, wo, gamma,
                                       bq, bk, bv, bo)
        if self.is_mutable_collection(ATTENTION_WEIGHTS) and not self.is_initializing():
            self.sow(ATTENTION_WEIGHTS, "weights", weights)  # [B, P, Q] row-major over Y x X
        return y, weights
