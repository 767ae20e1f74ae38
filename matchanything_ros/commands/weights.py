"""`matchanything-ros weights {path,download,check}`: locate, fetch or verify the
MatchAnything-ELoFTR weights (zju-community/matchanything_eloftr, Apache-2.0), or with --model
MINIMA's files or a RoMa model's two files (docs/MODELS.md)."""
from __future__ import annotations

from . import CommandError

HELP = "locate or download MatchAnything-ELoFTR (or, with --model, MINIMA / RoMa) weights"
MODELS = ("matchanything_eloftr", "minima_splg", "minima_loftr", "matchanything_roma", "minima_roma")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("path", help="print the weights file that would be used (no network)")
    p.add_argument("--weights", default="", help="explicit weights file or directory to check first")
    d = sub.add_parser("download", help="download the weights into the Hugging Face cache")
    d.add_argument("--cache-dir", default=None, help="cache directory (default: the standard HF cache; MINIMA and "
                   "RoMa files: ~/.cache/matchanything_ros/minima, .../roma)")
    c = sub.add_parser("check", help="load a checkpoint (HF safetensors or the authors' .ckpt) and verify it")
    c.add_argument("weights", nargs="?", default="", help="file (default: the one `path` finds)")
    for each in (p, d, c):  # MINIMA and RoMa models: see docs/MODELS.md
        each.add_argument("--model", default="matchanything_eloftr", choices=MODELS,
                          help="whose weights (default matchanything_eloftr)")
    for each in (p, c):
        each.add_argument("--dinov2", default="", help="RoMa models: dinov2_vitl14_pretrain.pth (file or folder; "
                          "default: beside the checkpoint, then the cache)")
    d.add_argument("--from-zip", default="", metavar="ZIP",
                   help="matchanything_roma: take matchanything_roma.ckpt out of the authors' weights.zip "
                        "(downloaded by hand from their Google Drive link; docs/MODELS.md)")


def run(args) -> int:
    model = getattr(args, "model", "matchanything_eloftr")
    if getattr(args, "from_zip", "") and model != "matchanything_roma":
        raise CommandError("--from-zip applies to --model matchanything_roma only")
    if model in ("matchanything_roma", "minima_roma"):
        return _run_roma(args)
    if model != "matchanything_eloftr":
        return _run_minima(args)
    from matchanything_ros.models.eloftr.weights import (
        WEIGHTS_HINT,
        WeightsError,
        download_weights,
        find_local_weights,
    )

    try:
        if args.action == "path":
            found = find_local_weights(args.weights or None)
            if found is None:
                raise CommandError(f"MatchAnything-ELoFTR weights not found locally; {WEIGHTS_HINT}")
            print(found)
            return 0
        if args.action == "download":
            print(_quiet_download(download_weights, args.cache_dir))
            return 0
        found = find_local_weights(args.weights or None)
        if found is None:
            raise CommandError(f"no weights to check; {WEIGHTS_HINT}")
        from matchanything_ros.models.eloftr.weights import detect_layout, read_checkpoint

        state = read_checkpoint(found)
        layout = detect_layout(state)
        from matchanything_ros.models.eloftr.model import load_deploy_model

        model = load_deploy_model(found, top_k=1)
        fused = sum(p.numel() for p in model.parameters())
        stored = sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))
        print(f"{found}: {layout} layout, {stored:,} stored values -> {fused:,} deployed parameters (RepVGG/BN fused): OK")
        return 0
    except WeightsError as exc:
        raise CommandError(str(exc)) from None


def _quiet_download(download_weights, cache_dir):
    """download_weights() with one line on failure: huggingface_hub retries an unreachable hub
    for ~25 s and logs every retry (twice, via its handler and ours), so first try the hub's
    host for a few seconds, then silence its logger and warnings around the download."""
    import logging
    import os
    import socket
    import warnings
    from urllib.parse import urlparse

    from huggingface_hub import constants

    from matchanything_ros.models.eloftr.weights import WEIGHTS_HINT

    proxied = any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"))
    if not constants.HF_HUB_OFFLINE and not proxied:  # behind a proxy a direct connect proves nothing
        url = urlparse(constants.ENDPOINT)
        try:
            socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                     timeout=5).close()
        except OSError as exc:
            raise CommandError(f"cannot reach {url.hostname} ({exc.__class__.__name__}): this machine looks "
                               f"offline; {WEIGHTS_HINT}") from None
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return download_weights(cache_dir)
    finally:
        hub_logger.setLevel(level)


def _run_minima(args) -> int:
    """The same actions for MINIMA's files (published on GitHub releases, not the HF hub)."""
    from matchanything_ros.matching import MatcherError
    from matchanything_ros.models.minima.weights import MODEL_FILES, download, resolve_files

    try:
        if args.action == "download":
            for item in MODEL_FILES[args.model]:
                print(download(item, args.cache_dir))
            return 0
        paths = resolve_files(args.model, getattr(args, "weights", "") or None, allow_download=False)
        if args.action == "path":
            print("\n".join(map(str, paths)))
            return 0
        from matchanything_ros.matching import create_matcher

        matcher = create_matcher(args.model, weights=paths[0], download=False, device="cpu")
        print(f"{', '.join(map(str, paths))}: {matcher.describe()}: OK")
        return 0
    except MatcherError as exc:  # WeightsError included
        raise CommandError(str(exc)) from None


def _run_roma(args) -> int:
    """The same actions for a RoMa model's two files: its checkpoint and DINOv2 ViT-L/14."""
    from matchanything_ros.matching import MatcherError
    from matchanything_ros.models.roma.files import MODEL_FILES, download, extract_from_zip, resolve_files

    try:
        if args.action == "download":
            failed = []
            for item in MODEL_FILES[args.model]:
                try:
                    if args.from_zip and not item.urls:
                        print(extract_from_zip(item, args.from_zip, args.cache_dir))
                    else:
                        print(download(item, args.cache_dir))
                except MatcherError as exc:  # the other file may still come
                    failed.append(str(exc))
            if failed:
                raise CommandError("; ".join(failed))
            return 0
        paths = resolve_files(args.model, getattr(args, "weights", "") or None, args.dinov2 or None,
                              allow_download=False)
        if args.action == "path":
            print("\n".join(map(str, paths)))
            return 0
        from matchanything_ros.matching import create_matcher

        matcher = create_matcher(args.model, weights=paths[0], dinov2=paths[1], download=False, device="cpu")
        print(f"{', '.join(map(str, paths))}: {matcher.describe()}: OK")
        return 0
    except MatcherError as exc:  # WeightsError included
        raise CommandError(str(exc)) from None
