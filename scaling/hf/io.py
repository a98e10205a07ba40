"""Hugging Face model directories on disk: config.json plus safetensors or PyTorch weights.

Reading needs no torch for `model.safetensors` (safetensors.numpy); a `pytorch_model.bin`
is read with torch when it is installed. Sharded checkpoints (`*.index.json`) are read
shard by shard. Tensors come back as float32 numpy arrays keyed by their HF names.
"""
from __future__ import annotations

import json
import os

import numpy as np

from scaling import storage
from scaling.hf.errors import HFError

# Files a tokenizer may consist of; copied along with the weights (none is required).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "vocab.txt",
                   "spiece.model", "sentencepiece.bpe.model")
SAFETENSORS, TORCH_BIN = "model.safetensors", "pytorch_model.bin"


def read_config(src: str) -> dict:
    """`src/config.json` as a dict; HFError if `src` is not an HF model directory."""
    path = os.path.join(src, "config.json")
    if not os.path.isdir(src):
        raise HFError(f"SRC: {src!r} is not a directory")
    if not os.path.isfile(path):
        raise HFError(f"SRC: no config.json in {src!r}; is it a Hugging Face model directory?")
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise HFError(f"SRC: {path} is not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise HFError(f"SRC: {path} has no model_type; is it a Hugging Face model config?")
    return config


def _weight_files(src: str) -> list[str]:
    """The weight files of `src`, safetensors preferred; HFError when there are none."""
    for single, index in ((SAFETENSORS, SAFETENSORS + ".index.json"),
                          (TORCH_BIN, TORCH_BIN + ".index.json")):
        if os.path.isfile(os.path.join(src, single)):
            return [os.path.join(src, single)]
        if os.path.isfile(os.path.join(src, index)):
            with open(os.path.join(src, index)) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            return [os.path.join(src, s) for s in shards]
    raise HFError(f"SRC: no {SAFETENSORS} or {TORCH_BIN} in {src!r}")


def _read_torch(path: str) -> dict[str, np.ndarray]:
    try:
        import torch  # noqa: PLC0415  (optional: only for legacy .bin checkpoints)
    except ImportError:
        raise HFError(f"SRC: {os.path.basename(path)} needs PyTorch to read (pip install "
                      f"torch), or convert it to {SAFETENSORS}") from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.detach().to(torch.float32).numpy() for k, v in state.items()}


def _read_safetensors(path: str) -> dict:
    """numpy first; bfloat16 (which numpy lacks) through torch when it is installed."""
    from safetensors.numpy import load_file  # noqa: PLC0415
    try:
        return load_file(path)
    except Exception as e:  # noqa: BLE001  (the Rust reader raises its own types)
        error = e
    try:
        import torch  # noqa: PLC0415
        from safetensors.torch import load_file as load_torch  # noqa: PLC0415
        return {k: v.to(torch.float32).numpy() for k, v in load_torch(path).items()}
    except ImportError:
        pass
    except Exception as e:  # noqa: BLE001
        error = e
    raise HFError(f"SRC: cannot read {path} ({str(error).splitlines()[0][:120]})")


def read_tensors(src: str) -> dict[str, np.ndarray]:
    """All tensors of `src`'s weights as float32 numpy arrays, keyed by HF name."""
    tensors = {}
    for path in _weight_files(src):
        if path.endswith(".safetensors"):
            part = _read_safetensors(path)
        else:
            part = _read_torch(path)
        tensors.update({k: np.asarray(v, np.float32) for k, v in part.items()})
    return tensors


def write_model(out: str, config: dict, tensors: dict[str, np.ndarray]) -> None:
    """Write `out/config.json` and `out/model.safetensors` (the directory must exist)."""
    from safetensors.numpy import save_file  # noqa: PLC0415
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    # transformers reads the "format" entry to know the tensors are PyTorch-layout.
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()},
              os.path.join(out, SAFETENSORS), metadata={"format": "pt"})


def tokenizer_files(src: str) -> list[str]:
    """The tokenizer files present in `src`."""
    return [name for name in TOKENIZER_FILES if storage.path(storage.join(src, name)).is_file()]


def copy_tokenizer(src: str, dst: str) -> list[str]:
    """Copy `src`'s tokenizer files into `dst` (created); returns the names copied."""
    names = tokenizer_files(src)
    if names:
        storage.path(dst).mkdir(parents=True, exist_ok=True)
    for name in names:  # dst may be a URL: an import into a bucket workdir
        (storage.path(dst) / name).write_bytes(storage.path(storage.join(src, name)).read_bytes())
    return names
