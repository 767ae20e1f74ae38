"""`matchanything-ros parity --reference DIR`: compare MatchAnything-ELoFTR with the authors' own
outputs (the reference pack) per case, through each backend."""
from __future__ import annotations

from . import CommandError


def add_arguments(parser) -> None:
    parser.add_argument("--reference", required=True, help="reference pack folder (manifest.json, reference.npz, weights.ckpt)")
    parser.add_argument("--data", default=None, help="RoadScene folder (default: <reference>/../../data/roadscene_dev)")
    parser.add_argument("--backends", default="torch,onnxruntime", help="comma-separated: torch, onnxruntime, openvino, tensorrt")
    parser.add_argument("--modes", default="demo", help="comma-separated: demo (authors' Space), mnn (EfficientLoFTR rule)")
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--max-matches", type=int, default=3840, help="K, the fixed number of output slots")
    parser.add_argument("--work-dir", default=None, help="where the ONNX export is cached (default: the user cache)")
    parser.add_argument("--json", metavar="OUT", help="also write the rows as JSON")


def run(args) -> int:
    from matchanything_ros.matching import MatcherError
    from matchanything_ros.models.eloftr.parity import (
        CONF_TOL, KPT_TOL, MODES, ParityError, format_rows, load_pack, row_problem, run_parity,
    )

    backends = [b for b in args.backends.split(",") if b]
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise CommandError(f"unknown mode(s) {', '.join(bad)}; choose from {', '.join(MODES)}")
    try:
        pack = load_pack(args.reference, args.data)
        cases = [c for c in args.cases.split(",") if c] or None
        unknown = [c for c in cases or [] if c not in pack.cases]
        if unknown:
            raise CommandError(f"unknown case(s) {', '.join(unknown)}; the pack has {', '.join(pack.cases)}")
        rows = run_parity(pack, backends, modes, cases, args.work_dir, args.max_matches)
    except (ParityError, MatcherError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    print(f"reference: {pack.folder} (authors' code {pack.manifest['sources']['authors_code']['commit'][:7]}), "
          f"threshold {pack.threshold:g}, network {pack.network_size[1]}x{pack.network_size[0]}, K={args.max_matches}")
    print(format_rows(rows))
    if args.json:
        from ..json_out import dumps

        with open(args.json, "w") as fh:
            fh.write(dumps([{**r, "parity": row_problem(r) is None} for r in rows]))
    failed = [r for r in rows if row_problem(r) is not None]
    if failed:
        print(f"parity FAILED for {len(failed)} of {len(rows)} runs (tolerances: keypoints {KPT_TOL:g} px, "
              f"confidences {CONF_TOL:g})")
        return 1
    print(f"parity: all {len(rows)} runs match the authors' outputs (keypoints within {KPT_TOL:g} px, "
          f"confidences within {CONF_TOL:g})")
    return 0
