#!/usr/bin/env bash
# Cloud TPU pod: run launch/host.sh on every worker of TPU VM slice $TPU_NAME at once.
#
#   TPU_NAME=my-v4-64 ZONE=us-central2-b launch/tpu_pod.sh \
#       --config experiments/megatron.py:8b3 --workdir gs://bucket/runs/m8b
#
# Each worker must already hold this repository at $REPO_DIR (default ~/scaling) with its
# environment installed (e.g. an earlier `--worker=all --command "git clone ... && pip install
# -e ."`). JAX finds the other workers through the TPU metadata server: no coordinator flags.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
repo="${REPO_DIR:-~/scaling}"
args=$(printf ' %q' "$@")
exec gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" ${PROJECT:+--project "$PROJECT"} \
  --worker=all --command "cd $repo && launch/host.sh$args"
