"""The one interface every matcher (model x backend) implements.

A matcher takes two images and returns correspondences in the *original* pixel coordinates of
each image. Image 0 is the visible image, image 1 the thermal image, by convention throughout
the package. Matchers do their own model-specific preprocessing (resizing, grayscale, scaling)
and map keypoints back; callers never see network resolutions.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


class MatcherError(RuntimeError):
    """A matcher could not be built or could not run (missing weights, corrupt engine, ...)."""


@dataclass
class Matches:
    """Putative correspondences between image 0 (visible) and image 1 (thermal).

    kpts0, kpts1: (N, 2) float32 pixel coordinates (x, y) in the original images, pixel centres
    at integer coordinates (OpenCV convention). scores: (N,) float32 confidences in [0, 1],
    higher is better. Row i of kpts0 corresponds to row i of kpts1.
    """

    kpts0: np.ndarray
    kpts1: np.ndarray
    scores: np.ndarray
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kpts0 = np.asarray(self.kpts0, dtype=np.float32).reshape(-1, 2)
        self.kpts1 = np.asarray(self.kpts1, dtype=np.float32).reshape(-1, 2)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if not (len(self.kpts0) == len(self.kpts1) == len(self.scores)):
            raise ValueError(
                f"Matches: kpts0 ({len(self.kpts0)}), kpts1 ({len(self.kpts1)}) and scores "
                f"({len(self.scores)}) must have the same length"
            )

    def __len__(self) -> int:
        return len(self.kpts0)

    @classmethod
    def empty(cls) -> "Matches":
        return cls(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0,)))

    def subset(self, mask: np.ndarray) -> "Matches":
        """The matches selected by a boolean mask or an index array."""
        return Matches(self.kpts0[mask], self.kpts1[mask], self.scores[mask], dict(self.info))


class Matcher(ABC):
    """Two images in, correspondences out.

    ``image0`` / ``image1`` are uint8 arrays, either (H, W) grayscale or (H, W, 3) BGR; the two
    images may have different sizes. Implementations must be safe to call repeatedly from one
    thread (the ROS node runs inference on a single worker thread).
    """

    #: registry name, e.g. "xfeat" or "matchanything_eloftr"
    name: str = "matcher"

    @abstractmethod
    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        """Match image0 (visible) against image1 (thermal)."""

    def describe(self) -> str:
        """One line for logs and diagnostics: model, backend, device, resolution."""
        return self.name


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) BGR uint8 -> (H, W) uint8 grayscale (ITU-R 601 luma, as OpenCV)."""
    import cv2

    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
