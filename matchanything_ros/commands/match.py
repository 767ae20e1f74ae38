"""`matchanything-ros match VISIBLE THERMAL`: match one image pair from files."""
from __future__ import annotations

HELP = "match a visible and a thermal image file"


def add_arguments(parser) -> None:
    from ..pipeline import GEOMETRY_MODES, POLARITIES

    parser.add_argument("visible", help="visible image file (8-bit colour or gray)")
    parser.add_argument("thermal", help="thermal image file (8- or 16-bit)")
    parser.add_argument("--model", default="auto", help="auto (default), xfeat, sift, matchanything_eloftr, minima_splg, minima_loftr, "
                        "matchanything_roma, minima_roma")
    parser.add_argument("--backend", default="auto", help="ELoFTR / minima_splg backend: auto, torch, onnxruntime, openvino, tensorrt")
    parser.add_argument("--weights", default="", help="weights file or folder (ELoFTR, MINIMA or RoMa; default: cache)")
    parser.add_argument("--geometry", default="homography", choices=GEOMETRY_MODES)
    parser.add_argument("--polarity", default="both", choices=POLARITIES, help="thermal polarity (default both)")
    parser.add_argument("--resolution", type=int, default=640, help="matcher long side (px; RoMa: its own fixed sizes)")
    parser.add_argument("--network-size", default="auto",
                        help="MatchAnything-ELoFTR input: auto (keep the aspect, long side --resolution) or WxH "
                             "(stretch every pair: 640x480 is the authors' Space)")
    parser.add_argument(
        "--intrinsics",
        nargs="+",
        metavar="K",
        help="visible [thermal] intrinsics: camera_info YAML or fx,fy,cx,cy (needed for essential)",
    )
    parser.add_argument("--matcher-option", action="append", default=[], metavar="KEY=VALUE",
                        help="extra matcher constructor option, e.g. coarse_res=448 (RoMa), method=sparse "
                             "(XFeat); repeatable")
    parser.add_argument("--json", metavar="OUT", help="write the result (geometry, matches) as JSON")
    parser.add_argument("--viz", metavar="OUT.png", help="write a picture of the matches")
    parser.add_argument("--outliers", action="store_true", help="--viz: also draw the outlier matches (red)")
    from .common import add_limit_arguments

    add_limit_arguments(parser)


def run(args) -> int:
    from ..json_out import dumps
    from pathlib import Path

    import cv2

    from ..matching import MatcherError
    from ..pipeline import Pipeline, PipelineConfig
    from . import CommandError
    from .common import check_output_file, limits_from, read_image, read_intrinsics

    for out in (args.json, args.viz):
        check_output_file(out)
    limits = limits_from(args)
    visible = read_image(args.visible, "visible", limits)
    thermal = read_image(args.thermal, "thermal", limits)
    if thermal.ndim == 3:  # a thermal frame saved as 3-channel gray
        thermal = cv2.cvtColor(thermal, cv2.COLOR_BGR2GRAY)
    K0 = K1 = None
    if args.geometry == "essential" and not args.intrinsics:
        raise CommandError("--geometry essential needs the cameras' intrinsics: --intrinsics camera_info.yaml "
                           "(both) or VISIBLE THERMAL (YAML files or fx,fy,cx,cy)")
    if args.intrinsics:
        if len(args.intrinsics) > 2:
            raise CommandError("--intrinsics takes one (both cameras) or two values (visible thermal)")
        K0 = read_intrinsics(args.intrinsics[0])
        K1 = read_intrinsics(args.intrinsics[-1])
    try:
        config = PipelineConfig(
            model=args.model,
            backend=args.backend,
            weights=args.weights,
            geometry=args.geometry,
            polarity=args.polarity,
            resolution=args.resolution,
            network_size=args.network_size,
        )
        matcher = None
        if args.matcher_option:
            from ..matching import create_matcher
            from .accuracy import _parse_sets

            model = config.resolved_model()
            matcher = create_matcher(model, **{**config.matcher_options(model), **_parse_sets(args.matcher_option)})
        pipeline = Pipeline(config, matcher=matcher)
        result = pipeline.process(visible, thermal, K0=K0, K1=K1)
    except TypeError as exc:  # an option the matcher does not take
        raise CommandError(f"--matcher-option: {exc}") from None
    except (MatcherError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    print(result.summary())
    if result.geometry.matrix is not None:
        print(f"{result.geometry.mode} matrix:\n{result.geometry.matrix}")
    if args.json:
        Path(args.json).write_text(dumps(result.to_dict()))
        print(f"wrote {args.json}")
    if args.viz:
        from ..viz import draw_matches

        vis_u8, th_u8 = pipeline.preprocess(visible, thermal)
        if result.polarity == "inverted":
            th_u8 = 255 - th_u8
        score = result.quality.score
        title = (f"{pipeline.matcher.describe().split(' (')[0]}, {result.geometry.mode} {result.geometry.status.value}"
                 + (f" (score {score:.2f})" if score is not None else ""))
        canvas = draw_matches(vis_u8, th_u8, result.matches, result.geometry.inliers, outliers=args.outliers, title=title)
        if not cv2.imwrite(str(args.viz), canvas):
            raise CommandError(f"cannot write {args.viz}")
        print(f"wrote {args.viz}")
    return 0
