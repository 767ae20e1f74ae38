"""`matchanything-ros export`: MatchAnything-ELoFTR -> static-shape ONNX (+ TensorRT check)."""
from __future__ import annotations

HELP = "export MatchAnything-ELoFTR (or MINIMA SuperPoint+LightGlue) to ONNX"


def add_arguments(parser) -> None:
    parser.add_argument("--weights", default="", help="weights file or folder (default: local cache)")
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="seeded random weights instead of a checkpoint (for testing the export / timings)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-weights")
    parser.add_argument("--height", type=int, default=480, help="network input height (multiple of 32)")
    parser.add_argument("--width", type=int, default=640, help="network input width (multiple of 32)")
    parser.add_argument("--top-k", type=int, default=2048, help="fixed number of match slots K (<= 3840)")
    parser.add_argument("--match-rule", choices=("mtd", "mnn"), default=None,
                        help="coarse selection baked into the graph (default: the weights' config, mtd as the authors)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (TensorRT 10 reads 9..20)")
    parser.add_argument("--out", required=True, help="output .onnx file")
    parser.add_argument("--model", default="matchanything_eloftr", choices=("matchanything_eloftr", "minima_splg"),
                        help="network (minima_splg: --top-k = SuperPoint keypoints per image; docs/MODELS.md)")


def load_model(args):
    """The deploy network from --weights / the cache, or seeded random weights."""
    from ..matching import MatcherError
    from . import CommandError

    try:
        if getattr(args, "model", "matchanything_eloftr") == "minima_splg":
            from ..models.minima.splg import SPLGConfig, load_splg, random_splg
            from ..models.minima.weights import resolve_files

            config = SPLGConfig(max_keypoints=args.top_k)
            if args.random_weights:
                return random_splg(args.seed, config, adaptive=False)
            return load_splg(*resolve_files("minima_splg", args.weights or None, allow_download=False), config, adaptive=False)
        import dataclasses

        from ..models.eloftr.config import ELoFTRConfig
        from ..models.eloftr.weights import config_for, resolve_weights

        rule = getattr(args, "match_rule", None)
        if args.random_weights:
            from ..engines.random_weights import random_deploy_model

            config = ELoFTRConfig(match_rule=rule) if rule else None
            return random_deploy_model(top_k=args.top_k, seed=args.seed, config=config)
        from ..models.eloftr.model import load_deploy_model

        path = resolve_weights(args.weights or None, allow_download=False)
        config = config_for(path)
        if rule:
            config = dataclasses.replace(config, match_rule=rule)
        return load_deploy_model(path, top_k=args.top_k, config=config)
    except (MatcherError, ValueError) as exc:
        # the hint only where weights are what is missing
        hint = "" if args.random_weights or isinstance(exc, ValueError) else " (or use --random-weights)"
        raise CommandError(f"{exc}{hint}") from None


def run(args) -> int:
    from pathlib import Path

    from ..engines import EngineError
    from ..engines.export import check_tensorrt_compatible, export_onnx
    from . import CommandError

    for name in ("height", "width"):
        value = getattr(args, name)
        if value <= 0 or value % 32:
            raise CommandError(f"--{name} {value} must be a positive multiple of 32")
    out = Path(args.out)
    if out.suffix != ".onnx":
        raise CommandError(f"--out {out}: expected a .onnx file name")
    from .common import Heartbeat

    model = load_model(args)
    try:
        scopes = {"fp32_scopes": ()} if getattr(args, "model", "") == "minima_splg" else {}
        with Heartbeat(f"exporting {getattr(args, 'model', 'matchanything_eloftr')} {args.height}x{args.width} "
                       f"K={args.top_k} to ONNX (minutes on a few CPU cores)"):
            export_onnx(model, out, args.height, args.width, opset=args.opset, top_k=args.top_k, **scopes)
        problems = check_tensorrt_compatible(out)
    except EngineError as exc:
        raise CommandError(str(exc)) from None
    size_mb = out.stat().st_size / 1e6
    print(f"wrote {out} ({size_mb:.1f} MB): {args.height}x{args.width}, K={args.top_k}, opset {args.opset}")
    if problems:
        print(f"TensorRT 10 compatibility: {len(problems)} problem(s):")
        for problem in problems:
            print(f"  - {problem}")
    else:
        print("TensorRT 10 compatibility: ok (supported operators only, no NonZero, TopK K <= 3840, static shapes)")
    return 0
