"""One writer per run directory: an advisory file lock on `workdir/.lock`.

Two trainings writing one workdir corrupt each other's checkpoints (orbax's start-up
cleanup of temporary directories deletes the other's save in progress). The lock is taken
before a run writes or cleans anything and held until it ends.

`fcntl.flock` is released by the kernel when its holder dies, so a lock left by a killed
process (kill -9, OOM) is taken over without any stale-PID guessing; the file's text only
names the holder for the error message. On a multi-host job process 0 holds it: the other
hosts write only their own array shards, under process 0's coordination.

A bucket workdir (gs://...) is not locked: object stores have no lock a dead holder gives
back, and a lock object with a heartbeat would guess at staleness, which this module avoids.
Run one training per bucket workdir (a scheduler that restarts a job starts one copy).
"""
from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket

from scaling import storage

LOCK_FILE = ".lock"

# Locks this process holds, by workdir: a run that ended with an exception leaves its lock
# here, and the next run of the same process (tests, sweeps) on that workdir reuses it.
_HELD: dict[str, int] = {}


class WorkdirBusy(ValueError):
    """Another live process holds the workdir (a one-line message, exit code 2)."""


def acquire(workdir: str) -> None:
    """Take the workdir's lock, or raise WorkdirBusy naming the holder (host, pid, start).

    A URL workdir is not locked (see the module docstring); this returns at once.
    """
    if storage.is_url(workdir):
        return
    path = os.path.abspath(workdir)
    if path in _HELD:
        return
    os.makedirs(path, exist_ok=True)
    fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise WorkdirBusy(
            f"--workdir: {workdir!r} is in use by another run (pid {holder.get('pid', '?')} "
            f"on {holder.get('host', '?')}, started {holder.get('started', '?')}); wait for "
            "it to finish or stop it, or use another --workdir") from None
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({
        "host": socket.gethostname(), "pid": os.getpid(),
        "started": datetime.datetime.now().isoformat(timespec="seconds")}).encode())
    _HELD[path] = fd


def release(workdir: str) -> None:
    """Let another run use the workdir (the file stays; only the lock matters)."""
    if storage.is_url(workdir):
        return
    fd = _HELD.pop(os.path.abspath(workdir), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return {}
