#!/usr/bin/env bash
# tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py args...]
# torchrun over NPROC processes per node (tools/dist_run.sh): NCCL on GPUs, gloo on CPU
# (chosen by test.py). Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT.
set -e
if [ -z "$1" ] || [ -z "$2" ] || [ -z "$3" ]; then
    echo "usage: $0 CONFIG CHECKPOINT NPROC [test.py args...]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/dist_run.sh" "$3" tools/test.py "$1" "$2" --launcher pytorch \
    "${@:4}"
