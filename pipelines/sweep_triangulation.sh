#!/usr/bin/env bash
# Measure the effect of the triangulation rules with Hydra multiruns: robust outlier rejection on/off x the
# opposing-view threshold. Detection runs once; every job triangulates it in its own build directory (named after
# its settings) and is scored by `evaluate`; the table at the end gathers them.
#   pipelines/sweep_triangulation.sh [extra overrides, e.g. data.subjects=[S1,S8]]
set -euo pipefail
PY=${PY:-python}
ROOT=${ROOT:-outputs/sweep_triangulation}
"$PY" -m build_h3wb stage=detect "build.dir=$ROOT/detections" "$@"
for robust in True False; do  # the names the interpolations below produce
  for opp in 140.0 180.0; do
    mkdir -p "$ROOT/robust_${robust}_opp_${opp}"
    ln -sfn "$(cd "$ROOT/detections/detect" && pwd)" "$ROOT/robust_${robust}_opp_${opp}/detect"
  done
done
DIR="build.dir=$ROOT/robust_\${triangulate.robust}_opp_\${triangulate.opposing_angle_deg}"
"$PY" -m build_h3wb -m stage=triangulate triangulate.robust=true,false triangulate.opposing_angle_deg=140,180 \
  "$DIR" "$@"
"$PY" -m build_h3wb -m stage=evaluate triangulate.robust=true,false triangulate.opposing_angle_deg=140,180 \
  "$DIR" "$@"
"$PY" - "$ROOT" <<'PYEOF'
import json, sys
from pathlib import Path
rows = []
for f in sorted(Path(sys.argv[1]).glob("robust_*/evaluate/triangulate.json")):
    r = json.loads(f.read_text())
    s = json.loads((f.parents[1] / "triangulate" / "summary.json").read_text())
    rows.append((f.parents[1].name, r["absolute"]["whole"]["mean_mm"], r["absolute"]["whole"]["p95_mm"],
                 r["absolute"]["hands"]["mean_mm"], r["coverage"]["whole"], s["complete_poses"]))
print("| run | whole mean mm | whole p95 mm | hands mean mm | keypoints built | complete poses |")
print("|---|---|---|---|---|---|")
for row in rows:
    print("| " + " | ".join(str(x) for x in row) + " |")
PYEOF
