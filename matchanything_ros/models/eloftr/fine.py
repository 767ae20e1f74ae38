"""Fine-level refinement of the K selected coarse matches.

A feature pyramid brings the transformed 1/8 features back to full resolution (fusing the 1/4 and
1/2 backbone features). For each selected pair an 8x8 window around the image-0 cell and a 10x10
window around the image-1 cell are gathered (only K windows, never all cells), then:
stage 1 picks the best pixel pair by dual-softmax over the windows; stage 2 refines the image-1
position to sub-pixel with a softmax expectation over the 3x3 neighbourhood.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ELoFTRConfig


class FusionBlock(nn.Module):
    """Merge an upsampled coarser map with a backbone skip feature; BN already folded into conv2."""

    def __init__(self, skip_channels: int, channels: int, negative_slope: float):
        super().__init__()
        self.skip = nn.Conv2d(skip_channels, channels, 1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=True)
        self.conv3 = nn.Conv2d(channels, skip_channels, 3, padding=1, bias=False)
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.skip(skip) + x
        x = F.leaky_relu(self.conv2(x), self.negative_slope)
        x = self.conv3(x)
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class FineFeatures(nn.Module):
    """1/8 transformed features + [1/4, 1/2] backbone features -> full-resolution fine features."""

    def __init__(self, config: ELoFTRConfig):
        super().__init__()
        dims = list(reversed(config.stage_channels))[:-1]  # e.g. 256, 128, 64
        self.hidden_size = config.hidden_size
        self.out_conv = nn.Conv2d(dims[0], dims[0], 1, bias=False)
        self.blocks = nn.ModuleList(
            FusionBlock(dims[i], dims[i - 1], config.mlp_negative_slope) for i in range(1, len(dims))
        )

    def forward(self, coarse: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """coarse: (N, C, h, w) transformer output; skips: backbone features finest first."""
        x = self.out_conv(coarse / self.hidden_size**0.5)
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        for block, skip in zip(self.blocks, reversed(skips)):
            x = block(x, skip)
        return x


def gather_windows(features: torch.Tensor, cells: torch.Tensor, coarse_width: int, stride: int, size: int, pad: int) -> torch.Tensor:
    """(K, size*size, C) windows of a (1, C, H, W) map: window k starts at pixel
    (row * stride - pad, col * stride - pad) of cell ``cells[k]``; outside pixels are zero."""
    if pad:
        features = F.pad(features, [pad, pad, pad, pad])
    _, c, _, w = features.shape
    rows = (cells // coarse_width) * stride
    cols = (cells % coarse_width) * stride
    offsets = torch.arange(size, device=cells.device)
    pix_r = rows[:, None, None] + offsets[None, :, None]  # (K, size, 1)
    pix_c = cols[:, None, None] + offsets[None, None, :]  # (K, 1, size)
    flat = (pix_r * w + pix_c).reshape(-1)  # (K*size*size,)
    windows = features.flatten(2)[0].index_select(1, flat)  # (C, K*size*size)
    return windows.reshape(c, -1, size * size).permute(1, 2, 0)


def refine(
    win0: torch.Tensor,
    win1: torch.Tensor,
    kpts0_c: torch.Tensor,
    kpts1_c: torch.Tensor,
    config: ELoFTRConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-stage refinement of K matches. win0: (K, W*W, C), win1: (K, (W+2)^2, C); kpts*_c:
    (K, 2) coarse positions. Returns refined (K, 2) keypoints for both images (full-res pixels)."""
    ww = config.fine_window
    n = win0.shape[0]
    c = win0.shape[-1]
    split = c - config.fine_slice_dim
    # stage 1: dual softmax between the 8x8 and 10x10 windows, keep the inner 8x8 of image 1
    a0 = win0[..., :split] / split**0.5
    a1 = win1[..., :split] / split**0.5
    sim = a0 @ a1.transpose(1, 2)  # (K, 64, 100)
    conf = torch.softmax(sim, dim=1) * torch.softmax(sim, dim=2)
    conf = conf.reshape(n, ww * ww, ww + 2, ww + 2)[..., 1:-1, 1:-1].reshape(n, -1)
    best = conf.argmax(dim=1)  # flat index over (pixel in window 0, pixel in window 1)
    idx0 = best // (ww * ww)
    idx1 = best % (ww * ww)
    half = ww // 2 - 0.5
    delta0 = torch.stack([idx0 % ww, idx0 // ww], dim=-1).to(kpts0_c.dtype) - half
    delta1 = torch.stack([idx1 % ww, idx1 // ww], dim=-1).to(kpts1_c.dtype) - half
    kpts0 = kpts0_c + delta0
    kpts1 = kpts1_c + delta1
    # stage 2: 3x3 neighbourhood around the stage-1 pixel, indexed in the 10x10 window as the
    # released code does (inner row/col index + {-1, 0, 1})
    b0 = win0[..., split:]  # (K, 64, 8)
    b1 = win1[..., split:] / config.fine_slice_dim**0.5  # (K, 100, 8)
    feat0 = torch.gather(b0, 1, idx0[:, None, None].expand(-1, 1, b0.shape[-1]))  # (K, 1, 8)
    r = idx1 // ww
    col = idx1 % ww
    offs = torch.arange(-1, 2, device=idx1.device)
    # an index of -1 (stage-1 pixel on the inner window's first row/column) wraps to the last
    # row/column, exactly like the released code's negative tensor indexing
    rows = torch.remainder(r[:, None, None] + offs[None, :, None], ww + 2)
    cols = torch.remainder(col[:, None, None] + offs[None, None, :], ww + 2)
    nb = rows * (ww + 2) + cols
    nb = nb.reshape(n, 9)
    feat1 = torch.gather(b1, 1, nb[..., None].expand(-1, -1, b1.shape[-1]))  # (K, 9, 8)
    logits = (feat0 @ feat1.transpose(1, 2))[:, 0]  # (K, 9)
    heat = torch.softmax(logits / config.fine_regress_temperature, dim=-1).reshape(n, 3, 3)
    grid = offs.to(heat.dtype)
    expect_x = (heat.sum(dim=1) * grid).sum(dim=-1)
    expect_y = (heat.sum(dim=2) * grid).sum(dim=-1)
    kpts1 = kpts1 + torch.stack([expect_x, expect_y], dim=-1)
    return kpts0, kpts1
