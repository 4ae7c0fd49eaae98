#!/usr/bin/env bash
# Measure the effect of the triangulation rules with a Hydra multirun: robust outlier rejection on/off, and the
# opposing-view threshold. Each job gets its own build directory (named after its settings) and writes
# evaluate/triangulate.json there; the table at the end gathers them.
#   pipelines/sweep_triangulation.sh [extra overrides]
set -euo pipefail
PY=${PY:-python}
ROOT=${ROOT:-outputs/sweep_triangulation}
"$PY" -m build_h3wb -m stage=all \
  triangulate.robust=true,false \
  triangulate.opposing_angle_deg=140,180 \
  "build.dir=$ROOT/robust_\${triangulate.robust}_opp_\${triangulate.opposing_angle_deg}" "$@"
"$PY" - "$ROOT" <<'PYEOF'
import json, sys
from pathlib import Path
rows = []
for f in sorted(Path(sys.argv[1]).glob("*/evaluate/triangulate.json")):
    r = json.loads(f.read_text())
    s = json.loads((f.parents[1] / "triangulate" / "summary.json").read_text())
    rows.append((f.parents[1].name, r["absolute"]["whole"]["median_mm"], r["absolute"]["whole"]["p95_mm"],
                 r["coverage"]["whole"], s["complete_poses"]))
print("| run | whole median mm | whole p95 mm | keypoints built | complete poses |")
print("|---|---|---|---|---|")
for row in rows:
    print("| " + " | ".join(str(x) for x in row) + " |")
PYEOF
