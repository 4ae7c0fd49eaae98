#!/usr/bin/env bash
# Build the default synthetic dataset stage by stage (what `python -m build_h3wb stage=all` does in one process),
# so each stage can be rerun alone. Extra arguments are Hydra overrides passed to every stage, e.g.
#   pipelines/build_default.sh build.dir=outputs/small data.subjects=[S1,S8] data.duration_s=5
set -euo pipefail
PY=${PY:-python}
for stage in detect triangulate complete refine filter export evaluate; do
  "$PY" -m build_h3wb stage="$stage" "$@"
done
