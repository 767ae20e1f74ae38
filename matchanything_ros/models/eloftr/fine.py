"""Fine-level refinement of the K selected coarse matches.

A feature pyramid brings the transformed 1/8 features up to 1/2 resolution (fusing the 1/4 and 1/2
backbone features); the released model then upsamples that map x2 (bilinear) to full resolution
and cuts an 8x8 window around each image-0 cell and a 10x10 window around each image-1 cell.
Here only the K selected windows are ever made: each is a 6x6 patch of the 1/2-resolution map
times a fixed bilinear-weight matrix (exactly the pixels the full-resolution map would hold there),
so the 64-channel full-resolution map never exists. With square padding the pyramid is computed
only as far into the padding as the valid cells' windows reach (``sizes``, see :mod:`.crop`). Then:
stage 1 picks the best pixel pair by dual-softmax over the windows; stage 2 refines the image-1
position to sub-pixel with a softmax expectation over the 3x3 neighbourhood.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .coarse import dual_softmax
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
        return self.conv3(x)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """The pyramid's x2 bilinear upsampling (align_corners=False), as in the released model."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class FineFeatures(nn.Module):
    """1/8 transformed features + [1/4, 1/2] backbone features -> fine features at 1/2 resolution.

    The released model's full-resolution fine map is ``upsample2`` of this output; only the
    windows of it that refinement reads are made, by :func:`fine_windows`.
    """

    def __init__(self, config: ELoFTRConfig):
        super().__init__()
        dims = list(reversed(config.stage_channels))[:-1]  # e.g. 256, 128, 64
        self.hidden_size = config.hidden_size
        self.out_conv = nn.Conv2d(dims[0], dims[0], 1, bias=False)
        self.blocks = nn.ModuleList(
            FusionBlock(dims[i], dims[i - 1], config.mlp_negative_slope) for i in range(1, len(dims))
        )

    def forward(
        self, coarse: torch.Tensor, skips: list[torch.Tensor], sizes: list[tuple[int, int]] | None = None
    ) -> torch.Tensor:
        """coarse: (N, C, h, w) transformer output; skips: backbone features finest first;
        sizes: per block (coarsest first), the leading (rows, cols) of its input to compute
        (see :mod:`.crop`); None: the skip features' whole size."""
        x = self.out_conv(coarse / self.hidden_size**0.5)
        skips = list(reversed(skips))
        for i, block in enumerate(self.blocks):
            h, w = sizes[i] if sizes is not None else skips[i].shape[-2:]
            x = upsample2(x)
            if x.shape[-2:] != (h, w):
                x = x[..., :h, :w]
            skip = skips[i] if skips[i].shape[-2:] == (h, w) else skips[i][..., :h, :w]
            x = block(x, skip)
        return x


def gather_patches(features: torch.Tensor, cells: torch.Tensor, coarse_width: int, stride: int, size: int, start: int) -> torch.Tensor:
    """(K, size*size, C) patches of a (1, C, H, W) map: patch k covers rows/columns
    ``row * stride + start + [0, size)`` of cell ``cells[k]``, indices clamped to the map (so an
    outside pixel repeats the nearest edge pixel, as bilinear upsampling does)."""
    _, c, h, w = features.shape
    offsets = torch.arange(size, device=cells.device) + start
    pix_r = ((cells // coarse_width) * stride)[:, None] + offsets  # (K, size)
    pix_c = ((cells % coarse_width) * stride)[:, None] + offsets
    # where() rather than clamp/max/min: those export as Clip, which TensorRT takes for float
    # tensors only; Less/Greater/Where work on integer indices
    pix_r = torch.where(pix_r < 0, 0, torch.where(pix_r > h - 1, h - 1, pix_r))
    pix_c = torch.where(pix_c < 0, 0, torch.where(pix_c > w - 1, w - 1, pix_c))
    flat = (pix_r[:, :, None] * w + pix_c[:, None, :]).reshape(-1)  # (K*size*size,)
    patches = features.flatten(2)[0].index_select(1, flat)  # (C, K*size*size)
    return patches.reshape(c, -1, size * size).permute(1, 2, 0)


def window_span(window: int) -> int:
    """Rows (and columns) of the 1/2-resolution map that one refinement window reads."""
    return max(_upsample_weights(window, pad)[1] for pad in (0, 1))


@functools.lru_cache(maxsize=8)
def _upsample_weights(window: int, pad: int) -> tuple[np.ndarray, int]:
    """Weights of the (window + 2 pad)^2 full-resolution window pixels over a (span x span)
    1/2-resolution patch. 1-D: full pixel ``cell_start - pad + a`` reads half pixel
    ``y / 2 - 0.25`` (x2 bilinear, align_corners=False), measured from the patch start
    ``cell_start / 2 - 1``. Plain numpy: a constant of the exported graph, not traced."""
    n = window + 2 * pad
    rel = (np.arange(n) - pad) / 2 + 0.75
    low = np.floor(rel).astype(int)
    frac = rel - low
    span = int(low.max()) + 2
    taps = np.zeros((n, span))
    taps[np.arange(n), low] = 1 - frac
    taps[np.arange(n), low + 1] += frac
    return np.kron(taps, taps).astype(np.float32), span


def fine_windows(
    half: torch.Tensor, cells: torch.Tensor, coarse_width: int, bounds: tuple[int, int], stride: int, window: int, pad: int
) -> torch.Tensor:
    """(K, (window + 2 pad)^2, C) windows of the full-resolution fine map ``upsample2(half)``:
    window k covers full-resolution rows/columns ``cell * stride - pad + [0, window + 2 pad)`` of
    cell ``cells[k]``, zero outside the image (the released model zero-pads there).

    half: (1, C, H/2, W/2) output of :class:`FineFeatures`; cells: row-major indices over a grid
    ``coarse_width`` wide; bounds: (H, W) of the full-resolution map (the padded input); stride:
    coarse cell size in full pixels (8). Each window is a gathered (span x span) 1/2-resolution patch times a constant
    bilinear weight matrix: the same values as upsampling the whole map, made only where needed.
    """
    weights, span = _upsample_weights(window, pad)  # (n*n, span*span)
    patches = gather_patches(half, cells, coarse_width, stride // 2, span, start=-1)
    windows = torch.from_numpy(weights).to(half.device, half.dtype) @ patches  # (K, n*n, C)
    if pad:
        # full-resolution pixels outside the image are zero (the reference pads the full map)
        n = window + 2 * pad
        offsets = torch.arange(n, device=cells.device) - pad
        rows = (cells // coarse_width * stride)[:, None] + offsets
        cols = (cells % coarse_width * stride)[:, None] + offsets
        ok_r = (rows >= 0) & (rows < bounds[0])
        ok_c = (cols >= 0) & (cols < bounds[1])
        inside = (ok_r[:, :, None] & ok_c[:, None, :]).reshape(-1, n * n, 1)
        windows = windows * inside.to(windows.dtype)
    return windows


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
    # stage 1: dual softmax between the 8x8 and 10x10 windows, keep the inner 8x8 of image 1.
    # Each side is divided by sqrt(C) of the whole window feature (NORMFINEM in MatchAnything,
    # the same in EfficientLoFTR); transformers divides by sqrt(C - slice) ("slice")
    norm = (c if config.fine_stage1_norm == "full" else split) ** 0.5
    a0 = win0[..., :split] / norm
    a1 = win1[..., :split] / norm
    sim = a0 @ a1.transpose(1, 2)  # (K, 64, 100)
    conf = dual_softmax(sim)
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
    # the expectation as a product with the grid (the released code: (heat * grid).sum): the
    # same three-term sum, but OpenVINO's CPU plugin (2024.6-2026.4) fused the exported
    # Mul + ReduceSum chain wrongly and returned garbage keypoints (test/test_openvino_engine.py)
    expect_x = heat.sum(dim=1) @ grid
    expect_y = heat.sum(dim=2) @ grid
    kpts1 = kpts1 + torch.stack([expect_x, expect_y], dim=-1)
    return kpts0, kpts1
