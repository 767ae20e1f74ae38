"""`matchanything-ros accuracy`: the homography accuracy protocol on aligned visible/thermal pairs.

For every pair of ``--data`` the thermal image is warped by a homography drawn from a per-pair
seed, the pipeline (the same code path as the node) matches visible against warped thermal and
MAGSAC++ (3 px) fits a homography; results per model: SR@3/5/10 px and AUC@3/5/10 of the mean
corner error, median matches, ground-truth inlier ratio, time per pair. See docs/ACCURACY.md.
"""
from __future__ import annotations

HELP = "accuracy protocol on aligned visible/thermal pairs (benchmark)"

DEFAULT_DATA = "../shared/data/roadscene_dev"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--data",
        default=DEFAULT_DATA,
        help=f"folder with visible/ and thermal/ aligned pairs (default {DEFAULT_DATA}, relative to the "
        "current directory, else to the repository root)",
    )
    parser.add_argument("--models", default="xfeat,sift", help="comma-separated models (default xfeat,sift)")
    parser.add_argument(
        "--polarity", default="both", help="comma-separated thermal polarities: normal, inverted, auto, both (default both)"
    )
    parser.add_argument("--resolution", type=int, default=None, help="matcher long side (default: pipeline default)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra pipeline option, dotted names allowed (e.g. thermal.clahe=true); repeatable",
    )
    parser.add_argument(
        "--matcher-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra matcher constructor option (e.g. method=star, clahe=false); repeatable",
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N pairs")
    parser.add_argument("--seed", type=int, default=0, help="pair i uses warp seed SEED+i (default 0)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's default)")
    parser.add_argument("--json", default=None, metavar="OUT", help="write summary and per-pair results as JSON")
    parser.add_argument("--markdown", default=None, metavar="OUT", help="write the results table as Markdown")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--random-weights",
        metavar="DIR",
        default=None,
        help="weighted models (ELoFTR, MINIMA, RoMa) get seeded random checkpoints written to DIR: proves the "
        "plumbing only, the scores mean nothing (docs/MODELS.md)",
    )


def _find_data(path_text: str):
    from pathlib import Path

    path = Path(path_text)
    if path.is_absolute() or path.is_dir():
        return path
    repo_root = Path(__file__).resolve().parents[2]
    alt = repo_root / path
    return alt if alt.is_dir() else path


def _parse_sets(items: list[str]) -> dict:
    import yaml

    from . import CommandError

    out = {}
    for item in items:
        if "=" not in item:
            raise CommandError(f"expected KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def machine_note() -> str:
    """One line describing where the numbers were taken."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    note = f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"
    try:
        import torch

        note += f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
        if torch.cuda.is_available():
            note += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return note


def markdown_table(rows: list[dict]) -> str:
    """Results table, one row per (model, polarity)."""
    head = (
        "| model | polarity | pairs | SR@3 | SR@5 | SR@10 | AUC@3 | AUC@5 | AUC@10 | coverage | OK precision "
        "| median matches | GT inlier ratio | wall s / pair | CPU s / pair |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        s = r["summary"]
        lines.append(
            f"| {r['model']} | {r['polarity']} | {s['pairs']} | {s['SR@3']:.2f} | {s['SR@5']:.2f} | "
            f"{s['SR@10']:.2f} | {s['AUC@3']:.3f} | {s['AUC@5']:.3f} | {s['AUC@10']:.3f} | "
            f"{s['coverage']:.2f} | {s['ok_precision']:.3f} | {s['median_matches']:.0f} | {s['gt_inlier_ratio']:.2f} | {s['mean_time_s']:.3f} | "
            f"{s['mean_cpu_time_s']:.3f} |"
        )
    return head + "\n".join(lines) + "\n"


def command_line(args) -> str:
    """The command that reproduces this run (every option that decides the numbers)."""
    import shlex

    parts = ["matchanything-ros", "accuracy", "--data", args.data, "--models", args.models, "--polarity", args.polarity]
    for flag, value in (("--resolution", args.resolution), ("--limit", args.limit), ("--threads", args.threads or None)):
        if value is not None:
            parts += [flag, str(value)]
    if args.device != "auto":
        parts += ["--device", args.device]
    if args.seed:
        parts += ["--seed", str(args.seed)]
    for item in args.set:
        parts += ["--set", item]
    for item in args.matcher_option:
        parts += ["--matcher-option", item]
    return " ".join(shlex.quote(p) for p in parts)


def run(args) -> int:
    import dataclasses
    import sys
    from pathlib import Path

    from ..evaluation.homography_protocol import load_aligned_pairs, run_protocol, summarize
    from ..json_out import dumps
    from ..matching import MatcherError, create_matcher
    from ..pipeline import POLARITIES, Pipeline, PipelineConfig
    from . import CommandError

    from .common import check_output_file

    for out_file in (args.json, args.markdown):
        check_output_file(out_file)
    if args.limit is not None and args.limit < 1:
        raise CommandError(f"--limit must be >= 1, got {args.limit}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    polarities = [p.strip() for p in args.polarity.split(",") if p.strip()]
    if not models:
        raise CommandError("--models is empty")
    for p in polarities:
        if p not in POLARITIES:
            raise CommandError(f"--polarity {p!r}: choose from {', '.join(POLARITIES)}")
    data = _find_data(args.data)
    try:
        pairs = load_aligned_pairs(data, limit=args.limit)
    except ValueError as exc:
        raise CommandError(f"--data: {exc}") from None
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    extra = _parse_sets(args.set)
    matcher_extra = _parse_sets(args.matcher_option)
    if args.resolution is not None:
        extra["resolution"] = args.resolution

    progress = None
    if not args.quiet:
        from functools import partial

        from tqdm import tqdm

        progress = partial(tqdm, file=sys.stderr, unit="pair", leave=False)

    random_paths = {}
    if args.random_weights:
        from pathlib import Path

        from matchanything_ros.matching.model_benchmark import random_weights_paths

        random_paths = random_weights_paths(Path(args.random_weights), args.seed, models)
    rows = []
    for model in models:
        pipeline = None
        for polarity in polarities:
            options = {
                "model": model,
                "device": args.device,
                **extra,
                "polarity": polarity,
                "geometry": "homography",
                "ransac_threshold": 3.0,
            }
            if model in random_paths:
                options["weights"] = str(random_paths[model])
            try:
                config = PipelineConfig.from_dict(options)
                if pipeline is None:
                    matcher = None
                    if matcher_extra:
                        matcher = create_matcher(model, **{**config.matcher_options(), **matcher_extra})
                    pipeline = Pipeline(config, matcher=matcher)
                else:
                    pipeline.reconfigure(config)
            except (MatcherError, ValueError, TypeError) as exc:
                raise CommandError(f"model {model}: {exc}") from None
            results = run_protocol(pipeline, pairs, seed=args.seed, progress=progress)
            summary = summarize(results)
            row = {
                "model": pipeline.matcher.describe(),
                "polarity": polarity,
                "config": config.to_dict(),
                "summary": summary,
                "pairs": [dataclasses.asdict(r) for r in results],
            }
            rows.append(row)
            print(
                f"{row['model']} [{polarity}]: SR@3/5/10 {summary['SR@3']:.2f}/{summary['SR@5']:.2f}/"
                f"{summary['SR@10']:.2f}, AUC@3/5/10 {summary['AUC@3']:.3f}/{summary['AUC@5']:.3f}/"
                f"{summary['AUC@10']:.3f}, OK {summary['coverage']:.2f} of pairs with precision "
                f"{summary['ok_precision']:.3f}, median matches {summary['median_matches']:.0f}, GT inlier ratio "
                f"{summary['gt_inlier_ratio']:.2f}, {summary['mean_time_s']:.3f} s/pair "
                f"({summary['mean_cpu_time_s']:.3f} CPU s)",
                flush=True,
            )
    table = markdown_table(rows)
    print()
    print(table, end="")
    command = command_line(args)
    note = machine_note()
    if args.json:
        out = Path(args.json)
        payload = {"command": command, "machine": note, "data": str(Path(data).resolve()), "results": rows}
        out.write_text(dumps(payload))
    if args.markdown:
        out = Path(args.markdown)
        out.write_text(f"Command: `{command}`\n\nMachine: {note}\n\n{table}")
    return 0
