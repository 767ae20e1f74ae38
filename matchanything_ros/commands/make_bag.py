"""`matchanything-ros make-bag OUT_BAG`: a bag of visible/thermal pairs with ground truth."""
from __future__ import annotations

HELP = "write a ROS 2 bag of visible/thermal pairs with ground truth"


def add_arguments(parser) -> None:
    parser.add_argument("out", metavar="OUT_BAG", help="output bag directory (must not exist); ground truth goes to OUT_BAG.gt.json")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--synthetic", choices=("planar", "stereo", "mixed"), default=None,
                     help="synthetic pairs (default planar when --folder is not given)")
    src.add_argument("--folder", metavar="DIR", help="aligned pairs (DIR/visible, DIR/thermal), thermal warped by seeded homographies")
    parser.add_argument("--frames", type=int, help="number of pairs (synthetic default 10; folder default all)")
    parser.add_argument("--size", default="320x256", help="synthetic image size WxH (default 320x256)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes / homographies / timing (default 0)")
    parser.add_argument("--rate", type=float, default=10.0, help="visible frame rate in Hz (default 10)")
    parser.add_argument("--jitter-ms", type=float, default=5.0, help="thermal stamp offset, uniform +-ms (default 5)")
    parser.add_argument("--thermal-rate-factor", type=int, default=1, help="thermal camera runs this many times faster (default 1)")
    parser.add_argument("--thermal-drop", type=float, default=0.0, help="probability of a missing thermal frame (default 0)")
    parser.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"), help="bag storage (default mcap)")
    parser.add_argument("--rosbag-version", type=int, default=5, choices=(5, 9),
                        help="rosbag2 metadata version: 5 = what Humble writes, plays on Humble and newer (default); "
                        "9 = what Jazzy and Kilted write, plays on Jazzy and newer")
    parser.add_argument("--distro", default="humble", choices=("humble", "iron", "jazzy", "kilted"),
                        help="message definitions written into the bag (default humble)")
    parser.add_argument("--compressed", action="store_true",
                        help="images as sensor_msgs/CompressedImage on <topic>/compressed (visible JPEG, thermal PNG), "
                             "as image_transport's compressed transport records them; replay with "
                             "-p topics.visible_transport=compressed -p topics.thermal_transport=compressed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    rig = parser.add_argument_group("fixed rig (one geometry for every frame, see docs/EVALUATION.md)")
    rig.add_argument("--rig-fixed", action="store_true",
                     help="--folder: one homography for all pairs (resized to their median size); "
                          "--synthetic stereo: the cameras (K0, K1, R, t) of the first pair for all scenes")
    rig.add_argument("--rig-change-frame", type=int, metavar="N", help="from frame N (0-based) on, the thermal camera is turned (implies --rig-fixed)")
    rig.add_argument("--rig-change-deg", type=float, default=2.0, help="by this many degrees (default 2)")
    rig.add_argument("--rig-change-axis", choices=("roll", "pan", "tilt"), default="roll",
                     help="about this axis of the thermal camera (default roll: the optical axis)")


#: synthetic image sides make-bag renders: the node's default limits.min_side, and a 16 MP frame
#: at most (the renderer holds a few float maps of the frame)
MIN_SIDE, MAX_SIDE = 16, 4096


def _size(text: str) -> tuple[int, int]:
    from . import CommandError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise CommandError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 320x256") from None
    if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
        raise CommandError(f"--size {text!r}: width and height must be in [{MIN_SIDE}, {MAX_SIDE}] px")
    return w, h



def run(args) -> int:
    from pathlib import Path

    from ..bags.make_bag import CameraTiming, RigSequence, folder_frames, synthetic_frames, write_bag
    from ..bags.storage import BagError
    from . import CommandError
    from .common import check_output_folder

    check_output_folder(args.out)  # the bag writer would create missing parents
    try:
        timing = CameraTiming(
            rate_hz=args.rate,
            jitter_ms=args.jitter_ms,
            thermal_rate_factor=args.thermal_rate_factor,
            thermal_drop=args.thermal_drop,
            seed=args.seed,
        )
        rig = None
        if args.rig_fixed or args.rig_change_frame is not None:
            rig = RigSequence(args.rig_change_frame, args.rig_change_deg, args.rig_change_axis)
        if args.folder:
            folder = Path(args.folder)
            if not (folder / "visible").is_dir() or not (folder / "thermal").is_dir():
                raise CommandError(f"--folder {folder}: expected subfolders visible/ and thermal/ with aligned pairs")
            frames = folder_frames(folder, count=args.frames, seed=args.seed, rig=rig)
            source = (f"folder {args.folder}, pair i warped by homography_protocol.warp_pair with seed {args.seed}+i"
                      if rig is None else f"folder {args.folder}, fixed rig: random_homography(seed {args.seed}) for every pair")
        else:
            kind = args.synthetic or "planar"
            w, h = _size(args.size)
            frames = synthetic_frames(args.frames or 10, kind=kind, size=(w, h), seed=args.seed, rig=rig)
            source = f"synthetic {kind} {w}x{h}, seeds {args.seed}..{args.seed + (args.frames or 10) - 1}"
            source += f", fixed rig: the cameras of seed {args.seed}" if rig is not None else ""
        gt = write_bag(
            frames,
            args.out,
            storage=args.storage,
            version=args.rosbag_version,
            distro=args.distro,
            timing=timing,
            source=source,
            progress=not args.no_progress,
            compressed=args.compressed,
            rig=rig,
        )
    except (BagError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    print(f"wrote {args.out} ({args.storage}, rosbag2 metadata v{args.rosbag_version}) and ground truth {gt}")
    return 0
