"""Helpers shared by CLI commands: reading images and intrinsics with one-line errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import CommandError


def read_image(path: str | Path, what: str) -> np.ndarray:
    """Read an image file as stored (8-bit colour/gray, or 16-bit thermal PNG/TIFF)."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise CommandError(f"{what} image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise CommandError(f"cannot read {what} image {path} (not an image OpenCV can decode)")
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
    import yaml

    p = Path(text)
    if not p.is_file():
        raise CommandError(f"intrinsics file not found: {p} (or give fx,fy,cx,cy)")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise CommandError(f"intrinsics file {p} is not valid YAML: {exc}") from None
    values = None
    if isinstance(data, dict):
        cm = data.get("camera_matrix")
        values = cm.get("data") if isinstance(cm, dict) else None
        values = values if values is not None else data.get("k", data.get("K"))
    if values is None or len(values) != 9:
        raise CommandError(f"intrinsics file {p}: expected camera_matrix.data or K with 9 numbers")
    return np.asarray(values, dtype=np.float64).reshape(3, 3)
