"""RoMa dense matchers with the published cross-modal weights: ``matchanything_roma``
(MatchAnything-RoMa, arXiv 2501.07556) and ``minima_roma`` (MINIMA's RoMa, CVPR 2025).

The network and the authors' pipeline around it (resizing, coarse and upsampled passes, dense warp
and certainty, the balanced random sampling of ``num_matches`` matches) are
:mod:`matchanything_ros.models.roma`; this module finds the two files each model needs
(:mod:`matchanything_ros.models.roma.files`: the checkpoint and DINOv2 ViT-L/14), builds the
network once and hands the images over. Keypoints come back in each original image's pixels.

RoMa is heavy: DINOv2 ViT-L/14 plus RoMa's CNN and decoder, 416 M parameters (1.7 GB in fp32), two
passes per pair (coarse, then upsampled). On a CPU one pair takes tens of seconds, which is why the
node refuses a RoMa model on the CPU unless told that frames will be dropped (docs/NODE.md).
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np

from .base import Matcher, MatcherError, Matches

log = logging.getLogger(__name__)

def _int_option(name: str, value, low: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise MatcherError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


class RomaMatcher(Matcher):
    """A published RoMa model (``variant``).

    weights: its checkpoint (file, or a folder holding it); default: the cache
    (``weights download --model NAME``). dinov2: ``dinov2_vitl14_pretrain.pth`` (file or folder);
    default: beside the checkpoint, then the cache, then torch.hub's folder. Missing files are
    downloaded where a URL exists unless ``download=False`` (MatchAnything's checkpoint has none:
    see :mod:`matchanything_ros.models.roma.files`).
    backend: "auto" or "torch" (no export). device: "auto", "cpu", "cuda[:N]". precision: "fp32"
    only. num_matches: matches sampled from the dense warp (default: the authors' count, 5000 for
    MatchAnything, 10000 for MINIMA: ``models.roma.VARIANTS``). seed: the sampling
    is random (as the authors'); each call draws with this seed, so a pair always gives the same
    matches. coarse_res / upsample_res: override the authors' test-time sizes (square sides of the
    two passes: 560 / 864; coarse_res a multiple of 14 and 8), e.g. to trade accuracy for time.
    """

    name = "roma"
    variant = ""

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        dinov2: str | os.PathLike | None = None,
        backend: str = "auto",
        device: str = "auto",
        precision: str = "fp32",
        num_matches: int | None = None,
        coarse_res: int | None = None,
        upsample_res: int | None = None,
        seed: int = 0,
        download: bool = True,
    ):
        if backend not in ("auto", "torch"):
            raise MatcherError(f"{self.name} runs on the torch backend only (no ONNX/TensorRT export), "
                               f"got backend {backend!r}")
        if precision != "fp32":
            raise MatcherError(
                f"{self.name} runs in fp32 only, got precision {precision!r}: the authors' mixed precision on CUDA "
                "is not reproduced here; use precision fp32")
        num_matches = _int_option("num_matches", num_matches, 1, allow_none=True)
        self.seed = _int_option("seed", seed, 0)
        coarse_res = _int_option("coarse_res", coarse_res, 1, allow_none=True)
        upsample_res = _int_option("upsample_res", upsample_res, 1, allow_none=True)
        from matchanything_ros.devices import torch_device
        from matchanything_ros.models.roma.files import resolve_files

        self.device = torch_device(device, MatcherError)
        self.weights_path, self.dinov2_path = resolve_files(self.variant, weights, dinov2, allow_download=download)
        try:
            from matchanything_ros.models.roma import load_roma
        except ImportError as exc:
            raise MatcherError(f"{self.name}: the RoMa network is not available ({exc})") from None
        start = time.perf_counter()
        try:
            self._model = load_roma(self.variant, self.weights_path, self.dinov2_path, coarse_res=coarse_res,
                                    upsample_res=upsample_res, device=str(self.device))
        except MatcherError:  # WeightsError: one line naming the file and the expected layout
            raise
        except ValueError as exc:  # a size the network refuses, a variant this build lacks
            raise MatcherError(f"{self.name}: {exc}") from None
        except RuntimeError as exc:  # e.g. out of memory
            reason = " ".join(str(exc).split())[:300]
            raise MatcherError(f"cannot build {self.name} from {self.weights_path}: {reason}") from None
        settings = self._model.settings  # what runs: the authors' unless overridden
        self.coarse_res, self.upsample_res = settings.coarse_res, settings.upsample_res
        self.num_matches = num_matches or settings.num
        log.info("%s loaded in %.1f s (%s, %s)", self.name, time.perf_counter() - start, self.weights_path.name,
                 self.dinov2_path.name)

    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        start = time.perf_counter()
        kpts0, kpts1, certainty = self._model.match_images(image0, image1, num=self.num_matches, seed=self.seed)
        info = {"backend": "torch", "device": str(self.device), "coarse_res": self.coarse_res,
                "upsample_res": self.upsample_res, "seconds": time.perf_counter() - start}
        return Matches(kpts0, kpts1, certainty, info)

    def describe(self) -> str:
        return (
            f"{self.name} (RoMa + DINOv2 ViT-L/14, torch, device={self.device.type}, fp32, coarse {self.coarse_res} px, "
            f"upsample {self.upsample_res} px, {self.num_matches} samples, seed {self.seed})"
        )


class MatchAnythingRomaMatcher(RomaMatcher):
    """MatchAnything-RoMa: ``matchanything_roma.ckpt`` (the authors' weights.zip) + DINOv2."""

    name = variant = "matchanything_roma"


class MinimaRomaMatcher(RomaMatcher):
    """MINIMA-RoMa: ``minima_roma.pth`` (MINIMA's GitHub release) + DINOv2."""

    name = variant = "minima_roma"
