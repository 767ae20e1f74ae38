"""SuperPoint (DeTone et al. 2018) with a fixed number of keypoint slots.

kornia has no SuperPoint, and the detector the LightGlue authors ship (cvg/LightGlue, not on PyPI)
returns a data-dependent number of points, which an ONNX/TensorRT graph with fixed shapes cannot.
This module computes the same network and the same keypoints (NMS, border removal, detection
threshold, best-K) but always returns K slots, best first, with a validity mask for slots whose
score is at or below the detection threshold. State-dict names are cvg's (``conv1a`` ... ``convDb``),
so ``superpoint_v1.pth`` loads as is.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=k, stride=1, padding=k // 2)


def simple_nms(scores: torch.Tensor, radius: int) -> torch.Tensor:
    """Zero every score that is not the maximum of its (2r+1)^2 window, two suppression rounds
    (SuperPoint's fast NMS)."""

    def max_pool(x):
        return F.max_pool2d(x, kernel_size=radius * 2 + 1, stride=1, padding=radius)

    zeros = torch.zeros_like(scores)
    max_mask = scores == max_pool(scores)
    for _ in range(2):
        supp_mask = max_pool(max_mask.float()) > 0
        supp_scores = torch.where(supp_mask, zeros, scores)
        new_max_mask = supp_scores == max_pool(supp_scores)
        max_mask = max_mask | (new_max_mask & (~supp_mask))
    return torch.where(max_mask, scores, zeros)


class SuperPointFixed(nn.Module):
    """SuperPoint returning ``K`` keypoint slots per image.

    forward(image (B, 1, H, W) in [0, 1], H and W multiples of 8) ->
    keypoints (B, K, 2) float pixels (x, y), scores (B, K), descriptors (B, K, 256) unit length,
    valid (B, K) bool (score > detection_threshold). Slots are sorted by score, best first.
    """

    def __init__(
        self,
        max_keypoints: int = 2048,
        detection_threshold: float = 0.0005,
        nms_radius: int = 4,
        remove_borders: int = 4,
        descriptor_dim: int = 256,
    ):
        super().__init__()
        self.max_keypoints = int(max_keypoints)
        self.detection_threshold = float(detection_threshold)
        self.nms_radius = int(nms_radius)
        self.remove_borders = int(remove_borders)
        c1, c2, c3, c4, c5 = 64, 64, 128, 128, 256
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv1a, self.conv1b = _conv(1, c1), _conv(c1, c1)
        self.conv2a, self.conv2b = _conv(c1, c2), _conv(c2, c2)
        self.conv3a, self.conv3b = _conv(c2, c3), _conv(c3, c3)
        self.conv4a, self.conv4b = _conv(c3, c4), _conv(c4, c4)
        self.convPa, self.convPb = _conv(c4, c5), _conv(c5, 65, 1)
        self.convDa, self.convDb = _conv(c4, c5), _conv(c5, descriptor_dim, 1)

    def dense(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-resolution score map (B, H, W) after NMS and border removal, and the coarse
        descriptor map (B, 256, H/8, W/8), L2-normalised."""
        x = image
        for a, b, pool in (
            (self.conv1a, self.conv1b, True),
            (self.conv2a, self.conv2b, True),
            (self.conv3a, self.conv3b, True),
            (self.conv4a, self.conv4b, False),
        ):
            x = self.relu(b(self.relu(a(x))))
            if pool:
                x = self.pool(x)
        scores = F.softmax(self.convPb(self.relu(self.convPa(x))), 1)[:, :-1]
        b, _, h, w = scores.shape
        scores = scores.permute(0, 2, 3, 1).reshape(b, h, w, 8, 8).permute(0, 1, 3, 2, 4).reshape(b, h * 8, w * 8)
        scores = simple_nms(scores, self.nms_radius)
        if self.remove_borders:
            # a comparison mask rather than in-place slice writes: same values, and the export
            # needs no ScatterND
            r = self.remove_borders
            ys = torch.arange(h * 8, device=scores.device)
            xs = torch.arange(w * 8, device=scores.device)
            inside = ((ys >= r) & (ys < h * 8 - r))[:, None] & ((xs >= r) & (xs < w * 8 - r))[None, :]
            scores = torch.where(inside, scores, torch.full_like(scores, -1.0))
        desc = F.normalize(self.convDb(self.relu(self.convDa(x))), p=2, dim=1)
        return scores, desc

    def forward(self, image: torch.Tensor):
        scores, desc = self.dense(image)
        b, h, w = scores.shape
        k = min(self.max_keypoints, h * w)
        top, index = torch.topk(scores.reshape(b, h * w), k, dim=1)
        keypoints = torch.stack([index % w, torch.div(index, w, rounding_mode="floor")], -1).float()
        valid = top > self.detection_threshold
        return keypoints, top, sample_descriptors(keypoints, desc, 8), valid


def sample_descriptors(keypoints: torch.Tensor, descriptors: torch.Tensor, s: int = 8) -> torch.Tensor:
    """Bilinear descriptors at pixel keypoints (B, K, 2) from a 1/s map (B, C, h, w), unit length,
    with SuperPoint's cell-centre convention (the map's first cell centre at pixel s/2 - 0.5)."""
    b, c, h, w = descriptors.shape
    kp = keypoints - s / 2 + 0.5
    kp = kp / kp.new_tensor([w * s - s / 2 - 0.5, h * s - s / 2 - 0.5])
    kp = kp * 2 - 1
    out = F.grid_sample(descriptors, kp.view(b, 1, -1, 2), mode="bilinear", align_corners=True)
    return F.normalize(out.reshape(b, c, -1), p=2, dim=1).transpose(1, 2)
