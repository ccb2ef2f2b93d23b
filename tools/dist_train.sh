#!/usr/bin/env bash
# tools/dist_train.sh CONFIG NPROC [train.py args...]
# torchrun over NPROC processes per node (tools/dist_run.sh): NCCL on GPUs, gloo on CPU
# (chosen by train.py). Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT.
set -e
if [ -z "$1" ] || [ -z "$2" ]; then
    echo "usage: $0 CONFIG NPROC [train.py args...]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/dist_run.sh" "$2" tools/train.py "$1" --launcher pytorch "${@:3}"
