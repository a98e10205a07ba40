#!/usr/bin/env bash
# N processes on this machine forming one JAX job (127.0.0.1, fake CPU devices, gloo).
#
#   launch/local.sh NUM_PROCESSES DEVICES_PER_PROCESS --config ... --workdir ... [flags]
#
# Process i's output goes to WORKDIR/process_<i>.log (process 0 also prints to the terminal);
# for a bucket WORKDIR (gs://...) to logs/<its last path part>/process_<i>.log here.
# If one process fails the others are stopped; the exit code is the first failure's.
# SCALING_PORT picks the coordinator port (default: a free one);
# SCALING_LAUNCH_TIMEOUT (seconds, default 0 = none) bounds the whole run.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  sed -n '2,10p' "$0" >&2
  exit 2
fi
num_processes=$1 devices=$2
shift 2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python_bin="${PYTHON:-python3}"

workdir=""
prev=""
for arg in "$@"; do
  case "$arg" in --workdir=*) workdir="${arg#--workdir=}" ;; esac
  [[ "$prev" == "--workdir" ]] && workdir="$arg"
  prev="$arg"
done
[[ -n "$workdir" ]] || { echo "launch/local.sh: --workdir is required" >&2; exit 2; }
case "$workdir" in
  *://*) logdir="logs/$(basename "$workdir")" ;;  # a bucket: logs stay on this machine
  *) logdir="$workdir" ;;
esac
mkdir -p "$logdir"

port="${SCALING_PORT:-$("$python_bin" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

for ((i = 0; i < num_processes; i++)); do
  log="$logdir/process_$i.log"
  if ((num_processes > 1)); then
    export SCALING_COORDINATOR="127.0.0.1:$port" SCALING_NUM_PROCESSES="$num_processes"
    export SCALING_PROCESS_ID="$i"
  fi
  if ((i == 0)); then
    SCALING_CPU_DEVICES="$devices" "$here/host.sh" "$@" > >(tee "$log") 2>&1 &
  else
    SCALING_CPU_DEVICES="$devices" "$here/host.sh" "$@" >"$log" 2>&1 &
  fi
  pids+=($!)
done

deadline=$(( ${SCALING_LAUNCH_TIMEOUT:-0} > 0 ? SECONDS + SCALING_LAUNCH_TIMEOUT : 0 ))
status=0
remaining=${#pids[@]}
declare -A done_=()
while ((remaining > 0)); do
  for idx in "${!pids[@]}"; do
    [[ -n "${done_[$idx]:-}" ]] && continue
    pid=${pids[$idx]}
    if ! kill -0 "$pid" 2>/dev/null; then
      rc=0; wait "$pid" || rc=$?
      done_[$idx]=1; remaining=$((remaining - 1))
      if ((rc != 0 && status == 0)); then
        status=$rc
        echo "launch/local.sh: process $idx exited with $rc (log: $logdir/process_$idx.log);" \
             "stopping the others" >&2
        cleanup
      fi
    fi
  done
  if ((deadline > 0 && SECONDS > deadline)); then
    echo "launch/local.sh: timed out after ${SCALING_LAUNCH_TIMEOUT}s; stopping" >&2
    cleanup
    exit 124
  fi
  sleep 0.2
done
exit "$status"
