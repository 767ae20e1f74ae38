#!/usr/bin/env python3
"""Is OpenVINO's bf16 good enough to offer? Speed and parity of MatchAnything-ELoFTR in fp32 and
bf16 on OpenVINO's CPU plugin, side by side, on the authors' reference pack (issue 22).

    .venv/bin/python scripts/openvino_bf16.py [--reference ../shared/reference/matchanything_eloftr] [--runs 5]

For each precision: the median seconds of one network call (640x480, K = 3840, the pack's
threshold; calls alternate between the two compiled models), and per case the authors' matches
reproduced within 0.002 px (the parity command's tolerance) and within 1 px (issue 22's budget
for reduced precision). bf16 needs a CPU with AMX or AVX512-BF16; the script says so otherwise.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="../shared/reference/matchanything_eloftr")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    import openvino as ov

    from matchanything_ros.models.eloftr.matcher import ELoFTRMatcher
    from matchanything_ros.models.eloftr.parity import KPT_TOL, compare, load_pack
    from matchanything_ros.models.eloftr.preprocess import prepare_pair

    core = ov.Core()
    if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        print("this CPU has no native bf16 (AMX / AVX512-BF16): nothing to measure")
        return 0
    pack = load_pack(args.reference, None)
    with tempfile.TemporaryDirectory() as work:
        matcher = ELoFTRMatcher(weights=pack.weights, backend="onnxruntime", device="cpu", max_matches=3840,
                                match_threshold=pack.threshold, fixed_size=pack.network_size, download=False,
                                cache_dir=work)
        onnx_path = matcher._onnx_for(pack.network_size)  # the export every backend runs
        compiled = {p: core.compile_model(str(onnx_path), "CPU", {"INFERENCE_PRECISION_HINT": p, "INFERENCE_NUM_THREADS": 2,
                                                                   "PERFORMANCE_HINT": "LATENCY"})
                    for p in ("f32", "bf16")}
        requests = {p: c.create_infer_request() for p, c in compiled.items()}
        seconds = {p: [] for p in compiled}
        rows = []
        for case in pack.cases:
            pair = prepare_pair(*pack.images(case), 640, pack.network_size)
            feeds = {"image0": pair.image0, "image1": pair.image1, "threshold": np.asarray(pack.threshold, np.float32)}
            ref = tuple(pack.get(case, name, "demo") for name in ("mkpts0", "mkpts1", "mconf"))
            for p, req in requests.items():
                req.infer(feeds)  # warm-up
            for _ in range(args.runs):
                for p, req in requests.items():  # alternate: machine drift hits both alike
                    start = time.perf_counter()
                    req.infer(feeds)
                    seconds[p].append(time.perf_counter() - start)
            for p, req in requests.items():
                out = req.infer(feeds)
                k0, k1, s = (np.array(out[compiled[p].output(n)]) for n in ("kpts0", "kpts1", "scores"))
                keep = s > 0
                ours = (pair.to_original(k0[keep], 0), pair.to_original(k1[keep], 1), s[keep])
                exact, near = compare(ours, ref, KPT_TOL), compare(ours, ref, 1.0)
                rows.append((case, p, exact["ours"], exact["authors"], exact["common"], near["common"]))
    machine = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.split(":")[-1].strip()
    print(f"machine: {machine}, 2 inference threads; openvino {ov.__version__}; reference {args.reference}")
    print("| precision | median s per call | x fp32 |")
    print("|---|---|---|")
    base = statistics.median(seconds["f32"])
    for p, values in seconds.items():
        print(f"| {p} | {statistics.median(values):.3f} | {base / statistics.median(values):.2f} |")
    print()
    print(f"| case | precision | ours | authors | within {KPT_TOL:g} px | within 1 px |")
    print("|---|---|---|---|---|---|")
    for case, p, ours, authors, exact, near in rows:
        print(f"| {case} | {p} | {ours} | {authors} | {exact} ({exact / authors:.1%}) | {near} ({near / authors:.1%}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
