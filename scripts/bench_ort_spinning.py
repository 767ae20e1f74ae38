#!/usr/bin/env python3
"""CPU-seconds and wall time per ELoFTR call through ONNX Runtime, with its idle pool threads
spinning (ORT's default) or sleeping (this package's default, ``OnnxRuntimeEngine``).

The deploy network with random weights (no checkpoint needed; the cost does not depend on the
weights) is exported once at ``--resolution``; then each setting runs in a fresh process,
alternating settings round by round so that drift of the machine hits both alike: ``--warmup``
untimed calls, then ``--calls`` timed ones. CPU-seconds are the child's user+system time over
the timed calls (all threads): spinning shows up as CPU time that buys no speed. The machine's
load average is printed with the results (docs/BENCHMARKS.md, "ONNX Runtime thread spinning").

    .venv/bin/python scripts/bench_ort_spinning.py --calls 5 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SETTINGS = (("spinning (ORT default)", "1"), ("sleeping (package default)", "0"))  # name, allow_spinning

CHILD = r"""
import json, resource, sys, time
from matchanything_ros.engines.benchmark import benchmark_pair
from matchanything_ros.engines.onnx_engine import OnnxRuntimeEngine

path, spin, threads, warmup, calls, w, h = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), *map(int, sys.argv[4:8])
engine = OnnxRuntimeEngine(path, allow_spinning=spin, intra_op_threads=threads or None)
image0, image1 = benchmark_pair(h, w)
for _ in range(warmup):
    engine.run(image0, image1, 0.2)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
walls, c0 = [], cpu()
for _ in range(calls):
    t0 = time.perf_counter()
    engine.run(image0, image1, 0.2)
    walls.append(time.perf_counter() - t0)
print(json.dumps({"cpu_s": (cpu() - c0) / calls, "wall_s": sorted(walls)[len(walls) // 2],
                  "threads": engine.intra_op_threads}))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: one per core)")
    p.add_argument("--resolution", default="640x480", help="WxH of the export")
    p.add_argument("--work-dir", default="/tmp/matchanything_ort_spinning")
    args = p.parse_args()
    try:
        w, h = (int(v) for v in args.resolution.lower().split("x"))
    except ValueError:
        print(f"bench_ort_spinning: --resolution must be WxH, got {args.resolution!r}", file=sys.stderr)
        return 2
    if min(args.calls, args.rounds) < 1 or args.warmup < 0:
        print("bench_ort_spinning: --calls and --rounds must be >= 1, --warmup >= 0", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    from matchanything_ros.engines.export import export_onnx
    from matchanything_ros.engines.random_weights import random_deploy_model

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    onnx_path = work / f"eloftr_{h}x{w}.onnx"
    if not onnx_path.is_file():
        export_onnx(random_deploy_model(), onnx_path, h, w)
    env = {k: v for k, v in os.environ.items() if k != "MATCHANYTHING_ORT_SPINNING"}
    env["PYTHONPATH"] = str(REPO)
    rows: dict[str, list[dict]] = {name: [] for name, _ in SETTINGS}
    for _ in range(args.rounds):
        for name, spin in SETTINGS:
            out = subprocess.run([sys.executable, "-c", CHILD, str(onnx_path), spin, str(args.threads),
                                  str(args.warmup), str(args.calls), str(w), str(h)],
                                 env=env, capture_output=True, text=True, check=True)
            rows[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"ELoFTR {w}x{h}, ONNX Runtime CPU, {rows[SETTINGS[0][0]][0]['threads']} intra-op threads, "
          f"{args.calls} calls x {args.rounds} rounds; load average {os.getloadavg()[0]:.1f} after the run")
    print("| idle pool threads | CPU-s per call (each round) | wall s per call, median (each round) |")
    print("|---|---|---|")
    for name, rs in rows.items():
        cpu = " / ".join(f"{r['cpu_s']:.2f}" for r in rs)
        wall = " / ".join(f"{r['wall_s']:.2f}" for r in rs)
        print(f"| {name} | {cpu} | {wall} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
