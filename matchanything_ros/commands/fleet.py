"""`matchanything-ros fleet BAGS... --out DIR`: replay + evaluate every bag, one task per bag
(Ray with --workers > 1 or --address; in this process otherwise), resumable, one aggregated
report. See matchanything_ros/bags/fleet.py and docs/EVALUATION.md."""
from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("bags", nargs="+", metavar="BAGS",
                        help="bags, folders searched for bags, glob patterns (quoted) or list files (*.txt, one path a line)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder: DIR/<bag id>/ per bag, DIR/fleet.md and fleet.json; run again to resume")
    parser.add_argument("--workers", type=int, default=1,
                        help="bags at a time: > 1 runs them as Ray tasks on a local Ray (pip install -e '.[fleet]'); 1: here")
    parser.add_argument("--address", default=None, help="a running Ray cluster to use instead of a local one (e.g. auto)")
    parser.add_argument("--worker-memory-mb", type=int, default=4096,
                        help="memory Ray reserves per task, so no node runs more bags than it holds (default 4096)")
    parser.add_argument("--threads", type=int, default=1, help="inference threads per bag (default 1: one CPU per task)")
    parser.add_argument("--config", "--params-file", dest="config", metavar="PARAMS.yaml",
                        help="ROS 2 params file for every bag, as for replay")
    parser.add_argument("--set", "-p", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="override one node parameter (repeatable), as for replay")
    parser.add_argument("--node-name", default="matcher_node")
    parser.add_argument("--namespace", default="/")
    parser.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    parser.add_argument("--distro", default="humble", choices=("humble", "iron", "jazzy", "kilted"))
    parser.add_argument("--max-pairs", type=int, help="stop each bag after this many pairs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    import sys
    from pathlib import Path

    from ..bags.fleet import FleetOptions, find_bags, format_fleet, ray_available, run_fleet, summarise
    from . import CommandError
    from .replay import load_configs

    if args.workers < 1 or args.threads < 1 or args.worker_memory_mb < 64:
        raise CommandError("--workers and --threads must be >= 1, --worker-memory-mb >= 64")
    if args.max_pairs is not None and args.max_pairs < 1:
        raise CommandError("--max-pairs must be >= 1")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} exists and is not a folder")
    load_configs(args.config, args.node_name, args.overrides, args.namespace)  # a bad config: one line, before any work
    try:
        bags = find_bags(args.bags)
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    ids = [b.id for b in bags]
    if len(set(ids)) != len(ids):  # sha1 of distinct paths: never in practice
        raise CommandError("two bags map to one output folder; rename one")
    if (args.workers > 1 or args.address) and not ray_available():
        print("matchanything-ros fleet: Ray is not installed (pip install -e '.[fleet]'): running the bags here, "
              "one at a time", file=sys.stderr)
    options = FleetOptions(config=args.config, node_name=args.node_name, namespace=args.namespace,
                           overrides=list(args.overrides), storage=args.storage, distro=args.distro,
                           max_pairs=args.max_pairs, threads=args.threads)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(bags), unit="bag", desc="fleet", file=sys.stderr)

    def progress(result, finished, total):
        if bar is not None:
            bar.n = finished
            bar.set_postfix_str(f"{result['id']}: {result['status']}", refresh=True)
        if result["status"] != "done":
            print(f"matchanything-ros fleet: {result['bag']}: {result.get('error')}", file=sys.stderr)

    try:
        results = run_fleet(bags, str(out), options, workers=args.workers, address=args.address,
                            progress=progress, worker_memory_mb=args.worker_memory_mb)
    finally:
        if bar is not None:
            bar.close()
    summary = summarise(results)
    print(format_fleet(summary), end="")
    print(f"wrote {out / 'fleet.md'} and {out / 'fleet.json'}")
    overall = summary["overall"]
    return 0 if overall["failed"] == 0 else 1
