#!/usr/bin/env bash
# Build H3WB from Human3.6M on a Slurm cluster: detection sharded over GPU jobs, then the rest in one job.
#
# Needs the `slurm` extra (pip install -e ".[slurm]": Hydra's submitit launcher) and the `openpifpaf` set-up
# (make setup). Every job runs the same command as a local run; the detect shards split the videos
# (subject x sequence x camera) round-robin, each video is written atomically, and the job that finishes the
# last video assembles the sequences and writes detect/manifest.json. A failed or pre-empted job is simply run
# again (finished videos are skipped).
#
#   H36M_ROOT=/data/h36m BUILD_DIR=/scratch/h3wb PARTITION=gpu SHARDS=28 pipelines/h36m_slurm.sh [overrides...]
set -euo pipefail
PY=${PY:-python}
: "${H36M_ROOT:?set H36M_ROOT to the folder holding S1, S5, ...}"
BUILD_DIR=${BUILD_DIR:-outputs/h36m}
PARTITION=${PARTITION:-gpu}
SHARDS=${SHARDS:-28}            # 7 subjects x 4 cameras' worth of videos; any number works
TIMEOUT_MIN=${TIMEOUT_MIN:-720}
COMMON=(data=h36m "data.root=$H36M_ROOT" "build.dir=$BUILD_DIR" detector=openpifpaf "$@")
SLURM=(hydra/launcher=submitit_slurm "hydra.launcher.partition=$PARTITION" hydra.launcher.gpus_per_node=1
       hydra.launcher.tasks_per_node=1 hydra.launcher.cpus_per_task=8 hydra.launcher.mem_gb=32
       "hydra.launcher.timeout_min=$TIMEOUT_MIN")

# 1. detection: one Slurm array task per shard (GPU); the launcher waits for all of them
"$PY" -m build_h3wb -m stage=detect "${COMMON[@]}" "${SLURM[@]}" \
    "detect.num_shards=$SHARDS" "detect.shard=range(0,$SHARDS)" "hydra.launcher.array_parallelism=$SHARDS"
# 2. everything after detection in one job (the completion network trains on its GPU)
"$PY" -m build_h3wb -m stage=all "${COMMON[@]}" "${SLURM[@]}"
