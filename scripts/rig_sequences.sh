#!/usr/bin/env bash
# Rig mode figures of docs/ACCURACY.md ("Rig mode"): fixed-rig sequences -> replay -> evaluate.
#   scripts/rig_sequences.sh OUT_DIR [DATA_DIR]
# OUT_DIR must not exist; DATA_DIR defaults to ../shared/data/roadscene_dev. Uses the CLI on
# PATH as `matchanything-ros` (or $MAR). About 4 min on 2 CPU cores (XFeat); RIG_STEREO_ALL=0
# skips the nine extra stereo rigs.
set -euo pipefail
out=$1
data=${2:-../shared/data/roadscene_dev}
mar=${MAR:-matchanything-ros}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir "$out"
run() {  # name, make-bag options..., -- replay options...
  local name=$1; shift
  local mk=() rp=()
  while [[ $# -gt 0 && $1 != -- ]]; do mk+=("$1"); shift; done
  [[ $# -gt 0 ]] && shift
  rp=("$@")
  $mar make-bag "$out/$name" "${mk[@]}" --no-progress
  $mar replay "$out/$name" --out "$out/$name.out" --no-progress "${rp[@]}"
  $mar evaluate "$out/$name.out" --gt "$out/$name.gt.json" --json "$out/$name.json" | tee "$out/$name.txt"
}
# one homography for the 56 pairs; the same with the thermal camera turned 2 deg at frame 30
run rs_fixed --folder "$data" --rig-fixed -- -p rig.enabled=true -p output.rig_calibration_file="$out/rs_fixed.rig.yaml"
run rs_change --folder "$data" --rig-change-frame 30 --rig-change-deg 2 -- -p rig.enabled=true
# per-frame baseline (no rig mode) on the fixed-rig frames
$mar replay "$out/rs_fixed" --out "$out/rs_fixed.norig.out" --no-progress
$mar evaluate "$out/rs_fixed.norig.out" --gt "$out/rs_fixed.gt.json" --json "$out/rs_fixed.norig.json" | tee "$out/rs_fixed.norig.txt"
# synthetic stereo, fixed extrinsics (the cameras of seed 0), 30 scenes at 640x512
run st_fixed --synthetic stereo --rig-fixed --frames 30 --size 640x512 -- --config "$here/config/driving_rig.yaml" \
  -p rig.enabled=true -p output.rig_calibration_file="$out/st_fixed.rig.yaml"
# nine more rigs (the cameras of seeds 100, ..., 900), the same way; then one table of all ten
if [[ ${RIG_STEREO_ALL:-1} == 1 ]]; then
  reports=("$out/st_fixed.json")
  for base in 100 200 300 400 500 600 700 800 900; do
    run "st_fixed_$base" --synthetic stereo --rig-fixed --frames 30 --size 640x512 --seed "$base" -- \
      --config "$here/config/driving_rig.yaml" -p rig.enabled=true > /dev/null
    reports+=("$out/st_fixed_$base.json")
  done
  python3 "$here/scripts/rig_summary.py" "${reports[@]}" | tee "$out/stereo_summary.txt"
fi
