"""Content fingerprints of arrays: what a checkpoint stores to prove its data came back intact.

orbax/tensorstore do not checksum array data, so bytes damaged on disk restore silently as
other numbers. Every save records one fingerprint per array of the train state, and every
restore recomputes and compares them (scaling.checkpoint).

The fingerprint of an array with bit patterns b_i (as unsigned integers) is

    sum_i b_i * (2i + 1)   mod 2^32

Changing any one element changes it (odd weights are invertible mod 2^32); a random
corruption of several goes unnoticed with probability ~2^-32. Integer sums wrap exactly in
any order, so the value does not depend on how the array is sharded: a checkpoint saved on
one mesh verifies on another, and on a multi-host job every process gets the same numbers.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

_UINT = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}


def _array_fingerprint(x: jax.Array) -> jax.Array:
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    bits = jax.lax.bitcast_convert_type(x, _UINT[x.dtype.itemsize]).astype(jnp.uint32)
    flat = bits.reshape(-1)
    weights = jnp.arange(flat.size, dtype=jnp.uint32) * jnp.uint32(2) + jnp.uint32(1)
    return jnp.sum(flat * weights, dtype=jnp.uint32)


_fingerprints = jax.jit(lambda leaves: [_array_fingerprint(x) for x in leaves])


def fingerprints(tree) -> dict[str, int]:
    """{'params/blocks/layer_0/attn/w_q': fingerprint, ...} for every array leaf of `tree`."""
    paths_and_leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    values = jax.device_get(_fingerprints([leaf for _, leaf in paths_and_leaves]))
    return {path_name(path): int(v) for (path, _), v in zip(paths_and_leaves, values)}


def path_name(path) -> str:
    """A tree path as 'a/b/0/c' (dict keys, dataclass fields and sequence indices)."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                    for k in path)


def mismatches(saved: dict[str, int], tree) -> list[str]:
    """The arrays of `tree` whose fingerprint differs from `saved` (names `saved` lacks are
    not compared: e.g. a checkpoint written before fingerprints existed)."""
    now = fingerprints(tree)
    return [name for name in sorted(now) if name in saved and saved[name] != now[name]]
