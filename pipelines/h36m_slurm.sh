#!/usr/bin/env bash
# Build H3WB from Human3.6M on a Slurm cluster (the experiment=h36m_slurm preset; needs the `slurm` extra):
# detection as a GPU job array, then the rest in one job. Settings: conf/experiment/h36m_slurm.yaml, or overrides.
#   H36M_ROOT=/data/h36m SHARDS=28 pipelines/h36m_slurm.sh build.dir=/scratch/h3wb hydra.launcher.partition=gpu
set -euo pipefail
PY=${PY:-python}
: "${H36M_ROOT:?set H36M_ROOT to the folder holding S1, S5, ...}"
SHARDS=${SHARDS:-28}
COMMON=(experiment=h36m_slurm "data.root=$H36M_ROOT" "$@")
"$PY" -m build_h3wb -m stage=detect "${COMMON[@]}" "detect.num_shards=$SHARDS" "detect.shard=range(0,$SHARDS)" \
    "hydra.launcher.array_parallelism=$SHARDS"
"$PY" -m build_h3wb -m stage=all "${COMMON[@]}"
