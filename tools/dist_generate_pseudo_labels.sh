#!/usr/bin/env bash
# tools/dist_generate_pseudo_labels.sh CONFIG NPROC [generate_pseudo_labels.py args...]
# VPL phase 1 on NPROC processes per node (tools/dist_run.sh): each rank takes its own
# shard of the images, the prototype gradient is all-reduced (NCCL on GPUs, gloo on CPU).
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT (default 29501).
set -e
if [ -z "$1" ] || [ -z "$2" ]; then
    echo "usage: $0 CONFIG NPROC [generate_pseudo_labels.py args...]" >&2
    exit 2
fi
PORT=${PORT:-29501} exec bash "$(dirname "$0")/dist_run.sh" "$2" \
    tools/generate_pseudo_labels.py "$1" --launcher pytorch "${@:3}"
