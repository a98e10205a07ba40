"""Process setup for entry points: XLA flags and host malloc, before JAX starts a backend.

Only programs call `setup()` (the `scaling` console script, `python -m scaling` and
the benchmarks); importing `scaling` changes nothing in the process.
"""
from __future__ import annotations

from scaling.runtime import host_malloc, xla_flags


def setup(reuse_step_buffers: bool = True) -> None:
    """Set the library's default XLA flags, then (if asked) the malloc tunables that keep
    XLA CPU's step buffers for reuse, which restarts the process once (see host_malloc).

    Call first thing in a program's entry point, before anything runs on a JAX device.
    """
    xla_flags.apply_defaults()
    if reuse_step_buffers:
        host_malloc.setup()
