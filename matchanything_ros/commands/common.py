"""Helpers shared by CLI commands: reading images and intrinsics with one-line errors."""
from __future__ import annotations

import sys

from pathlib import Path

import numpy as np

from . import CommandError


def add_limit_arguments(parser) -> None:
    """``--max-pixels`` / ``--min-side``: the image size limits (node parameters ``limits.*``)."""
    from ..imaging.limits import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE

    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse images with more pixels, checked before decoding (default {DEFAULT_MAX_PIXELS})")
    parser.add_argument("--min-side", type=int, default=DEFAULT_MIN_SIDE,
                        help=f"refuse images with a shorter side (px) (default {DEFAULT_MIN_SIDE})")


def limits_from(args):
    from ..imaging.limits import SizeLimits

    if args.max_pixels < 1 or args.min_side < 1:
        raise CommandError(f"--max-pixels and --min-side must be >= 1, got {args.max_pixels}, {args.min_side}")
    return SizeLimits(max_pixels=args.max_pixels, min_side=args.min_side)


def _imread_quietly(path: Path) -> tuple[np.ndarray | None, str]:
    """cv2.imread with what the codec libraries print to stderr captured and returned (first
    line) instead of printed: libpng and libjpeg report damaged files only there."""
    import os
    import tempfile

    import cv2

    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        lines = [line.strip() for line in sink.read().decode(errors="replace").splitlines() if line.strip()]
    return image, lines[0] if lines else ""


def read_image(path: str | Path, what: str, limits=None) -> np.ndarray:
    """Read an image file as stored (8-bit colour/gray, or 16-bit thermal PNG/TIFF), refusing
    sizes outside ``limits`` (default :class:`~matchanything_ros.imaging.limits.SizeLimits`)
    from the file header before decoding."""
    import cv2

    from ..imaging.limits import SizeLimits, check_image_file, size_problem

    limits = limits or SizeLimits()
    path = Path(path)
    if path.is_dir():
        raise CommandError(f"{what} image {path} is a folder; give an image file")
    if not path.is_file():
        raise CommandError(f"{what} image not found: {path}")
    problem = check_image_file(path, limits)
    if problem is not None and problem[0] == "no_header":  # Radiance HDR and the like decode to gigabytes
        raise CommandError(f"cannot read {what} image {path}: {problem[1]}")
    if problem is not None:
        raise CommandError(f"{what} image {path}: {problem[1]} (see --max-pixels/--min-side)")
    try:
        image, complaint = _imread_quietly(path)
    except cv2.error as exc:  # e.g. a header OpenCV's own pixel limit refuses
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise CommandError(f"cannot read {what} image {path}: {reason}") from None
    if complaint:  # libpng / libjpeg: a damaged file (a truncated JPEG still decodes, half grey)
        raise CommandError(f"cannot read {what} image {path}: the file is damaged ({complaint})")
    if image is None or image.size == 0:
        raise CommandError(f"cannot read {what} image {path} (not an image OpenCV can decode)")
    if (problem := size_problem(image.shape[1], image.shape[0], limits)) is not None:
        raise CommandError(f"{what} image {path}: {problem[1]} (see --max-pixels/--min-side)")
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return image


def read_intrinsics(path: str | Path) -> np.ndarray:
    """3x3 K from a ROS camera_info YAML (``camera_matrix.data`` or ``k``/``K``) or a
    comma-separated ``fx,fy,cx,cy`` string."""
    text = str(path)
    if not Path(text).is_file() and text.count(",") == 3:
        try:
            fx, fy, cx, cy = (float(v) for v in text.split(","))
        except ValueError:
            raise CommandError(f"intrinsics {text!r}: expected fx,fy,cx,cy numbers") from None
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    from ..yaml_input import load_yaml_file

    p = Path(text)
    if not p.is_file():
        raise CommandError(f"intrinsics file not found: {p} (or give fx,fy,cx,cy)")
    try:
        data = load_yaml_file(p, "intrinsics file")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    values = None
    if isinstance(data, dict):
        cm = data.get("camera_matrix")
        values = cm.get("data") if isinstance(cm, dict) else None
        values = values if values is not None else data.get("k", data.get("K"))
    try:
        K = np.asarray(values, dtype=np.float64).reshape(3, 3)
    except (TypeError, ValueError):  # missing, ragged, nested, strings, not 9 numbers
        raise CommandError(f"intrinsics file {p}: expected camera_matrix.data or K with 9 numbers") from None
    if not np.isfinite(K).all():
        raise CommandError(f"intrinsics file {p}: camera matrix values must be finite numbers")
    return K


def check_output_file(path: str | Path | None) -> None:
    """Refuse an output file whose folder does not exist (the CLI creates no folder the user
    did not name as an output folder) or that is a folder itself; checked before any work."""
    if not path:
        return
    path = Path(path)
    if path.is_dir():
        raise CommandError(f"output {path} is a directory, expected a file name")
    if not path.parent.is_dir():
        raise CommandError(f"output directory {path.parent} does not exist (create it first)")


def check_output_folder(path: str | Path | None) -> None:
    """An output folder the command will create: its parent must exist (the CLI creates the
    folder the user named, never the folders above it)."""
    if not path:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CommandError(f"output folder {path} exists and is not a folder")
    if path.parent.exists() and not path.parent.is_dir():
        raise CommandError(f"cannot create output folder {path}: {path.parent} is not a folder")
    if not path.parent.is_dir():
        raise CommandError(f"cannot create output folder {path}: {path.parent} does not exist (create it first)")


class Heartbeat:
    """``with Heartbeat("exporting"):`` prints "<what> ..." at once and "<what>: 30 s" every
    ``every`` seconds until the block ends, so a minutes-long step never looks hung."""

    def __init__(self, what: str, every: float = 30.0, stream=None):
        import threading

        self.what, self.every, self.stream = what, every, stream or sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        waited = 0.0
        while not self._stop.wait(self.every):
            waited += self.every
            print(f"{self.what}: {waited:.0f} s", file=self.stream, flush=True)

    def __enter__(self) -> "Heartbeat":
        print(f"{self.what} ...", file=self.stream, flush=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
