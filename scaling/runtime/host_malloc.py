"""Host memory for XLA CPU steps: reuse each step's temporary buffer, on huge pages.

XLA's CPU runtime mallocs each execution's temporary buffer (every activation the backward
pass reads) and frees it when the step ends. By default glibc serves an allocation that
large with a fresh mmap and unmaps it on free, so at every step the kernel faults the buffer
in again and zeroes it. Huge pages alone (`glibc.malloc.hugetlb=1`) cut the faults but not
the zeroing, and on a VM that hands freed pages back to its host they made some steps slower.
So the buffer is kept and reused: `glibc.malloc.mmap_max=0` serves large blocks from the
heap instead of fresh mappings, and a huge `glibc.malloc.trim_threshold` keeps the heap's
freed top instead of returning it to the kernel. One more condition: glibc gives a worker
thread its own arena, and an arena other than the main heap maps any block larger than
64 MiB regardless of mmap_max. XLA CPU executes on a worker thread unless async dispatch is
off (`jax_cpu_enable_async_dispatch=False`: the step runs on the calling thread, which
allocates from the main heap). Computations over several devices (pmap, sharded jit) are
dispatched asynchronously regardless. Either half alone changes nothing; the figures are in
benchmarks/RESULTS.md.

glibc reads its tunables once, when the process starts, so `scaling.runtime.setup()` (the
`scaling` command, `python -m scaling`, the benchmarks) re-executes the program once
with GLIBC_TUNABLES extended (same process id, same arguments; before any JAX backend
starts, so nothing but the imports is done twice), then turns async dispatch off in the
process that stays. Only on Linux with glibc (2.26+ for the tunables; huge pages need 2.35+
and THP mode "madvise": with "always" the kernel gives them anyway) and only where JAX will
run on CPU: hosts with a GPU or TPU plugin installed (or JAX_PLATFORMS naming another
platform first) keep glibc's defaults, since there the step's buffers live on the device.
Tunables the user already set are kept. SCALING_HOST_MALLOC=0 turns all of it off.
Re-measured for issue 21, the restart still pays: without it every step faults its buffer
in afresh (figures in benchmarks/RESULTS.md). Code that imports `scaling` from its own
script can do the same by hand:

    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776 \\
        python train.py     # with jax.config.update("jax_cpu_enable_async_dispatch", False)
"""
from __future__ import annotations

import importlib.util
import os
import pkgutil
import platform
import sys
from importlib import metadata

REUSE = {"glibc.malloc.mmap_max": "0", "glibc.malloc.trim_threshold": str(1 << 40)}
HUGE_PAGES = {"glibc.malloc.hugetlb": "1"}
THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"


def turned_off(environ) -> bool:
    """SCALING_HOST_MALLOC=0 (or false/no/none/off): leave malloc and dispatch alone."""
    return environ.get("SCALING_HOST_MALLOC", "1").lower() in ("0", "false", "no", "none", "off")


def _thp_mode() -> str:
    """The kernel's THP mode, the bracketed word of e.g. "always [madvise] never"."""
    try:
        with open(THP_MODE_FILE) as f:
            text = f.read()
    except OSError:
        return ""
    return text.partition("[")[2].partition("]")[0]


def _glibc_version() -> tuple[int, ...]:
    name, version = platform.libc_ver()
    if name != "glibc" or not version:
        return ()
    return tuple(int(part) for part in version.split(".")[:2] if part.isdigit())


def _accelerator_plugin_installed() -> bool:
    """Whether JAX would find a GPU/TPU backend to load, without importing JAX."""
    spec = importlib.util.find_spec("jax_plugins")  # namespace package of the CUDA/ROCm plugins
    if spec is not None and any(True for _ in pkgutil.iter_modules(
            spec.submodule_search_locations or [])):
        return True
    if metadata.entry_points(group="jax_plugins"):
        return True
    return importlib.util.find_spec("libtpu") is not None


def runs_on_cpu(environ, plugin_installed: bool | None = None) -> bool:
    """Whether JAX in this process will run on CPU: JAX_PLATFORMS says so first, else no
    accelerator plugin is installed."""
    platforms = environ.get("JAX_PLATFORMS", "").strip()
    if platforms:
        return platforms.split(",")[0].strip().lower() == "cpu"
    installed = _accelerator_plugin_installed() if plugin_installed is None else plugin_installed
    return not installed


def parse_tunables(value: str) -> dict[str, str]:
    """"a=1:b=2" -> {"a": "1", "b": "2"}."""
    return dict(item.partition("=")[::2] for item in value.split(":") if item)


def missing_tunables(environ=None, thp_mode: str | None = None,
                     glibc: tuple[int, ...] | None = None, system: str | None = None,
                     plugin_installed: bool | None = None) -> dict[str, str]:
    """The glibc tunables this process should add (name -> value); {} when none is wanted,
    when they are already set (by us, in the restarted process, or by the user), or when
    this platform cannot take them (see the module doc)."""
    environ = os.environ if environ is None else environ
    if turned_off(environ):
        return {}
    if (system or platform.system()) != "Linux":
        return {}
    glibc = _glibc_version() if glibc is None else glibc
    if glibc < (2, 26) or not runs_on_cpu(environ, plugin_installed):
        return {}
    wanted = dict(REUSE)
    if glibc >= (2, 35) and (_thp_mode() if thp_mode is None else thp_mode) == "madvise":
        wanted.update(HUGE_PAGES)
    have = parse_tunables(environ.get("GLIBC_TUNABLES", ""))
    return {name: value for name, value in wanted.items() if name not in have}


def with_tunables(environ, tunables: dict[str, str]) -> dict:
    """A copy of environ whose GLIBC_TUNABLES also sets `tunables` (after the user's own)."""
    env = dict(environ)
    items = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
    env["GLIBC_TUNABLES"] = ":".join(items + [f"{k}={v}" for k, v in tunables.items()])
    return env


def buffers_reused(environ=None) -> bool:
    """Whether this process's malloc keeps large blocks on the heap (mmap_max=0), so that
    steps should run on the calling thread to allocate from it."""
    environ = os.environ if environ is None else environ
    if turned_off(environ):
        return False
    return parse_tunables(environ.get("GLIBC_TUNABLES", "")).get("glibc.malloc.mmap_max") == "0"


def setup() -> None:
    """Call first thing in a program's entry point, before JAX starts a backend.

    Re-executes this process once with the tunables if they are wanted (then does not
    return); in the process that stays, turns XLA CPU's async dispatch off if the tunables
    keep large blocks on the heap.
    """
    tunables = missing_tunables()
    if tunables and sys.orig_argv:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, sys.orig_argv, with_tunables(os.environ, tunables))
    if buffers_reused():
        import jax  # noqa: PLC0415 (only here: the restart above must come before JAX loads)
        jax.config.update("jax_cpu_enable_async_dispatch", False)
