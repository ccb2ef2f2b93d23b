#!/usr/bin/env bash
# tools/dist_generate_pseudo_labels.sh CONFIG NPROC [generate_pseudo_labels.py args...]
# VPL phase 1 on NPROC processes per node with torchrun: each rank takes its own shard of
# the images, the prototype gradient is all-reduced (NCCL on GPUs, gloo on CPU).
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT.
set -e
CONFIG=$1
NPROC=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29501}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
if [ -z "$CONFIG" ] || [ -z "$NPROC" ]; then
    echo "usage: $0 CONFIG NPROC [generate_pseudo_labels.py args...]" >&2
    exit 2
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
python -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" \
    --master_port="$PORT" \
    "$ROOT/tools/generate_pseudo_labels.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
