#!/usr/bin/env bash
# tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
# MMSeg's Slurm test launch (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS: see
# tools/slurm_run.sh); e.g.
#   GPUS=8 tools/slurm_test.sh dev vpl-test configs/vpl_clip_voc_test.py CKPT \
#       --format-only --out work_dirs/voc_test --tta
set -e
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/slurm_run.sh" "$1" "$2" tools/test.py "$3" "$4" --launcher=slurm \
    "${@:5}"
