#!/usr/bin/env bash
# Build H3WB from Human3.6M on one machine: detection sharded over local processes (Hydra's joblib launcher), then
# the rest of the pipeline. On one GPU, JOBS=1 with a larger detector batch is usually fastest.
#
#   H36M_ROOT=/data/h36m BUILD_DIR=outputs/h36m JOBS=4 pipelines/h36m_local.sh [overrides...]
set -euo pipefail
PY=${PY:-python}
: "${H36M_ROOT:?set H36M_ROOT to the folder holding S1, S5, ...}"
BUILD_DIR=${BUILD_DIR:-outputs/h36m}
JOBS=${JOBS:-2}
COMMON=(data=h36m "data.root=$H36M_ROOT" "build.dir=$BUILD_DIR" "detector=${DETECTOR:-openpifpaf}" "$@")
"$PY" -m build_h3wb -m stage=detect "${COMMON[@]}" hydra/launcher=joblib "hydra.launcher.n_jobs=$JOBS" \
    "detect.num_shards=$JOBS" "detect.shard=range(0,$JOBS)"
"$PY" -m build_h3wb stage=all "${COMMON[@]}"
