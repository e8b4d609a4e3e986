#!/usr/bin/env bash
# A Slurm job array that labels one dump on N nodes: task i runs `triage label --shard i/N`;
# a dependent job merges the parts. Requeued tasks resume from their checkpoints.
#   sbatch --array=0-3 scripts/slurm-array.sh dump.jsonl.gz out
#   sbatch --dependency=afterany:<jobid> --wrap "triage merge -o out/labelled.jsonl out/part-*.jsonl"
#SBATCH --job-name=triage-label
#SBATCH --cpus-per-task=2
#SBATCH --mem=3G
#SBATCH --requeue
set -euo pipefail
dump="$1"
out="${2:-out}"
n="${SLURM_ARRAY_TASK_COUNT:?run with sbatch --array=0-(N-1)}"
i="${SLURM_ARRAY_TASK_ID:?run with sbatch --array}"
mkdir -p "$out"
status=0
triage label "$dump" -o "$out/part-$i.jsonl" --shard "$i/$n" --resume --progress never || status=$?
# 1 means some records were bad (they are in the errors file): the shard itself is done.
[ "$status" -le 1 ]
