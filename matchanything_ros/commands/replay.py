"""`matchanything-ros replay BAG --out OUT_BAG`: the node's pipeline over a recorded bag."""
from __future__ import annotations

HELP = "run the node's pipeline over a ROS 2 bag, write an output bag"


def add_arguments(parser) -> None:
    parser.add_argument("bag", help="input ROS 2 bag (directory, .mcap or .db3) with visible/thermal images")
    parser.add_argument("--out", required=True, metavar="OUT_BAG", help="output bag directory (must not exist)")
    parser.add_argument(
        "--config",
        "--params-file",
        dest="config",
        metavar="PARAMS.yaml",
        help="ROS 2 params file, as given to the node with --params-file (e.g. config/*.yaml)",
    )
    parser.add_argument("--node-name", default="matcher_node",
                        help="the node's name: with --namespace it picks the params-file sections that apply, "
                             "'/**' then '/NAMESPACE/NAME', as in rclpy (default matcher_node)")
    parser.add_argument(
        "--set",
        "-p",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one node parameter, e.g. -p model=sift -p sync.slop=0.03 (YAML value; repeatable)",
    )
    parser.add_argument("--namespace", default="/", help="the node's namespace: resolves its relative topic names")
    parser.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"), help="output storage (default mcap)")
    parser.add_argument(
        "--rosbag-version",
        type=int,
        default=5,
        choices=(5, 9),
        help="output rosbag2 metadata version: 5 = what Humble writes, plays on Humble and newer (default); "
        "9 = what Jazzy and Kilted write, plays on Jazzy and newer",
    )
    parser.add_argument("--distro", default="humble", choices=("humble", "iron", "jazzy", "kilted"),
                        help="message definitions used to read/write (default humble)")
    parser.add_argument("--log-time", default="input", choices=("input", "processing"),
                        help="bag time of the outputs: input = receive time of the message completing the pair "
                        "(default: reproducible, plays in step with the input), processing = that + processing time")
    parser.add_argument("--copy-inputs", action="store_true", help="copy the input images/CameraInfo into the output bag")
    parser.add_argument("--max-pairs", type=int, help="stop after this many image pairs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_overrides(items: list[str]) -> dict:
    """``["model=sift", "sync.slop=0.03"]`` -> ``{"model": "sift", "sync.slop": 0.03}``."""
    import yaml

    from . import CommandError

    values = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise CommandError(f"--set {item!r}: expected NAME=VALUE, e.g. model=sift")
        name = name.strip().removesuffix(":")  # also accept ros2-style name:=value
        try:
            values[name] = yaml.safe_load(text)
        except yaml.YAMLError:
            values[name] = text
    return values


def load_configs(config: str | None, node_name: str, overrides: list[str], namespace: str = "/"):
    """(NodeConfig, PipelineConfig) from a params file plus ``NAME=VALUE`` overrides."""
    import dataclasses

    from ..node.config import NodeConfig, _flatten, load_params_file, split_parameters
    from ..pipeline import PipelineConfig
    from . import CommandError

    try:
        node_cfg, pipe_cfg = load_params_file(config, node_name, namespace) if config else (NodeConfig(), PipelineConfig())
        if overrides:
            values = node_cfg.to_flat()
            values.update(_flatten(dataclasses.asdict(pipe_cfg)))  # thermal.*, rig.*
            values.update(parse_overrides(overrides))
            node_cfg, pipe_cfg = split_parameters(values)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return node_cfg, pipe_cfg


def run(args) -> int:
    import sys

    from ..bags.replay import ReplayOptions, replay
    from ..bags.storage import BagError
    from ..matching import MatcherError
    from . import CommandError

    from .common import check_output_folder

    check_output_folder(args.out)  # the bag writer would create missing parents
    node_cfg, pipe_cfg = load_configs(args.config, args.node_name, args.overrides, args.namespace)
    if args.max_pairs is not None and args.max_pairs < 1:
        raise CommandError("--max-pairs must be >= 1")
    options = ReplayOptions(
        namespace=args.namespace,
        storage=args.storage,
        version=args.rosbag_version,
        distro=args.distro,
        copy_inputs=args.copy_inputs,
        max_pairs=args.max_pairs,
        progress=not args.no_progress,
        log_time=args.log_time,
    )
    try:
        summary = replay(args.bag, args.out, node_cfg, pipe_cfg, options)
    except (BagError, MatcherError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    print(summary.text())
    if summary.error:
        raise CommandError(summary.error)
    if summary.interrupted:
        print("matchanything-ros replay: interrupted; output bag closed and readable", file=sys.stderr)
        return 130
    if summary.pairs == 0:
        raise CommandError(
            f"no visible/thermal pair found in {args.bag}: no two stamps within sync.slop = {node_cfg.sync.slop} s "
            "(raise it with -p sync.slop=0.05)"
        )
    return 0
