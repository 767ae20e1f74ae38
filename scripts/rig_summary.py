#!/usr/bin/env python3
"""Aggregate `evaluate --json` reports of fixed-rig stereo sequences into one table.

  .venv/bin/python scripts/rig_summary.py OUT_DIR/st_*.json

Prints, per sequence and over all, the rig estimate's rotation / translation-direction error
from frame 20 on and the share of those frames whose NEES lies within the chi-square 95 %
bound (docs/ACCURACY.md, "Rig mode"). Exits 2 with one line on a missing or foreign file."""
import json
import sys
from pathlib import Path


def main(paths: list[str]) -> int:
    if not paths:
        print("usage: rig_summary.py REPORT.json [...]", file=sys.stderr)
        return 2
    rows = []
    for p in paths:
        try:
            rig = json.loads(Path(p).read_text())["summary"]["rig"]
            rows.append((Path(p).stem, rig["rotation"], rig["translation"], rig["nees_rotation"], rig["nees_translation"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"rig_summary: {p}: not an evaluate report with a stereo rig section ({exc})", file=sys.stderr)
            return 2
    print("| sequence | rotation error max (deg) | direction error median / max (deg) | NEES rotation / direction within bound |")
    print("|---|---|---|---|")
    within = {"r": [0, 0], "t": [0, 0]}
    for name, rot, tr, nr, nt in rows:
        print(f"| {name} | {rot['after_20_frames_max_deg']:.2f} | {tr['after_20_frames_median_deg']:.2f} / "
              f"{tr['after_20_frames_max_deg']:.2f} | {nr['share_within_chi2_95']:.2f} / {nt['share_within_chi2_95']:.2f} |")
        for key, n in (("r", nr), ("t", nt)):
            within[key][0] += n["share_within_chi2_95"] * n["frames"]
            within[key][1] += n["frames"]
    worst_rot = max(r[1]["after_20_frames_max_deg"] for r in rows)
    worst_dir = max(r[2]["after_20_frames_max_deg"] for r in rows)
    below5 = sum(r[2]["after_20_frames_max_deg"] < 5.0 for r in rows)
    print(f"all {len(rows)}: rotation max {worst_rot:.2f} deg; direction max {worst_dir:.2f} deg, "
          f"below 5 deg throughout in {below5} of {len(rows)}; NEES within bound: rotation "
          f"{within['r'][0] / max(1, within['r'][1]):.2f}, direction {within['t'][0] / max(1, within['t'][1]):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
