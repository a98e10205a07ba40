"""Kernels for TPU: the Pallas splash-attention kernel, run per shard under a mesh.

Everything but attention is the reference (scaling.nn). Splash takes no mask, the causal
mask or a key-padding mask, and no bias; its blocks are multiples of 128. Off TPU it runs in
the Pallas interpreter, which is how tests/test_kernels.py checks it against the reference.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from scaling.nn.attention import CAUSAL

Array = jax.Array


def attention(q: Array, k: Array, v: Array, mask: Array | str | None = None,
              bias: Array | None = None, block: int = 128) -> Array:
    """`scaling.nn.attention.attention` by the splash kernel (see splash_attention), once
    per shard of the current mesh (see per_shard)."""
    if isinstance(mask, str) and mask != CAUSAL:
        raise ValueError(f"mask: unknown {mask!r}; use an array, None or {CAUSAL!r}")
    if bias is not None or not _is_key_padding(mask):
        raise ValueError("model.attention_impl: 'splash' takes no mask, the causal mask "
                         "or a key-padding mask, and no bias (XLNet's relative "
                         "attention needs one); use 'auto' or 'xla'")
    return per_shard(functools.partial(splash_attention, block=block), q, k, v, mask)


def splash_attention(q: Array, k: Array, v: Array, mask: Array | str | None, block: int,
                     interpret: bool | None = None) -> Array:
    """The Pallas splash-attention kernel (TPU; run by the Pallas interpreter elsewhere).

    Supports no mask, CAUSAL, or a key-padding mask [B, 1, 1, S] (turned into segment ids);
    no bias. Like the reference, a query row with no visible key returns zeros.
    """
    from jax.experimental.pallas.ops.tpu.splash_attention import (  # noqa: PLC0415
        splash_attention_kernel as sk, splash_attention_mask as sm)

    b, t, n, h = q.shape
    s_len = k.shape[1]
    if interpret is None:
        interpret = jax.default_backend() != "tpu"
    # The kernel's key blocks are whole multiples of the TPU's 128 lanes.
    if block % 128 or t % block or s_len % block:
        raise ValueError(f"model.attention_block: splash attention needs a block that is a "
                         f"multiple of 128 and divides the lengths ({t}, {s_len}), got "
                         f"{block}; change the block or use attention_impl='xla'")
    causal = isinstance(mask, str)
    head = sm.CausalMask((t, s_len), offset=s_len - t) if causal else sm.FullMask((t, s_len))
    sizes = sk.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                          block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
                          block_q_dq=block, block_kv_dq=block)
    kernel = sk.make_splash_mha_single_device(sm.MultiHeadMask([head] * n),
                                              block_sizes=sizes, interpret=interpret)
    q = heads_major(q) / jnp.sqrt(jnp.asarray(h, q.dtype))  # the kernel does not scale
    k, v = heads_major(k), heads_major(v)
    if mask is None or causal:
        out = jax.vmap(kernel)(q, k, v)
    else:
        key_valid = jnp.broadcast_to(mask, (b, 1, 1, s_len)).reshape(b, s_len)
        # Queries are segment 1; valid keys 1 and padding 0, so padding is never attended.
        segments = sk.SegmentIds(q=jnp.ones((b, t), jnp.int32), kv=key_valid.astype(jnp.int32))
        out = jax.vmap(lambda q, k, v, seg: kernel(q, k, v, segment_ids=seg))(q, k, v, segments)
        out = jnp.where(jnp.any(key_valid, -1)[:, None, None, None], out, 0.0)
    return heads_major(out).astype(v.dtype)


def per_shard(fn, q: Array, k: Array, v: Array, mask: Array | str | None) -> Array:
    """fn(q, k, v, mask) run once per shard of the current mesh, under jax.shard_map.

    A pallas_call is a kernel for one device: GSPMD cannot partition it, so under a sharded
    mesh it would run on gathered, unsharded inputs. Here each device runs it on its own
    batch rows and heads instead, split as the logical rules in force say for "batch" and
    "heads" (flax's nn.logical_axis_rules, which run() sets with the mesh). Lengths and the
    head dimension stay whole, since every query needs every key. Mesh axes a dimension
    cannot use are dropped as for parameters (scaling.nn.logical.fit_spec; init traces a batch
    of one). Outside a mesh, or on one device, fn is called directly.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return fn(q, k, v, mask)
    import flax.linen as nn  # noqa: PLC0415  (the rules live in flax's context)

    from scaling.nn.logical import fit_spec  # noqa: PLC0415
    logical = nn.logical_to_mesh_axes(("batch", None, "heads", None)) or ()
    qkv, _ = fit_spec(logical, q.shape, mesh)
    if mask is None or isinstance(mask, str):
        body, args, specs = (lambda q, k, v: fn(q, k, v, mask)), (q, k, v), (qkv,) * 3
    else:  # a key-padding mask [B, 1, 1, S] splits with the batch
        mask = jnp.broadcast_to(mask, (q.shape[0],) + mask.shape[1:])
        body, args = fn, (q, k, v, mask)
        specs = (qkv,) * 3 + (jax.sharding.PartitionSpec(qkv[0], None, None, None),)
    return jax.shard_map(body, mesh=mesh, in_specs=specs, out_specs=qkv,
                         check_vma=False)(*args)


def _is_key_padding(mask) -> bool:
    return mask is None or isinstance(mask, str) or (
        mask.ndim == 4 and mask.shape[1] == 1 and mask.shape[2] == 1)


def heads_major(a: Array) -> Array:
    """[B, T, N, H] <-> [B, N, T, H]: the kernel takes heads before positions."""
    return jnp.swapaxes(a, 1, 2)
