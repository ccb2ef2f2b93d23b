#!/usr/bin/env bash
# tools/slurm_run.sh PARTITION JOB_NAME SCRIPT [args...]: the srun launch that
# slurm_train.sh and slurm_test.sh share (MMSeg's tools/slurm_*.sh, one copy).
# Environment (MMSeg's names and defaults):
#   GPUS           tasks in all (one process per GPU), default 4
#   GPUS_PER_NODE  tasks / GPUs per node, default 4 (or GPUS when fewer)
#   CPUS_PER_TASK  default 5
#   SRUN_ARGS      extra srun options, split on spaces (e.g. "--quotatype=auto")
# SCRIPT (a path in the repository) runs on every task with the repository root on
# PYTHONPATH (the callers pass --launcher=slurm); the tools pick NCCL on GPUs, gloo on CPU
# nodes.
set -e
if [ $# -lt 3 ]; then
    echo "usage: $0 PARTITION JOB_NAME SCRIPT [args...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
SCRIPT=$3
GPUS=${GPUS:-4}
GPUS_PER_NODE=${GPUS_PER_NODE:-$((GPUS < 4 ? GPUS : 4))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
set -x
# shellcheck disable=SC2086  # SRUN_ARGS is a list of options
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    --gres=gpu:"${GPUS_PER_NODE}" \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    python -u "$ROOT/$SCRIPT" "${@:4}"
