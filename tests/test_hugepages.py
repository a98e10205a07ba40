"""Huge pages for malloc: when the restart is wanted, that it happens once, that it helps."""
import os
import subprocess
import sys

import pytest

from scaling import hugepages

GLIBC = (2, 36)


@pytest.mark.parametrize("environ, thp, glibc, system, expected", [
    ({}, "madvise", GLIBC, "Linux", True),
    ({}, "always", GLIBC, "Linux", False),       # the kernel already gives huge pages
    ({}, "never", GLIBC, "Linux", False),        # the kernel gives none
    ({}, "", GLIBC, "Linux", False),             # no THP support at all
    ({}, "madvise", (2, 34), "Linux", False),    # the tunable is glibc 2.35+
    ({}, "madvise", (), "Linux", False),         # not glibc (musl)
    ({}, "madvise", GLIBC, "Darwin", False),
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "madvise", GLIBC, "Linux", False),  # user's
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "madvise", GLIBC, "Linux", True),
    ({"SCALING_HUGE_PAGES": "0"}, "madvise", GLIBC, "Linux", False),
    ({"SCALING_HUGE_PAGES": "off"}, "madvise", GLIBC, "Linux", False),
])
def test_wanted(environ, thp, glibc, system, expected):
    assert hugepages.wanted(environ, thp, glibc, system) is expected


def test_with_tunable_keeps_the_users_tunables():
    env = hugepages.with_tunable({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "A": "b"})
    assert env == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1",
                   "A": "b"}
    assert hugepages.with_tunable({})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"


needs_thp = pytest.mark.skipif(not hugepages.wanted({}),
                               reason="this machine does not want the restart")

PROGRAM = ("import os; from scaling.hugepages import restart_with_huge_pages as r; "
           "print('start', flush=True); r(); print(os.environ.get('GLIBC_TUNABLES', ''))")


@needs_thp
def test_restart_sets_the_tunable_once_and_keeps_the_arguments():
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES",
                                                            "SCALING_HUGE_PAGES")}
    out = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    # Two starts: the original and the restarted process (the same -c program), then no more.
    assert out == ["start", "start", "glibc.malloc.hugetlb=1"]
    out = subprocess.run([sys.executable, "-c", PROGRAM], env=dict(env, SCALING_HUGE_PAGES="0"),
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["start"]


FAULTS = """
import ctypes, resource
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20                 # above glibc's largest mmap threshold: mapped afresh each time
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):              # what XLA does with a step's temporary buffer
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    libc.free(p)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@needs_thp
def test_the_tunable_cuts_page_faults_of_large_buffers():
    """The kernel's own fault count: 4 KiB pages give 5 x 16384 faults, huge pages far fewer."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}

    def faults(environ):
        return int(subprocess.run([sys.executable, "-c", FAULTS], env=environ,
                                  capture_output=True, text=True, check=True).stdout)

    plain, huge = faults(env), faults(hugepages.with_tunable(env))
    assert plain >= 5 * 16384
    assert huge < plain / 4, (plain, huge)
