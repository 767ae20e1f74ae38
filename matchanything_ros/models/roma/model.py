"""RoMa dense matcher, inference as the authors run it (MatchAnything's ``RegressionMatcher``:
``self_inference_time_match``, ``sample``, ``to_pixel_coordinates``; the Space's
``MatchAnything_Model.forward_inference`` and ``match_dense.match_images`` around it).

One pair: both images are resized to the Space's 640x480 (``RomaSettings.input_size``), stretched
to a square ``coarse_res`` (bicubic, antialiased: torchvision's tensor ``Resize``), matched
coarse-to-fine in both directions at once (``symmetric``), matched again at ``upsample_res`` from
that warp (VGG features only), turned into a dense warp + certainty, and *sampled*: certainties
above ``sample_thresh`` count as 1, ``4 * num`` candidates are drawn by certainty, then ``num`` of
them in inverse proportion to their local density (a Gaussian KDE), so matches spread over the
image. The draw is random; ``seed`` makes it repeatable (the same stream as ``torch.manual_seed``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .decoder import Decoder, coordinate_grid
from .dinov2 import DINOv2
from .encoder import Encoder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class RomaSettings:
    """Test-time settings of one published RoMa variant."""

    coarse_res: int = 560  # square side of the first pass (multiple of 14 and of 8)
    upsample_res: int = 864  # square side of the second pass (multiple of 8); 0: no second pass
    symmetric: bool = True
    attenuate_cert: bool = True
    normalize: bool = False  # ImageNet mean/std before the networks
    num: int = 5000  # matches sampled
    sample_thresh: float = 0.05
    match_thresh: float = 0.0  # certainty a sampled match must exceed
    input_size: tuple[int, int] | None = (480, 640)  # (h, w) the images are first resized to; None: as given
    resize_max: int = 832  # the Space shrinks a larger image to this long side first
    #: "space": MatchAnything's Space (cv2-area to input_size, float torch bicubic to each side,
    #: keypoints mapped with half-pixel terms, border mask); "minima": MINIMA's DataIOWrapper +
    #: romatch's match (cv2-bilinear to a long side of ``long_side``, floored to a multiple of 8,
    #: uint8, PIL bicubic to each side, keypoints scaled without half-pixel terms, no mask)
    preprocess: str = "space"
    long_side: int = 640  # "minima" only
    kde_half: bool = False  # romatch computes the KDE in float16

    def check(self) -> "RomaSettings":
        if self.coarse_res < 14 * 8 or self.coarse_res % 14 or self.coarse_res % 8:
            raise ValueError(f"coarse_res {self.coarse_res}: must be a multiple of 14 and of 8, at least 112")
        if self.upsample_res and (self.upsample_res < self.coarse_res or self.upsample_res % 8):
            raise ValueError(f"upsample_res {self.upsample_res}: must be a multiple of 8, at least coarse_res")
        if self.preprocess not in ("space", "minima"):
            raise ValueError(f"preprocess {self.preprocess!r}: 'space' or 'minima'")
        if self.num < 1:
            raise ValueError(f"num {self.num}: must be at least 1")
        return self


#: MatchAnything-RoMa as the authors' Space runs it (src/config/default.py ROMA.*, configs/models/
#: roma_model.py, hloc/match_dense.py confs['matchanything_roma']): ROMA.MATCH_THRESH 0.0 applies
#: (the Space's match_threshold 0.1 is written to LOFTR.MATCH_COARSE.THR, which RoMa never reads)
MATCHANYTHING_ROMA = RomaSettings()

#: MINIMA-RoMa as MINIMA runs it (load_model.py load_roma -> romatch roma_outdoor: coarse 560,
#: upsample 864, symmetric, attenuated; src/utils/data_io_roma.py: 640 px long side, 10,000
#: samples, ImageNet normalisation, float16 KDE, no certainty threshold)
MINIMA_ROMA = RomaSettings(normalize=True, num=10000, match_thresh=-1.0, input_size=None, preprocess="minima",
                           kde_half=True)

VARIANTS: dict[str, RomaSettings] = {"matchanything_roma": MATCHANYTHING_ROMA, "minima_roma": MINIMA_ROMA}


class RoMa(nn.Module):
    """VGG19-BN + DINOv2 encoder, GP / transformer / CNN-refiner decoder. State-dict keys:
    ``encoder.cnn.*`` and ``decoder.*`` as in the RoMa checkpoints, ``dinov2.*`` as in
    ``dinov2_vitl14_pretrain.pth``."""

    def __init__(self, settings: RomaSettings = MATCHANYTHING_ROMA):
        super().__init__()
        self.settings = settings.check()
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.dinov2 = DINOv2()

    # ------------------------------------------------------------------ dense
    def _resize(self, image, side: int) -> torch.Tensor:
        """One network input (1, 3, side, side), stretched: a float (3, H, W) tensor in [0, 1] by
        torchvision's tensor Resize (bicubic, antialiased), a uint8 (H, W, 3) RGB array by PIL's
        bicubic (romatch's ``TupleResize`` of a PIL image), then /255; ImageNet-normalised when set."""
        if isinstance(image, np.ndarray):
            from PIL import Image

            pixels = np.asarray(Image.fromarray(image).resize((side, side), Image.BICUBIC), dtype=np.float32)
            out = torch.from_numpy(pixels.transpose(2, 0, 1) / np.float32(255.0))[None].to(self.decoder.proj["1"][0].weight.device)
        else:
            out = F.interpolate(image[None], size=(side, side), mode="bicubic", align_corners=False, antialias=True)
        if self.settings.normalize:
            mean = torch.tensor(IMAGENET_MEAN, device=out.device)[:, None, None]
            std = torch.tensor(IMAGENET_STD, device=out.device)[:, None, None]
            out = (out - mean) / std
        return out

    def _decode(self, im_a: torch.Tensor, im_b: torch.Tensor, upsample: bool, **kwargs) -> dict:
        pyramid = self.encoder(torch.cat((im_a, im_b)), None if upsample else self.dinov2)
        if self.settings.symmetric:  # A->B and B->A in one batch
            f_q = pyramid
            f_s = {s: torch.cat(f.chunk(2)[::-1]) for s, f in pyramid.items()}
        else:
            f_q = {s: f.chunk(2)[0] for s, f in pyramid.items()}
            f_s = {s: f.chunk(2)[1] for s, f in pyramid.items()}
        return self.decoder(f_q, f_s, upsample=upsample, **kwargs)

    @torch.inference_mode()
    def dense(self, image_a, image_b) -> tuple[torch.Tensor, torch.Tensor]:
        """Float (3, H, W) images in [0, 1] (or uint8 (H, W, 3) RGB arrays: see ``_resize``) -> warp
        (R, 2R, 4) (symmetric; (R, R, 4) otherwise) of (x_A, y_A, x_B, y_B) in [-1, 1] and
        certainty (R, 2R) in [0, 1], R the output side."""
        s = self.settings
        coarse = (self._resize(image_a, s.coarse_res), self._resize(image_b, s.coarse_res))
        fine = (self._resize(image_a, s.upsample_res), self._resize(image_b, s.upsample_res)) if s.upsample_res else ()
        return self.dense_network(*coarse, *fine)

    def dense_network(self, a_coarse, b_coarse, a_fine=None, b_fine=None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`dense` from the resized network inputs (1, 3, R, R): the part of RoMa that is one
        fixed-shape graph (the antialiased resize and the sampling are not)."""
        s = self.settings
        corresps = self._decode(a_coarse, b_coarse, upsample=False)
        side = s.upsample_res or s.coarse_res
        if s.attenuate_cert:
            low = F.interpolate(corresps[16]["certainty"], size=(side, side), align_corners=False, mode="bilinear")
            low = 0.5 * low * (low < 0)
        if s.upsample_res:
            scale_factor = math.sqrt(s.upsample_res * s.upsample_res / (s.coarse_res * s.coarse_res))
            corresps = self._decode(a_fine, b_fine, upsample=True, flow=corresps[1]["flow"],
                                    certainty=corresps[1]["certainty"], scale_factor=scale_factor)
        flow = corresps[1]["flow"]
        certainty = corresps[1]["certainty"] - (low if s.attenuate_cert else 0)
        b = flow.shape[0]
        flow = flow.permute(0, 2, 3, 1)
        coords = coordinate_grid(1, side, side, flow.device).permute(0, 2, 3, 1)
        certainty = certainty.sigmoid()
        outside = (flow.abs() > 1).sum(dim=-1) > 0  # a target off image B is no match
        certainty = certainty.masked_fill(outside[:, None], 0)
        flow = flow.clamp(-1, 1)
        if s.symmetric:
            a_to_b, b_to_a = flow.chunk(2)
            warp = torch.cat((torch.cat((coords, a_to_b), dim=-1), torch.cat((b_to_a, coords), dim=-1)), dim=2)
            certainty = torch.cat(certainty.chunk(2), dim=3)
        else:
            warp = torch.cat((coords.expand(b, -1, -1, -1), flow), dim=-1)
        return warp[0], certainty[0, 0]

    # ------------------------------------------------------------------ sample
    def sample(self, warp: torch.Tensor, certainty: torch.Tensor, num: int, generator: torch.Generator | None = None):
        """The authors' ``threshold_balanced`` sampling -> (matches (N, 4), certainty (N,)): rows of
        the flattened warp, with the certainty as the sampler sees it (values above the threshold
        become 1)."""
        index, certainty = self.sample_indices(warp, certainty, num, generator)
        return warp.reshape(-1, 4)[index], certainty[index]

    def sample_indices(self, warp: torch.Tensor, certainty: torch.Tensor, num: int,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices into the flattened warp that :meth:`sample` picks, and the flattened thresholded
        certainty."""
        certainty = certainty.clone()
        certainty[certainty > self.settings.sample_thresh] = 1
        matches, certainty = warp.reshape(-1, 4), certainty.reshape(-1)
        if certainty.sum() == 0:
            certainty[0] = 1
        try:
            good = torch.multinomial(certainty, num_samples=min(4 * num, len(certainty)), replacement=False, generator=generator)
        except RuntimeError:  # fewer positive certainties than samples: the authors keep one match
            return torch.zeros(1, dtype=torch.long, device=warp.device), certainty
        good_matches = matches[good]
        density = kde(good_matches.half() if self.settings.kde_half else good_matches, std=0.1)
        p = 1 / (density + 1)
        p[density < 10] = 1e-7  # at least ~10 close neighbours
        balanced = torch.multinomial(p, num_samples=min(num, len(good)), replacement=False, generator=generator)
        return good[balanced], certainty


def kde(x: torch.Tensor, std: float = 0.1, chunk: int = 2048) -> torch.Tensor:
    """Gaussian kernel density of each row of ``x`` among all rows, a block of rows at a time
    (the authors' one ``cdist`` of 20,000 x 20,000 would hold 1.6 GB)."""
    out = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for start in range(0, len(x), chunk):
        block = x[start:start + chunk]
        out[start:start + chunk] = (-torch.cdist(block, x) ** 2 / (2 * std ** 2)).exp().sum(dim=-1)
    return out


# ---------------------------------------------------------------------- images
def _space_resize(image: np.ndarray, settings: RomaSettings) -> np.ndarray:
    """uint8 (H, W[, 3]) BGR/grey -> float32 (3, h, w) RGB in [0, 1] as ``match_images`` makes it:
    float32, long side shrunk to ``resize_max`` (cv2 area), resized to ``input_size`` (cv2 area,
    bilinear where a side grows), / 255."""
    from ..eloftr.preprocess import _check_uint8, _cv2_area

    image = _check_uint8(image)
    pixels = (image[..., ::-1] if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)).astype(np.float32)
    if settings.input_size is not None:
        long_side = max(pixels.shape[:2])
        if long_side > settings.resize_max:
            scale = settings.resize_max / long_side
            pixels = _cv2_area(pixels, tuple(int(round(x * scale)) for x in pixels.shape[1::-1]))
        h, w = settings.input_size
        pixels = _cv2_area(pixels, (w, h))
    return np.ascontiguousarray((pixels / np.float32(255.0)).transpose(2, 0, 1))


class RomaRunner:
    """A loaded :class:`RoMa` plus the pixel bookkeeping of one pair (what the node calls)."""

    def __init__(self, model: RoMa, device: torch.device | str = "cpu"):
        self.model = model.eval()
        self.settings = model.settings
        self.device = torch.device(device)

    def with_settings(self, **changes) -> "RomaRunner":
        self.model.settings = replace(self.settings, **changes).check()
        self.settings = self.model.settings
        return self

    def match_images(self, image0: np.ndarray, image1: np.ndarray, *, num: int | None = None, seed: int = 0):
        """uint8 (H, W) grey or (H, W, 3) BGR images -> (kpts0 (N, 2), kpts1 (N, 2), certainty (N,))
        float32, in original pixels (centres at integers)."""
        a, b = self.prepare(image0), self.prepare(image1)
        warp, certainty = self.model.dense(a, b)
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        matches, cert = self.model.sample(warp, certainty, num or self.settings.num, generator)
        return self.keypoints(matches, cert, self.network_size(a), self.network_size(b), image0.shape, image1.shape)

    def prepare(self, image: np.ndarray):
        """The image as the variant feeds it to :meth:`RoMa.dense` (a float tensor for the Space's
        pipeline, a uint8 RGB array for MINIMA's)."""
        if self.settings.preprocess == "space":
            return torch.from_numpy(_space_resize(image, self.settings)).to(self.device)
        return _minima_resize(image, self.settings)

    @staticmethod
    def network_size(prepared) -> tuple[int, int]:
        """(h, w) of a :meth:`prepare` result: the frame ``to_pixel_coordinates`` works in."""
        return tuple(prepared.shape[-2:]) if isinstance(prepared, torch.Tensor) else tuple(prepared.shape[:2])

    def keypoints(self, matches: torch.Tensor, cert: torch.Tensor, size0, size1, shape0, shape1):
        """Sampled warp rows -> keypoints in the original images (shapes ``shape0/1``), as the
        variant's pipeline returns them."""
        (h_a, w_a), (h_b, w_b) = size0, size1
        # to_pixel_coordinates: [-1, 1] -> [0, W] (pixel edges)
        k0 = torch.stack((w_a / 2 * (matches[:, 0] + 1), h_a / 2 * (matches[:, 1] + 1)), dim=-1)
        k1 = torch.stack((w_b / 2 * (matches[:, 2] + 1), h_b / 2 * (matches[:, 3] + 1)), dim=-1)
        s0 = np.array([shape0[1] / w_a, shape0[0] / h_a], dtype=np.float32)
        s1 = np.array([shape1[1] / w_b, shape1[0] / h_b], dtype=np.float32)
        if self.settings.preprocess == "minima":  # DataIOWrapper: kpts * (w / w_new, h / h_new), nothing dropped
            k0, k1, cert = (t.float().cpu().numpy() for t in (k0, k1, cert))
            return k0 * s0, k1 * s1, cert
        # the Space: certainty above match_thresh, inside the network image, then match_dense's
        # scale_keypoints(k + 0.5, original / network) - 0.5 (which treats the edge-convention
        # keypoints as centre-convention ones: the authors' half-pixel offset, kept)
        keep = (cert > self.settings.match_thresh) & (k0[:, 0] <= w_a - 1) & (k0[:, 1] <= h_a - 1) \
            & (k1[:, 0] <= w_b - 1) & (k1[:, 1] <= h_b - 1)
        k0, k1, cert = (t[keep].float().cpu().numpy() for t in (k0, k1, cert))
        return (k0 + 0.5) * s0 - 0.5, (k1 + 0.5) * s1 - 0.5, cert


def _minima_resize(image: np.ndarray, settings: RomaSettings) -> np.ndarray:
    """uint8 (H, W[, 3]) BGR/grey -> uint8 (h, w, 3) RGB as MINIMA's ``preprocess_image`` and
    ``ToPILImage`` make it: cv2 bilinear to a long side of ``long_side`` (rounded), both sides
    floored to multiples of 8, /255 as float32, then *255 truncated to uint8 (ToPILImage)."""
    import cv2

    from ..eloftr.preprocess import _check_uint8

    image = _check_uint8(image)
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    h, w = rgb.shape[:2]
    scale = settings.long_side / max(h, w)
    w_new, h_new = (int(int(round(x * scale)) // 8 * 8) for x in (w, h))
    if min(w_new, h_new) < 8:
        raise ValueError(f"image {w}x{h} is too narrow for minima_roma (sides become {w_new}x{h_new})")
    rgb = cv2.resize(rgb, (w_new, h_new))
    scaled = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    return np.ascontiguousarray(scaled.mul(255).byte().permute(1, 2, 0).numpy())
