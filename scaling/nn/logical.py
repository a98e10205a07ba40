"""Logical axis names, the only ones a parameter or activation may carry, and fitting a
PartitionSpec to an array's shape.

A leaf module: model code (scaling.nn, scaling.models) names axes from here, and
scaling.sharding maps them to mesh axes with one rules table, so neither imports the other's
higher layer.
"""
from __future__ import annotations

from jax.sharding import PartitionSpec as P

LOGICAL_AXES = (
    "batch",      # B
    "length",     # T / S (activations)
    "embed",      # D
    "heads",      # N
    "head_dim",   # H
    "mlp",        # F
    "vocab",      # V
    "positions",  # rows of a learned position table
    "types",      # rows of a token-type table
    "layers",     # the stacked axis of scanned layers
    "labels",     # outputs of a fine-tuning task head (classes)
    "conv_rows",  # I: rows of a convolution window
    "conv_cols",  # J: columns of a convolution window
    "conv_in",    # C: channels a convolution (or 1x1 projection) reads
    "conv_out",   # O: channels it writes (and GroupNorm's per-channel scale and bias)
)


def fit_spec(spec: P, shape, mesh) -> tuple[P, list[str]]:
    """Drop mesh axes a dimension cannot use: size-1 axes and axes that do not divide it.

    Returns the fitted PartitionSpec (as long as `shape`) and a note per dropped axis that
    mattered (size > 1), e.g. "dim 0 (50257) not divisible by tensor=2: replicated".
    """
    fitted, notes = [], []
    entries = tuple(spec) + (None,) * (len(shape) - len(spec))
    for dim, (size, entry) in enumerate(zip(shape, entries)):
        axes = () if entry is None else (entry if isinstance(entry, tuple) else (entry,))
        kept, product = [], 1
        for axis in axes:
            n = mesh.shape[axis]
            if n == 1:
                continue
            if size % (product * n):
                notes.append(f"dim {dim} ({size}) not divisible by {axis}={n}: replicated "
                             "along it")
                continue
            kept.append(axis)
            product *= n
        fitted.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    return P(*fitted), notes
