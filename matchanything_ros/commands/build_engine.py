"""`matchanything-ros build-engine`: build (and cache) a TensorRT engine from the ONNX export."""
from __future__ import annotations

HELP = "build a TensorRT engine from the ONNX export"


def add_arguments(parser) -> None:
    parser.add_argument("--onnx", required=True, help="ONNX file from `matchanything-ros export`")
    parser.add_argument("--precision", default="fp16", choices=("fp16", "fp32"))
    parser.add_argument("--out", default="", help="output folder (default: the engine cache)")
    parser.add_argument("--device", default="cuda", help="CUDA device (cuda or cuda:N)")
    parser.add_argument("--timing-cache", default="", help="timing cache file (default: in --out)")
    parser.add_argument("--workspace-gb", type=float, default=4.0, help="builder workspace limit")
    parser.add_argument("--rebuild", action="store_true", help="rebuild even if a current engine exists")
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="only check the ONNX file against TensorRT 10's supported operators (no TensorRT needed)",
    )


def run(args) -> int:
    from pathlib import Path

    from ..engines import EngineError
    from ..engines.export import check_mixed_precision, check_tensorrt_compatible, mixed_fp16
    from . import CommandError

    onnx_path = Path(args.onnx)
    try:
        problems = check_tensorrt_compatible(onnx_path)
        if args.precision == "fp16" and not problems:
            # the graph an fp16 engine is built from (strongly typed, TensorRT 10 and 11)
            mixed = mixed_fp16(onnx_path, onnx_path.with_name(onnx_path.stem + ".fp16mixed.onnx"))
            problems = [f"fp16 graph {mixed.name}: {p}" for p in
                        check_tensorrt_compatible(mixed) + check_mixed_precision(mixed)]
    except EngineError as exc:
        raise CommandError(str(exc)) from None
    for problem in problems:
        print(f"TensorRT compatibility problem: {problem}")
    if args.check_only:
        print(f"{onnx_path}: {'ok' if not problems else f'{len(problems)} problem(s)'} for TensorRT 10 (its ONNX operator list; 11's is not checked here)"
              + (" (fp16: the mixed-precision graph, strongly typed)" if args.precision == "fp16" else ""))
        return 0 if not problems else 1
    if problems:
        raise CommandError(f"{onnx_path} has {len(problems)} TensorRT compatibility problem(s) (listed above)")
    try:
        from ..engines.tensorrt_engine import TensorRTEngine, default_cache_dir

        engine = TensorRTEngine(
            onnx_path,
            cache_dir=Path(args.out) if args.out else default_cache_dir(),
            device=args.device,
            precision=args.precision,
            rebuild=args.rebuild,
            timing_cache=args.timing_cache or None,
            workspace_gb=args.workspace_gb,
        )
    except EngineError as exc:
        raise CommandError(str(exc)) from None
    print(f"engine: {engine.engine_path} ({engine.precision}, {engine.input_size[0]}x{engine.input_size[1]}, K={engine.top_k})")
    return 0
