"""`matchanything-ros benchmark`: latency/memory of backend x resolution x precision, side by side
with the reference forward (transformers' EfficientLoFTR) on the same machine and weights."""
from __future__ import annotations

HELP = "latency/memory benchmark: backend x resolution x precision"


def add_arguments(parser) -> None:
    parser.add_argument("--backends", default="torch,onnxruntime", help="comma list of torch, onnxruntime, openvino, tensorrt")
    parser.add_argument("--resolutions", default="640x480", help="comma list of WIDTHxHEIGHT (multiples of 32)")
    parser.add_argument("--precisions", default="fp32", help="comma list of fp32, fp16")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--weights", default="", help="weights file (default: local cache)")
    parser.add_argument("--random-weights", action="store_true", help="seeded random weights (no download needed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top-k", type=int, default=2048, help="match slots K of the deploy network")
    parser.add_argument("--threshold", type=float, default=0.2, help="coarse threshold (same for the reference)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per case")
    parser.add_argument("--runs", type=int, default=10, help="timed calls per case")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch and onnxruntime (0: all)")
    parser.add_argument("--no-reference", action="store_true", help="skip the transformers reference forward")
    parser.add_argument("--cuda-graphs", action="store_true", help="torch backend on CUDA: replay CUDA graphs")
    parser.add_argument("--work-dir", default="benchmark_work", help="where exports and engines are written")
    parser.add_argument("--json", metavar="OUT", help="also write the results and environment as JSON")
    parser.add_argument(
        "--models",
        default="",
        help="time whole matchers instead, e.g. xfeat,matchanything_eloftr,minima_splg,minima_splg:onnxruntime,"
        "minima_loftr,matchanything_roma (MODEL[:BACKEND]; resolution = long side, the image size for RoMa, which "
        "resizes to its own; see docs/MODELS.md)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the benchmark, profile ONNX Runtime per operator at each resolution",
    )


def run(args) -> int:
    import dataclasses
    from ..json_out import dumps
    from pathlib import Path

    from ..engines import BACKENDS, PRECISIONS
    from ..engines.benchmark import (
        BenchmarkConfig, environment, format_table, parse_resolution, run_benchmark, unsupported,
    )
    from ..matching import MatcherError
    from . import CommandError

    from .common import check_output_file

    check_output_file(args.json)
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
    bad = [b for b in backends if b not in BACKENDS] + [p for p in precisions if p not in PRECISIONS]
    if bad or not backends or not precisions:
        raise CommandError(f"unknown backend/precision {bad}; backends: {', '.join(BACKENDS)}; precisions: {', '.join(PRECISIONS)}")
    if args.runs < 1 or args.warmup < 0:
        raise CommandError("--runs must be >= 1 and --warmup >= 0")
    try:
        resolutions = tuple(parse_resolution(r.strip()) for r in args.resolutions.split(",") if r.strip())
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    # Before any work (exports take minutes): every requested backend must be able to run here.
    from ..engines.availability import backend_problems

    problems = backend_problems(backends, args.device)
    if problems:
        raise CommandError("cannot benchmark: " + "; ".join(problems) + " (nothing was run or written)")
    config = BenchmarkConfig(
        backends=backends,
        resolutions=resolutions,
        precisions=precisions,
        device=args.device,
        weights=args.weights or None,
        random_weights=args.random_weights,
        seed=args.seed,
        top_k=args.top_k,
        threshold=args.threshold,
        warmup=args.warmup,
        runs=args.runs,
        threads=args.threads or None,
        reference=not args.no_reference,
        work_dir=args.work_dir,
        cuda_graphs=args.cuda_graphs,
    )
    env = environment()
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    if args.models:
        return _run_models(args, resolutions, config, env)
    try:
        results = run_benchmark(config, progress=lambda line: print(line, flush=True))
    except MatcherError as exc:  # weights not found / unreadable
        raise CommandError(f"{exc} (or use --random-weights)") from None
    print()
    print(format_table(results))
    failed = [f"{r.backend}/{r.precision} {r.width}x{r.height}" for r in results
              if r.backend != "reference" and r.median_ms is None
              and not unsupported(r.backend, r.precision)]
    profiles = {}
    if args.profile:
        from ..engines.benchmark import benchmark_pair, format_profile, profile_onnxruntime

        for width, height in resolutions:
            onnx_path = Path(args.work_dir) / f"eloftr_{height}x{width}_k{args.top_k}.onnx"
            if not onnx_path.is_file():
                print(f"no ONNX export for {width}x{height} (include onnxruntime in --backends to profile)")
                continue
            image0, image1 = benchmark_pair(height, width, args.seed)
            profile = profile_onnxruntime(onnx_path, image0, image1, args.threshold,
                                          threads=args.threads or None, trace_dir=args.work_dir)
            profiles[f"{width}x{height}"] = profile
            print(f"\n### ONNX Runtime profile, {width}x{height}\n")
            print(format_profile(profile))
    if args.json:
        payload = {
            "environment": env,
            "config": dataclasses.asdict(config),
            "results": [dataclasses.asdict(r) for r in results],
            "onnxruntime_profiles": profiles,
        }
        Path(args.json).write_text(dumps(payload))
        print(f"wrote {args.json}")
    if failed:
        raise CommandError(f"{len(failed)} case(s) failed: {', '.join(failed)} (see the notes above)")
    return 0


def _run_models(args, resolutions, config, env) -> int:
    """``--models``: whole matchers, round-robin (matching/model_benchmark.py)."""
    import dataclasses
    from ..json_out import dumps
    from pathlib import Path

    from ..engines.benchmark import format_table
    from ..matching.model_benchmark import parse_cases, run_model_benchmark
    from . import CommandError

    try:
        cases = parse_cases(args.models)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    results = run_model_benchmark(
        cases, resolutions, device=args.device, weights=args.weights or None, random_weights=args.random_weights,
        seed=args.seed, warmup=args.warmup, runs=args.runs, work_dir=args.work_dir,
        progress=lambda line: print(line, flush=True),
    )
    print()
    print(format_table(results).replace("| backend |", "| model[:backend] |", 1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        payload = {"environment": env, "models": args.models, "results": [dataclasses.asdict(r) for r in results]}
        Path(args.json).write_text(dumps(payload))
        print(f"wrote {args.json}")
    failed = [f"{r.backend} {r.width}x{r.height}" for r in results if r.median_ms is None]
    if failed:
        raise CommandError(f"{len(failed)} case(s) failed: {', '.join(failed)} (see the notes above)")
    return 0
