#!/usr/bin/env bash
# tools/dist_run.sh NPROC SCRIPT [args...]: the torchrun launch the dist_*.sh tools share.
# Runs SCRIPT (a path in the repository, e.g. tools/train.py) on NPROC processes per node
# with the repository root on PYTHONPATH; the tools pick NCCL on GPUs, gloo on CPU.
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT (default 29500).
set -e
NPROC=$1
SCRIPT=$2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec python -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$NPROC" \
    --master_port="${PORT:-29500}" \
    "$ROOT/$SCRIPT" "${@:3}"
