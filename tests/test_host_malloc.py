"""Host malloc for XLA CPU steps: which tunables a process wants, that the restart happens
once, and that a repeated computation's large temporary buffer then stops faulting in."""
import os
import subprocess
import sys

import pytest

from scaling.runtime import host_malloc

GLIBC = (2, 36)
REUSE = {"glibc.malloc.mmap_max": "0", "glibc.malloc.trim_threshold": str(1 << 40)}
ALL = dict(REUSE, **{"glibc.malloc.hugetlb": "1"})


@pytest.mark.parametrize("environ, thp, glibc, system, plugin, expected", [
    ({}, "madvise", GLIBC, "Linux", False, ALL),
    ({}, "always", GLIBC, "Linux", False, REUSE),      # the kernel gives huge pages anyway
    ({}, "never", GLIBC, "Linux", False, REUSE),
    ({}, "madvise", (2, 31), "Linux", False, REUSE),   # hugetlb is a glibc 2.35+ tunable
    ({}, "madvise", (2, 17), "Linux", False, {}),      # no tunables before glibc 2.26
    ({}, "madvise", (), "Linux", False, {}),           # not glibc (musl)
    ({}, "madvise", GLIBC, "Darwin", False, {}),
    ({}, "madvise", GLIBC, "Linux", True, {}),         # a GPU/TPU plugin: buffers on device
    ({"JAX_PLATFORMS": "cpu"}, "madvise", GLIBC, "Linux", True, ALL),
    ({"JAX_PLATFORMS": "cuda,cpu"}, "madvise", GLIBC, "Linux", False, {}),
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "madvise", GLIBC, "Linux", False, REUSE),
    ({"GLIBC_TUNABLES": ":".join(f"{k}={v}" for k, v in ALL.items())}, "madvise", GLIBC,
     "Linux", False, {}),                              # the restarted process
    ({"SCALING_HOST_MALLOC": "0"}, "madvise", GLIBC, "Linux", False, {}),
    ({"SCALING_HOST_MALLOC": "off"}, "madvise", GLIBC, "Linux", False, {}),
])
def test_missing_tunables(environ, thp, glibc, system, plugin, expected):
    assert host_malloc.missing_tunables(environ, thp, glibc, system, plugin) == expected


def test_with_tunables_keeps_the_users_tunables():
    env = host_malloc.with_tunables({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "A": "b"},
                                    {"glibc.malloc.mmap_max": "0"})
    assert env == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.mmap_max=0",
                   "A": "b"}
    assert host_malloc.with_tunables({}, REUSE)["GLIBC_TUNABLES"] == \
        f"glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold={1 << 40}"


def test_buffers_reused_reads_mmap_max():
    assert host_malloc.buffers_reused({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"})
    assert not host_malloc.buffers_reused({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=65536"})
    assert not host_malloc.buffers_reused({})
    assert not host_malloc.buffers_reused({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0",
                                           "SCALING_HOST_MALLOC": "0"})


def _clean_env(**extra):
    """This environment as a fresh `scaling train` on one CPU device sees it (conftest's 8
    fake devices give each its own threads and arenas, which fault pages of their own)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("GLIBC_TUNABLES", "SCALING_HOST_MALLOC", "JAX_PLATFORMS", "XLA_FLAGS")}
    return dict(env, **extra)


needs_glibc = pytest.mark.skipif(not host_malloc.missing_tunables(_clean_env()),
                                 reason="this machine does not take the tunables")

PROGRAM = ("import os; from scaling import runtime; print('start', flush=True); "
           "runtime.setup(); import jax; "
           "print(os.environ.get('GLIBC_TUNABLES', '-'), "
           "jax.config.values['jax_cpu_enable_async_dispatch'])")


@needs_glibc
def test_restart_happens_once_and_turns_async_dispatch_off():
    out = subprocess.run([sys.executable, "-c", PROGRAM], env=_clean_env(), capture_output=True,
                         text=True, check=True).stdout.split()
    # Two starts: the original and the restarted process (the same -c program), then no more.
    assert out[:2] == ["start", "start"] and len(out) == 4, out
    assert host_malloc.parse_tunables(out[2]).items() >= REUSE.items()
    assert out[3] == "False"
    out = subprocess.run([sys.executable, "-c", PROGRAM],
                         env=_clean_env(SCALING_HOST_MALLOC="0"),
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["start", "-", "True"]


# A jitted computation whose 64 MiB intermediate (a = x @ w, read by two later products)
# becomes XLA's temporary buffer (136 MiB in all), run six times; the kernel's own count of
# minor page faults over the last four calls.
FAULTS = """
from scaling import runtime
runtime.setup()
import resource, jax, jax.numpy as jnp
x = jnp.ones((8192, 256)) / 256
w = jnp.ones((256, 2048)) / 256
f = jax.jit(lambda x, w: (jnp.tanh(x @ w) @ w.T).sum() + (jnp.exp(-(x @ w)) @ w.T).sum())
for _ in range(2):
    f(x, w).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    f(x, w).block_until_ready()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@needs_glibc
def test_the_step_buffer_is_reused_instead_of_faulted_in_again():
    """Mapped afresh, 136 MiB costs ~35k faults a call in 4 KiB pages (68 in 2 MiB ones);
    kept on the heap, next to none: 1-198 in all measured, against 1,073-1,578 with huge
    pages alone (SCALING_HOST_MALLOC=0 GLIBC_TUNABLES=glibc.malloc.hugetlb=1)."""
    def faults(env):
        return int(subprocess.run([sys.executable, "-c", FAULTS], env=env,
                                  capture_output=True, text=True, check=True).stdout)

    plain = faults(_clean_env(SCALING_HOST_MALLOC="0"))
    reused = faults(_clean_env())
    assert plain >= 4 * 16384, plain  # the baseline really maps the buffer afresh
    # Reused, the buffer costs next to no faults: at most 2 % of the baseline's (a loaded
    # machine, e.g. the other test worker, adds a few hundred unrelated ones).
    assert reused * 50 < plain, (plain, reused)
