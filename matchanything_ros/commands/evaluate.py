"""`matchanything-ros evaluate OUT_BAG --gt GT.json [--report DIR]`: score a replayed bag."""
from __future__ import annotations

HELP = "score a replayed bag against ground truth, write a report"


def add_arguments(parser) -> None:
    parser.add_argument("bag", metavar="OUT_BAG", help="bag with the node's outputs (from replay or ros2 bag record)")
    parser.add_argument(
        "--gt",
        metavar="GT.json",
        help="ground truth written by make-bag (<bag>.gt.json); without it: matches, inliers, status and timings only",
    )
    parser.add_argument("--images", metavar="BAG", help="bag with the input images, for the worst-frame pictures")
    parser.add_argument("--report", metavar="DIR", help="write report.md, metrics.json and PNG plots into DIR")
    parser.add_argument("--namespace", default="/", help="namespace the node's outputs were published in (default /)")
    parser.add_argument("--worst", type=int, default=3, help="draw the matches of this many worst frames (default 3)")
    parser.add_argument("--thumb-width", type=int, default=640, help="width of the drawn-match images in px (default 640)")
    parser.add_argument("--json", metavar="OUT.json", help="write summary + per-frame scores as JSON")


def run(args) -> int:
    import shlex
    import sys
    from pathlib import Path

    from ..bags.storage import BagError
    from ..evaluation.evaluate import evaluate, format_summary
    from . import CommandError

    from .common import check_output_file, check_output_folder

    check_output_file(args.json)
    check_output_folder(args.report)
    if args.worst < 0 or args.thumb_width < 64:
        raise CommandError("--worst must be >= 0 and --thumb-width >= 64")
    try:
        ev = evaluate(args.bag, args.gt, namespace=args.namespace, images=args.images)
    except BagError as exc:
        raise CommandError(str(exc)) from None
    print(format_summary(ev.summary))
    if args.json:
        from ..json_out import dumps
        from ..evaluation.report import frame_rows

        Path(args.json).write_text(dumps({"summary": ev.summary, "frames": frame_rows(ev.frames)}))
        print(f"wrote {args.json}")
    if args.report:
        from ..evaluation.report import write_report

        command = "matchanything-ros " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""
        try:
            path = write_report(ev, args.report, command=command, worst=args.worst, thumb_width=args.thumb_width)
        except BagError as exc:
            raise CommandError(str(exc)) from None
        print(f"wrote {path}")
    return 0
