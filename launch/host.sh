#!/usr/bin/env bash
# One process of a (possibly multi-host) run: set the environment, then `python -m scaling train`.
#
#   launch/host.sh --config experiments/gpt2.py:tiny --workdir runs/demo [--config.a.b=v ...]
#
# Job membership comes from the environment (scaling/distributed.py reads it):
#   SCALING_COORDINATOR=host:port  SCALING_NUM_PROCESSES=N  SCALING_PROCESS_ID=i
# or, with none of these, from SLURM / Cloud TPU variables, or a single process.
# Optional:
#   SCALING_CPU_DEVICES=K   run on K fake CPU devices (sets XLA_FLAGS, JAX_PLATFORMS=cpu)
#   PYTHON=...              the interpreter (default: python3 on PATH)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -n "${SCALING_CPU_DEVICES:-}" ]]; then
  export JAX_PLATFORMS=cpu
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${SCALING_CPU_DEVICES}"
fi
# SLURM: one task per GPU sees only its own GPU when srun binds them (--gpus-per-task=1).
exec "${PYTHON:-python3}" -m scaling train "$@"
