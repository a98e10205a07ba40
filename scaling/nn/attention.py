"""Scaled dot-product attention and its masks, as pure functions on arrays.

Axis letters used in every shape and einsum string of this package:
    B  batch                 T  query length           S  key/value length
    N  attention heads       H  head dimension         D  model width
    F  MLP hidden width      V  vocabulary             L  layers
    M  tokens (B·T flattened, the rows of a projection's matmul)

Masks are boolean with True meaning "may attend", shaped to broadcast against the
attention logits [B, N, T, S] (usually [B, 1, T, S] or [B, 1, 1, S]).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from scaling.nn import functional as F

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
    the score and value matmuls, the softmax and their gradients. Each block runs
    `causal_softmax_attention`, which equals the reference to float rounding (tested).
    Heads move next to the batch once, here, rather than once per block inside its einsums.
    """
    t, h = q.shape[1], q.shape[-1]
    q = _heads_major(q) * jnp.asarray(1 / math.sqrt(h), q.dtype)
    k, v = _heads_major(k), _heads_major(v)
    if t % block or t <= block:
        block = t
    outs = [causal_softmax_attention(q[:, :, i * block:(i + 1) * block],
                                     k[:, :, :(i + 1) * block], v[:, :, :(i + 1) * block])
            for i in range(t // block)]
    return _heads_major(jnp.concatenate(outs, axis=2))


def _heads_major(a: Array) -> Array:
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
    needs no masking (the saved exp(scores) are exactly 0 at masked keys) (figures: benchmarks/RESULTS.md).
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
    tall = functools.partial(jnp.einsum, "BNTS,BNTH->BNSH", preferred_element_type=jnp.float32)
    dv = F.transposed_on_cpu(wide, tall, e.astype(v.dtype), g.astype(v.dtype))
    dk = F.transposed_on_cpu(wide, tall, d_logits.astype(q.dtype), q)
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype)


causal_softmax_attention.defvjp(_causal_softmax_attention_fwd, _causal_softmax_attention_bwd)


ATTENTION_IMPLS = ("auto", "xla", "jax", "blocked", "splash")


def resolve_impl(impl: str, causal: bool, bias: Array | None,
                 platform: str | None = None) -> str:
    """The implementation "auto" stands for on this platform (others are returned as is).

    cpu: "blocked" for causal self-attention without bias (it skips the fully masked key
      blocks and has a written-out backward pass; benchmarks/RESULTS.md), else "xla".
    gpu: "jax", i.e. jax.nn.dot_product_attention, which takes cuDNN flash attention
      where it applies and XLA otherwise.
    tpu: "xla" for now. The splash kernel is opt-in ("splash"; run per shard under a mesh,
      see per_shard) until it has been measured on a TPU.
    """
    if impl != "auto":
        return impl
    platform = platform or jax.default_backend()
    if platform == "gpu":
        return "jax"
    if platform == "cpu" and causal and bias is None:
        return "blocked"
    return "xla"


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
    q = _heads_major(q) / jnp.sqrt(jnp.asarray(h, q.dtype))  # the kernel does not scale
    k, v = _heads_major(k), _heads_major(v)
    if mask is None or causal:
        out = jax.vmap(kernel)(q, k, v)
    else:
        key_valid = jnp.broadcast_to(mask, (b, 1, 1, s_len)).reshape(b, s_len)
        # Queries are segment 1; valid keys 1 and padding 0, so padding is never attended.
        segments = sk.SegmentIds(q=jnp.ones((b, t), jnp.int32), kv=key_valid.astype(jnp.int32))
        out = jax.vmap(lambda q, k, v, seg: kernel(q, k, v, segment_ids=seg))(q, k, v, segments)
        out = jnp.where(jnp.any(key_valid, -1)[:, None, None, None], out, 0.0)
    return _heads_major(out).astype(v.dtype)


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


def attention(q: Array, k: Array, v: Array, mask: Array | str | None = None,
              bias: Array | None = None, impl: str = "auto", block: int = 128) -> Array:
    """Dispatch to an attention implementation with the same contract as above.

    Args:
      mask: a boolean mask, None, or CAUSAL ("causal") for exactly the causal mask of
        self-attention, which lets "jax", "blocked" and "splash" skip the masked half.
      impl: "auto" picks per platform (see resolve_impl); "xla" is the einsum reference;
        "jax" calls `jax.nn.dot_product_attention` (cuDNN flash attention on GPU where it
        applies); "blocked" computes causal attention block by block (see
        causal_blocked_attention) and is the reference otherwise; "splash" is the Pallas
        TPU kernel (see splash_attention).
      block: query/key block length for "blocked" and "splash".
    """
    causal = isinstance(mask, str)
    if causal and mask != CAUSAL:
        raise ValueError(f"mask: unknown {mask!r}; use an array, None or {CAUSAL!r}")
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"model.attention_impl: unknown {impl!r}; allowed: "
                         + ", ".join(repr(i) for i in ATTENTION_IMPLS))
    impl = resolve_impl(impl, causal, bias)
    if impl == "splash":
        if bias is not None or not _is_key_padding(mask):
            raise ValueError("model.attention_impl: 'splash' takes no mask, the causal mask "
                             "or a key-padding mask, and no bias (XLNet's relative "
                             "attention needs one); use 'auto' or 'xla'")
        return per_shard(functools.partial(splash_attention, block=block), q, k, v, mask)
    if impl == "blocked" and causal and bias is None:
        return causal_blocked_attention(q, k, v, block)
    if impl in ("xla", "blocked"):
        return dot_product_attention(q, k, v, causal_mask(q.shape[1], k.shape[1])
                                     if causal else mask, bias)
    # impl == "jax"
    if causal:
        return jax.nn.dot_product_attention(q, k, v, bias=bias, is_causal=True)
    out = jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask)
    if mask is not None:  # same fully-masked-row contract as the reference
        any_key = jnp.any(jnp.broadcast_to(mask, mask.shape[:-1] + (k.shape[1],)), axis=-1)
        out = jnp.where(jnp.moveaxis(any_key, 1, 2)[..., None], out, 0.0)
    return out


def split_heads(x: Array, kernel: Array, bias: Array | None = None) -> Array:
    """Project [B, T, D] inputs to [B, T, N, H] heads with a [D, N, H] kernel.

    einsum("BTD,DNH->BTNH") computed as one [M, D]·[D, N·H] matmul (see functional.dense).
    """
    return F.dense(x, kernel, bias)


def merge_heads(y: Array, kernel: Array, bias: Array | None = None) -> Array:
    """Concatenate [B, T, N, H] heads and project to [B, T, D] with a [N, H, D] kernel.

    einsum("BTNH,NHD->BTD") computed as one [M, N·H]·[N·H, D] matmul.
    """
    return F.dense(y, kernel, bias, in_dims=2)
