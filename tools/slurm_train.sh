#!/usr/bin/env bash
# tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args...]
# MMSeg's Slurm training launch (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS: see
# tools/slurm_run.sh). A fourth argument that is not an option is the work dir
# (--work-dir); e.g.
#   GPUS=8 tools/slurm_train.sh dev vpl configs/vpl_clip_voc.py work_dirs/vpl_voc --amp
set -e
if [ $# -lt 3 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
ARGS=("$3" --launcher=slurm)
shift 3
if [ $# -ge 1 ] && [ "${1#-}" = "$1" ]; then
    ARGS+=(--work-dir="$1")
    shift
fi
exec bash "$(dirname "$0")/slurm_run.sh" "$PARTITION" "$JOB_NAME" tools/train.py "${ARGS[@]}" "$@"
