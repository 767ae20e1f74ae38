#!/usr/bin/env bash
# Two-rate rig figures of docs/ACCURACY.md ("Two-rate rig"): one fixed-rig bag, replayed with a
# fast frame model alone, the accurate model alone, and the two-rate rig (fast every frame, the
# accurate one every REFRESH_EVERY-th pair), each evaluated against the rig's ground truth.
#   scripts/two_rate_rig.sh OUT_DIR [DATA_DIR] [FAST] [ACCURATE]
# OUT_DIR must not exist; DATA_DIR defaults to ../shared/data/roadscene_calib; FAST / ACCURATE
# default to sift / xfeat (the models with weights on this machine; with RoMa weights:
# ACCURATE=minima_roma). REFRESH_EVERY (default 10). The refresh runs inline
# (rig.refresh_wait) so the figures repeat; CPU seconds come from /usr/bin/time -f.
set -euo pipefail
out=$1
data=${2:-../shared/data/roadscene_calib}
fast=${3:-sift}
accurate=${4:-xfeat}
every=${REFRESH_EVERY:-10}
mar=${MAR:-matchanything-ros}
mkdir "$out"
$mar make-bag "$out/bag" --folder "$data" --rig-fixed --no-progress
run() {  # name, replay options...
  local name=$1; shift
  /usr/bin/time -f "%e %U %S" -o "$out/$name.time" \
    $mar replay "$out/bag" --out "$out/$name.out" --no-progress -p rig.enabled=true "$@"
  $mar evaluate "$out/$name.out" --gt "$out/bag.gt.json" --json "$out/$name.json" > "$out/$name.txt"
}
run fast -p model="$fast"
run accurate -p model="$accurate"
run two_rate -p model="$fast" -p rig.refresh_model="$accurate" -p rig.refresh_every="$every" -p rig.refresh_wait=true
run two_rate_only -p model="$fast" -p rig.refresh_model="$accurate" -p rig.refresh_every="$every" -p rig.refresh_wait=true \
  -p rig.refresh_only=true
python3 - "$out" "$fast" "$accurate" "$every" <<'PY'
import json, statistics, sys
from pathlib import Path
out, fast, accurate, every = Path(sys.argv[1]), *sys.argv[2:]
runs = {"fast": f"{fast} alone", "accurate": f"{accurate} alone",
        "two_rate": f"two-rate: {fast} + {accurate} every {every}",
        "two_rate_only": f"two-rate, rig.refresh_only: {accurate} every {every} pooled"}
print("| rig | frames | CPU s / frame | rig corner error (px) at frame 10 / 20 / 30 / 40 / last | median over frames 20-last | OK frames |")
print("|---|---|---|---|---|---|")
for name, label in runs.items():
    frames = json.loads((out / f"{name}.json").read_text())["frames"]
    _, user, sys_ = (float(v) for v in (out / f"{name}.time").read_text().split()[-3:])
    curve = [f.get("rig_corner_error_px") for f in frames]
    pick = lambda i: "-" if i >= len(curve) or curve[i] is None else f"{curve[i]:.2f}"
    tail = [c for c in curve[19:] if c is not None]
    ok = sum(f["status"] == "OK" for f in frames)
    print(f"| {label} | {len(frames)} | {(user + sys_) / len(frames):.2f} | {pick(9)} / {pick(19)} / {pick(29)} / "
          f"{pick(39)} / {pick(len(curve) - 1)} | {statistics.median(tail):.2f} | {ok} |" if tail else f"| {label} | - |")
PY
