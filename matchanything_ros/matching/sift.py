"""SIFT baseline: OpenCV SIFT, Lowe ratio test and a mutual (cross) check. No torch needed."""
from __future__ import annotations

import numpy as np

from .base import Matcher, MatcherError, Matches, to_gray_uint8
from .resize import resize_for_matcher, to_original


class SiftMatcher(Matcher):
    """Classical baseline for comparison (weak across modalities: SIFT descriptors assume the
    same intensity polarity and texture in both images).

    max_matches: keep at most this many matches (best ratio first). resolution: long side (px)
    both images are resized to. ratio: Lowe ratio-test threshold. max_features: SIFT keypoints
    per image (0 = unlimited).
    """

    name = "sift"

    def __init__(self, max_matches: int = 2048, resolution: int = 640, ratio: float = 0.8, max_features: int = 8000):
        import cv2

        if not 0.0 < ratio <= 1.0:
            raise MatcherError(f"ratio must be in (0, 1], got {ratio}")
        if resolution < 64:
            raise MatcherError(f"resolution must be >= 64, got {resolution}")
        if max_matches < 1 or max_features < 0:
            raise MatcherError(f"max_matches must be >= 1 and max_features >= 0, got {max_matches}, {max_features}")
        self.max_matches = int(max_matches)
        self.resolution = int(resolution)
        self.ratio = float(ratio)
        self._sift = cv2.SIFT_create(nfeatures=int(max_features))
        self._matcher = cv2.BFMatcher(cv2.NORM_L2)

    def describe(self) -> str:
        return f"sift (opencv, cpu, {self.resolution} px, ratio {self.ratio})"

    def _detect(self, image: np.ndarray):
        gray, scale = resize_for_matcher(to_gray_uint8(image), self.resolution)
        kps, desc = self._sift.detectAndCompute(gray, None)
        pts = np.array([k.pt for k in kps], dtype=np.float32).reshape(-1, 2)
        return pts, desc, scale

    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        p0, d0, s0 = self._detect(image0)
        p1, d1, s1 = self._detect(image1)
        if d0 is None or d1 is None or len(p0) < 2 or len(p1) < 2:
            return Matches.empty()
        forward = self._matcher.knnMatch(d0, d1, k=2)
        backward = self._matcher.knnMatch(d1, d0, k=1)
        best_back = {m[0].queryIdx: m[0].trainIdx for m in backward if m}
        i0, i1, ratios = [], [], []
        for pair in forward:
            if len(pair) < 2:
                continue
            a, b = pair
            # ratio test, then mutual check: image1's nearest neighbour must point back
            if a.distance < self.ratio * b.distance and best_back.get(a.trainIdx) == a.queryIdx:
                i0.append(a.queryIdx)
                i1.append(a.trainIdx)
                ratios.append(a.distance / max(b.distance, 1e-9))
        if not i0:
            return Matches.empty()
        ratios = np.asarray(ratios, dtype=np.float32)
        order = np.argsort(ratios, kind="stable")[: self.max_matches]
        i0, i1 = np.asarray(i0)[order], np.asarray(i1)[order]
        return Matches(to_original(p0[i0], s0), to_original(p1[i1], s1), 1.0 - ratios[order], {"method": "sift"})
