"""Kernel sets: per-backend implementations of the reference functions in `scaling.nn`.

A kernel set provides `dense`, `layer_norm`, `mlp`, `tied_logits` and `attention` with the
signatures and, to float rounding, the results of the reference (tests/test_kernels.py):

  reference  scaling.nn: plain jnp, differentiated by JAX; runs anywhere
  xla_cpu    scaling.kernels.xla_cpu: custom VJPs, barriers, blocked causal attention (CPU)
  gpu        the reference + cuDNN attention via jax.nn.dot_product_attention (GPU)
  tpu        the reference + the Pallas splash-attention kernel (TPU)

`model.kernels` picks one; "auto" is xla_cpu on CPU, gpu on GPU and the reference on TPU
(splash stays opt-in until it has been measured on a TPU). `model.attention_impl` overrides
the attention function alone (see ATTENTION_IMPLS).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax

from scaling.kernels import gpu, tpu, xla_cpu
from scaling.nn import attention as nn_attention
from scaling.nn import functional as nn_functional

KERNEL_SETS = ("auto", "reference", "xla_cpu", "gpu", "tpu")
# The platform each kernel set is for (None: any); another platform is refused (resolve).
PLATFORM = {"reference": None, "xla_cpu": "cpu", "gpu": "gpu", "tpu": "tpu"}
AUTO = {"cpu": "xla_cpu", "gpu": "gpu", "tpu": "reference"}

# model.attention_impl: "auto" keeps the kernel set's attention; the others name one
# attention function whatever the kernel set (kept from before model.kernels existed).
ATTENTION = {"xla": nn_attention.attention,   # the einsum reference
             "blocked": xla_cpu.attention,     # causal: skips fully masked key blocks
             "jax": gpu.attention,             # jax.nn.dot_product_attention
             "splash": tpu.attention}          # the Pallas TPU kernel
ATTENTION_IMPLS = ("auto",) + tuple(ATTENTION)


@dataclasses.dataclass(frozen=True)
class KernelSet:
    """The functions a model calls where a backend may have a faster version."""
    name: str
    dense: Callable
    layer_norm: Callable
    mlp: Callable
    tied_logits: Callable
    attention: Callable  # (q, k, v, mask=None, bias=None) as scaling.nn.attention.attention


def resolve(kernels: str, platform: str | None = None) -> str:
    """The kernel set `kernels` names on `platform` (default: JAX's default backend).

    Raises a one-line ValueError for an unknown name or a set made for another platform.
    """
    platform = platform or jax.default_backend()
    if kernels not in KERNEL_SETS:
        raise ValueError(f"model.kernels: unknown {kernels!r}; allowed: "
                         + ", ".join(repr(k) for k in KERNEL_SETS))
    if kernels == "auto":
        return AUTO.get(platform, "reference")
    if PLATFORM[kernels] not in (None, platform):
        raise ValueError(f"model.kernels: {kernels!r} is for {PLATFORM[kernels]} and JAX "
                         f"runs on {platform} here; use 'auto' or 'reference'")
    return kernels


def get(kernels: str = "reference", attention_impl: str = "auto",
        block: int = 128) -> KernelSet:
    """The functions of kernel set `kernels` ("auto": this platform's, see resolve), with
    attention replaced when attention_impl names one, and `block` given to the attention
    kernels that tile (blocked, splash).

    A set made for another platform is returned as asked (resolve is what refuses it), so
    that tests can check the gpu and tpu sets on CPU.
    """
    name = AUTO.get(jax.default_backend(), "reference") if kernels == "auto" else kernels
    if name == "xla_cpu":
        fns = dict(dense=xla_cpu.dense, layer_norm=xla_cpu.layer_norm, mlp=xla_cpu.mlp,
                   tied_logits=xla_cpu.tied_logits, attention=xla_cpu.attention)
    elif name in ("reference", "gpu", "tpu"):
        fns = dict(dense=nn_functional.dense, layer_norm=nn_functional.layer_norm,
                   mlp=nn_functional.mlp, tied_logits=nn_functional.tied_logits,
                   attention={"reference": nn_attention.attention, "gpu": gpu.attention,
                              "tpu": tpu.attention}[name])
    else:
        resolve(kernels)  # raises: unknown name
    if attention_impl != "auto":
        if attention_impl not in ATTENTION:
            raise ValueError(f"model.attention_impl: unknown {attention_impl!r}; allowed: "
                             + ", ".join(repr(i) for i in ATTENTION_IMPLS))
        fns["attention"] = ATTENTION[attention_impl]
    if fns["attention"] is not nn_attention.attention:
        fns["attention"] = functools.partial(fns["attention"], block=block)
    return KernelSet(name, **fns)
