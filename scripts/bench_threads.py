#!/usr/bin/env python3
"""CPU-seconds and wall time per default-pipeline call, by OpenMP wait policy and thread count.

Each setting runs in a fresh process (libgomp reads OMP_WAIT_POLICY when torch loads): the
default pipeline (``Pipeline(PipelineConfig())``: model auto, homography, polarity both) on one
synthetic 640x512 visible/thermal pair, ``--warmup`` untimed calls then ``--calls`` timed ones.
CPU-seconds are the process's user+system time over the timed calls (all its threads), so a
spinning OpenMP pool shows up as CPU time that buys no speed. The machine's load is printed:
the spinning costs most where other processes compete for the cores.

    .venv/bin/python scripts/bench_threads.py --calls 20
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, time
import numpy as np
from matchanything_ros.node.threads import apply_threads
from matchanything_ros.pipeline import Pipeline, PipelineConfig
from matchanything_ros.synthetic import make_planar_pair

threads, warmup, calls = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
used = apply_threads(threads)
pipe = Pipeline(PipelineConfig())
pair = make_planar_pair(0, size=(640, 512))
for _ in range(warmup):
    pipe.process(pair.visible, pair.thermal)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
walls, c0 = [], cpu()
for _ in range(calls):
    t = time.perf_counter()
    pipe.process(pair.visible, pair.thermal)
    walls.append(time.perf_counter() - t)
print(json.dumps({"threads": used, "model": pipe.matcher.describe(), "cpu_s": (cpu() - c0) / calls,
                  "wall_median_s": float(np.median(walls)), "wall_mean_s": float(np.mean(walls))}))
"""


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        name = "unknown CPU"
    return f"{name}, {os.cpu_count()} logical CPUs"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}", help="comma list (0: torch default)")
    parser.add_argument("--policies", default="default,PASSIVE",
                        help="OMP_WAIT_POLICY values; 'default' = unset (libgomp's spin-then-sleep)")
    parser.add_argument("--rounds", type=int, default=2, help="repeat every setting, interleaved (drift)")
    args = parser.parse_args()

    print(f"machine: {cpu_model()}; load average before: {os.getloadavg()[0]:.1f} (1 min)")
    rows: dict[tuple, list] = {}
    for _ in range(args.rounds):
        for policy in args.policies.split(","):
            for threads in (int(t) for t in args.threads.split(",")):
                env = dict(os.environ, PYTHONPATH=str(REPO))
                env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
                env.pop("OMP_NUM_THREADS", None)
                env.pop("MATCHANYTHING_THREADS", None)
                env.pop("OMP_WAIT_POLICY", None)
                if policy != "default":
                    env["OMP_WAIT_POLICY"] = policy
                out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(args.warmup), str(args.calls)],
                                     env=env, capture_output=True, text=True, check=True).stdout
                rows.setdefault((policy, threads), []).append(json.loads(out.strip().splitlines()[-1]))
    print(f"load average after: {os.getloadavg()[0]:.1f}; model {next(iter(rows.values()))[0]['model']}")
    print("| OMP_WAIT_POLICY | torch threads | CPU-s per call | wall per call (median) |")
    print("|---|---|---|---|")
    for (policy, _), runs in rows.items():
        cpu = sorted(r["cpu_s"] for r in runs)
        wall = sorted(r["wall_median_s"] for r in runs)
        fmt = lambda v: "/".join(f"{x:.2f}" for x in v)  # noqa: E731  every round, sorted
        print(f"| {policy} | {runs[0]['threads']} | {fmt(cpu)} | {fmt(wall)} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
