"""Strict bookkeeping shared by the family converters: every HF tensor is used exactly once.

`Tensors.take(name, shape)` hands out a tensor after checking its shape; `finish()` then
refuses any tensor nobody took, so a checkpoint that does not fit the architecture fails
naming the tensor instead of loading half its weights. Also the activation names of HF
configs, and the per-layer <-> scanned (stacked) layout of our blocks.
"""
from __future__ import annotations

import numpy as np

from scaling.hf.errors import HFError

# HF activation names -> ours (scaling.nn.functional.ACTIVATIONS).
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
               "relu": "relu"}
# Ours -> the HF name written on export (gelu_new is GPT-2's own name for the tanh form).
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}


def activation(hf_config: dict, key: str) -> str:
    """Our activation for `hf_config[key]`; HFError for one we do not compute exactly."""
    name = hf_config.get(key)
    ours = ACTIVATIONS.get(name) if isinstance(name, str) else None
    if ours is None:
        raise HFError(f"config.json: {key}={name!r} is not supported; supported: "
                      + ", ".join(ACTIVATIONS))
    return ours


def require(hf_config: dict, key: str, allowed, default=None) -> None:
    """HFError unless hf_config[key] (or its default) is one of `allowed`."""
    value = hf_config.get(key, default)
    if value not in allowed:
        raise HFError(f"config.json: {key}={value!r} is not supported (only "
                      + " or ".join(repr(a) for a in allowed) + ")")


class Tensors:
    """The tensors of one checkpoint, taken one by one.

    Args:
      tensors: HF name -> array.
      buffers: name suffixes of non-parameter buffers that are dropped (attention masks,
        position ids), never parameters.
    """

    def __init__(self, tensors: dict, buffers: tuple = ()):
        self.tensors = {k: v for k, v in tensors.items() if not (buffers and k.endswith(buffers))}

    def has(self, name: str) -> bool:
        return name in self.tensors

    def prefix_of(self, marker: str, prefix: str) -> str:
        """`prefix` when the checkpoint's names start with it (a head model), else ""."""
        return prefix if any(k.startswith(prefix + marker) for k in self.tensors) else ""

    def take(self, full: str, shape: tuple, transpose: bool = False) -> np.ndarray:
        """Remove and return tensor `full` of `shape` (checked before transposing)."""
        if full not in self.tensors:
            raise HFError(f"weights: tensor {full} is missing")
        value = self.tensors.pop(full)
        if tuple(value.shape) != tuple(shape):
            raise HFError(f"weights: tensor {full} has shape {tuple(value.shape)}, expected "
                          f"{tuple(shape)} from config.json")
        return value.T if transpose else value

    def take_tied(self, full: str, like: np.ndarray) -> None:
        """Drop a tied copy (legacy .bin files store it); it must equal the tensor it ties to."""
        if full in self.tensors:
            value = self.tensors.pop(full)
            if value.shape != like.shape or not np.array_equal(value, like):
                raise HFError(f"weights: tensor {full} should be tied (equal) to another "
                              "tensor but differs; untied heads are not supported here")

    def finish(self) -> None:
        """HFError naming the first tensor nobody took."""
        if self.tensors:
            extra = sorted(self.tensors)
            more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
            raise HFError(f"weights: unexpected tensor {extra[0]}{more}; it does not belong "
                          "to this architecture (use --skip PREFIX to drop it explicitly)")


def stack_layers(layers: list[dict]) -> dict:
    """Per-layer param dicts -> one dict with a leading layer axis (model.scan_layers)."""
    if isinstance(layers[0], dict):
        return {k: stack_layers([layer[k] for layer in layers]) for k in layers[0]}
    return np.stack(layers)


def unstack_layers(stacked: dict, num_layers: int) -> list[dict]:
    """The inverse of `stack_layers`."""
    def pick(tree, i):
        return {k: pick(v, i) for k, v in tree.items()} if isinstance(tree, dict) else tree[i]
    return [pick(stacked, i) for i in range(num_layers)]


def blocks(layers: list[dict], scanned: bool) -> dict:
    """Our `blocks` subtree from per-layer dicts."""
    if scanned:
        return {"layers": stack_layers(layers)}
    return {f"layer_{i}": layer for i, layer in enumerate(layers)}


def layer_list(blocks_tree: dict, num_layers: int, scanned: bool) -> list[dict]:
    """Per-layer dicts from our `blocks` subtree (scanned or not)."""
    if scanned:
        return unstack_layers(blocks_tree["layers"], num_layers)
    return [blocks_tree[f"layer_{i}"] for i in range(num_layers)]


def norm(scale, bias) -> dict:
    return {"scale": scale, "bias": bias}


def vocab_rows(table: np.ndarray, padded: int) -> np.ndarray:
    """Zero rows appended up to `padded` (model.vocab_pad_multiple); axis 0 is vocab."""
    extra = padded - table.shape[0]
    if extra <= 0:
        return table
    return np.concatenate([table, np.zeros((extra,) + table.shape[1:], table.dtype)])


def require_fields(spec, wanted: dict, architecture: str) -> None:
    """HFError naming the first model field whose value `architecture` cannot express."""
    for field, value in wanted.items():
        if getattr(spec, field) != value:
            raise HFError(f"model.{field}: {getattr(spec, field)!r} has no {architecture} "
                          f"equivalent ({architecture} has {value!r})")
