#!/usr/bin/env bash
# Build H3WB from Human3.6M on one machine (the experiment=h36m_local preset): detection sharded over local
# processes, then the rest of the pipeline.
#   H36M_ROOT=/data/h36m JOBS=4 pipelines/h36m_local.sh [overrides...]
set -euo pipefail
PY=${PY:-python}
: "${H36M_ROOT:?set H36M_ROOT to the folder holding S1, S5, ...}"
JOBS=${JOBS:-4}
COMMON=(experiment=h36m_local "data.root=$H36M_ROOT" "$@")
"$PY" -m build_h3wb -m stage=detect "${COMMON[@]}" "hydra.launcher.n_jobs=$JOBS" "detect.num_shards=$JOBS" \
    "detect.shard=range(0,$JOBS)"
"$PY" -m build_h3wb stage=all "${COMMON[@]}"
