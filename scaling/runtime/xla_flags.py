"""XLA flags the library sets by default, only where they were measured to help.

Applied by `scaling.runtime.setup()` at entry points, before JAX starts its backend; a flag
the user already put in XLA_FLAGS is never overridden, and SCALING_XLA_FLAGS=none turns
this off.

--xla_cpu_experimental_ynn_fusion_type=  (empty)
    Turns off an experimental XLA CPU dot fusion that slows the backward matmuls
    (benchmarks/search_xla_flags.py; figures in benchmarks/RESULTS.md).
    Only for jaxlib 0.10, where the flag exists (XLA aborts on unknown flags).
"""
from __future__ import annotations

import os
from importlib import metadata

DEFAULTS = {"xla_cpu_experimental_ynn_fusion_type": ""}
TESTED_JAXLIB = "0.10."


def apply_defaults() -> None:
    if os.environ.get("SCALING_XLA_FLAGS", "") == "none":
        return
    try:
        if not metadata.version("jaxlib").startswith(TESTED_JAXLIB):
            return
    except metadata.PackageNotFoundError:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    for name, value in DEFAULTS.items():
        if f"--{name}" not in flags:
            flags = f"{flags} --{name}={value}".strip()
    os.environ["XLA_FLAGS"] = flags
