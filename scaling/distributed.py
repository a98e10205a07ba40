"""Joining a multi-process JAX job: `jax.distributed.initialize`, when and with what.

One process runs per host (or per GPU); together they form one JAX job whose `jax.devices()`
are every device of every process. Which settings apply, first match wins:

  1. explicit: config.parallel.{coordinator_address, num_processes, process_id}, or the
     environment variables SCALING_COORDINATOR, SCALING_NUM_PROCESSES, SCALING_PROCESS_ID
     (what launch/host.sh sets); config fields win over the environment.
  2. SLURM (SLURM_JOB_ID set and more than one task) and Cloud TPU pods (several
     TPU_WORKER_HOSTNAMES): `jax.distributed.initialize()` with no arguments, which reads
     the cluster's own variables.
  3. otherwise: a single process; nothing to do.

Must run before anything touches a JAX backend (run() calls it first). On CPU the
collectives between processes go through gloo, which is switched on here.
"""
from __future__ import annotations

import os
import socket
import time

import jax


class DistributedError(ValueError):
    """Bad multi-process settings, or a coordinator that cannot be reached (one line)."""


class CoordinatorTimeout(DistributedError, TimeoutError):
    """No coordinator answered within parallel.init_timeout_s."""

ENV_COORDINATOR = "SCALING_COORDINATOR"
ENV_NUM_PROCESSES = "SCALING_NUM_PROCESSES"
ENV_PROCESS_ID = "SCALING_PROCESS_ID"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"{name}: must be an integer, got {value!r}") from None


def detect_cluster() -> str | None:
    """'slurm' or 'tpu' when this process runs as one of several in such a cluster."""
    env = os.environ
    if env.get("SLURM_JOB_ID") and int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1"))) > 1:
        return "slurm"
    if len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1:
        return "tpu"
    return None


def settings(parallel) -> dict | None:
    """The explicit {coordinator_address, num_processes, process_id} or None (see module doc).

    Raises one-line ValueErrors naming the field for incomplete or out-of-range settings.
    """
    address = parallel.get("coordinator_address", "") or os.environ.get(ENV_COORDINATOR, "")
    num = int(parallel.get("num_processes", 0)) or _env_int(ENV_NUM_PROCESSES, 0)
    pid = int(parallel.get("process_id", -1))
    pid = pid if pid >= 0 else _env_int(ENV_PROCESS_ID, -1)
    if not address and num <= 1 and pid <= 0:
        return None
    if not address:
        raise DistributedError("parallel.coordinator_address: required when num_processes or "
                         f"process_id is set (or set {ENV_COORDINATOR}=host:port)")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedError(f"parallel.coordinator_address: {address!r} is not host:port")
    if num < 1:
        raise DistributedError("parallel.num_processes: required with a coordinator address "
                         f"(or set {ENV_NUM_PROCESSES})")
    if not 0 <= pid < num:
        raise DistributedError(f"parallel.process_id: {pid} is not in [0, {num}) "
                         f"(or set {ENV_PROCESS_ID})")
    return {"coordinator_address": address, "num_processes": num, "process_id": pid}


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Block until something accepts TCP connections at host:port, or raise TimeoutError."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2.0):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise CoordinatorTimeout(
                    f"parallel.coordinator_address: no coordinator answered at {address} within "
                    f"{timeout_s:g}s ({e.strerror or e}); is process 0 running and the port "
                    "reachable?") from None
            time.sleep(0.5)


def initialize(parallel) -> bool:
    """Join the multi-process job described by config.parallel (and the environment).

    Returns True when this call initialised a multi-process job, False for a single process
    or when JAX was already initialised (tests that set up their own job).
    Raises ValueError for bad settings and TimeoutError when the job cannot be formed
    within parallel.init_timeout_s, both one line naming the field.
    """
    explicit = settings(parallel)
    cluster = None if explicit else detect_cluster()
    if explicit is None and cluster is None:
        return False
    if jax.distributed.is_initialized():
        return False
    timeout = int(parallel.get("init_timeout_s", 300))
    if timeout <= 0:
        raise DistributedError(f"parallel.init_timeout_s: must be positive, got {timeout}")
    if explicit is not None and explicit["process_id"] != 0:
        # Fail with a clear message (rather than a gRPC deadline deep inside XLA) when the
        # coordinator never comes up.
        wait_for_coordinator(explicit["coordinator_address"], timeout)
    # CPU processes exchange collectives over gloo (no effect on GPU/TPU backends).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if explicit is None:
        jax.distributed.initialize(initialization_timeout=timeout)
        return True
    try:
        jax.distributed.initialize(**explicit, initialization_timeout=timeout)
    except Exception as e:  # noqa: BLE001  (XlaRuntimeError and friends carry long messages)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CoordinatorTimeout(
            f"parallel.coordinator_address: could not form the {explicit['num_processes']}-"
            f"process job at {explicit['coordinator_address']} within {timeout}s as process "
            f"{explicit['process_id']}: {first}") from None
    return True
