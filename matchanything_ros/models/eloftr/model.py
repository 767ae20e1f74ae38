"""The deployable MatchAnything-ELoFTR network: two images in, fixed-size match lists out.

Graph (as the authors' MatchAnything code runs it): zero padding bottom-right to a square ->
fused RepVGG backbone -> aggregated-attention transformer on the valid cells -> fp32 dual-softmax
over the valid cells -> every pair above the threshold (or mutual nearest neighbours) -> fixed
top-K -> fine refinement of the K pairs on the padded maps. The backbone and the fine pyramid
compute only the leading rows/columns of the padded maps that the valid cells and their fine
windows depend on (:mod:`.crop`; same results, less work). Every shape depends only on the
input resolution and ``top_k`` (no NonZero, no data-dependent shapes), so the module exports to
ONNX / TensorRT as one static graph per resolution.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import RepVGGBackbone
from .coarse import CoarseMatching, cell_to_pixel
from .config import ELoFTRConfig
from .crop import AxisCrop, axis_crop
from .fine import FineFeatures, fine_windows, refine, window_span
from .transformer import CoarseTransformer

#: TensorRT's TopK supports K <= 3840
MAX_TOP_K = 3840


class ELoFTRDeploy(nn.Module):
    """MatchAnything-ELoFTR for deployment.

    ``forward(image0, image1, threshold)``: image0/image1 float32 (1, 1, H, W) in [0, 1], same H, W,
    multiples of ``config.size_divisor`` (32); threshold a float32 scalar tensor (coarse
    confidence threshold). Returns ``(kpts0 (K, 2), kpts1 (K, 2), scores (K,), candidates ())``:
    float32 keypoints in network input pixels and scores, best first, K = ``top_k``, slots
    without a match have score 0; ``candidates`` (int32) counts the pairs that passed the
    threshold -- above K, the weakest were dropped.
    """

    def __init__(self, config: ELoFTRConfig | None = None, top_k: int = 2048):
        super().__init__()
        if not 1 <= int(top_k) <= MAX_TOP_K:
            raise ValueError(f"top_k must be in [1, {MAX_TOP_K}] (TensorRT TopK limit), got {top_k}")
        self.config = config or ELoFTRConfig()
        self.top_k = int(top_k)
        self.backbone = RepVGGBackbone(self.config)
        self.transformer = CoarseTransformer(self.config)
        self.coarse_matching = CoarseMatching(self.config, self.top_k)
        self.fine = FineFeatures(self.config)

    def coarse(self, image0: torch.Tensor, image1: torch.Tensor):
        """Backbone + transformer: (coarse0, coarse1, coarse_padded, skips).

        coarse0/1: (1, C, h/8, w/8) transformed features of the valid cells; coarse_padded:
        both, zero-filled to the padded grid (the fine stage's input, as the authors pad the
        transformer output back); skips: backbone features per image, finest first.
        With ``pad_to_square`` the backbone sees the images padded bottom-right with zeros to a
        square (the authors' wrapper) and the transformer only the valid cells (their mask).
        """
        height, width = image0.shape[-2:]
        images = torch.cat([image0, image1], dim=0)
        side = max(height, width)
        if self.config.pad_to_square and height != width:
            images = F.pad(images, (0, side - width, 0, side - height))
        rows, cols = self.crop_plan(height, width)
        feats = self.backbone(images, list(zip(rows.stage_inputs, cols.stage_inputs)))
        stride = self.config.coarse_stride
        hc, wc = height // stride, width // stride
        full = feats[-1]
        coarse0, coarse1 = self.transformer(full[:1, :, :hc, :wc], full[1:, :, :hc, :wc])  # channels-last
        both = torch.cat([coarse0, coarse1], dim=0).permute(0, 3, 1, 2)
        hp, wp = rows.coarse, cols.coarse
        padded = F.pad(both, (0, wp - wc, 0, hp - hc)) if (hp, wp) != (hc, wc) else both
        return both[:1], both[1:], padded, feats[:-1]

    def crop_plan(self, height: int, width: int) -> tuple[AxisCrop, AxisCrop]:
        """(rows, cols): how much of each padded map the outputs depend on (:mod:`.crop`); the
        backbone and fine stage compute only that, with the same results."""
        side = max(height, width) if self.config.pad_to_square else None
        span = window_span(self.config.fine_window)
        return (
            axis_crop(self.config, height, side or height, span),
            axis_crop(self.config, width, side or width, span),
        )

    def forward(self, image0: torch.Tensor, image1: torch.Tensor, threshold: torch.Tensor):
        kpts0, kpts1, scores, candidates, _, _ = self.match_cells(image0, image1, threshold)
        return kpts0, kpts1, scores, candidates

    def match_cells(self, image0: torch.Tensor, image1: torch.Tensor, threshold: torch.Tensor):
        """Like forward, plus the selected coarse cell indices (idx0 (K,), idx1 (K,)) of each
        pair, row-major over the valid grid (h/8, w/8)."""
        cfg = self.config
        height, width = image0.shape[-2:]
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            if image0.shape != image1.shape or image0.shape[:2] != (1, 1):
                raise ValueError(
                    f"ELoFTRDeploy expects two (1, 1, H, W) images of the same size, got "
                    f"{tuple(image0.shape)} and {tuple(image1.shape)}"
                )
            cfg.check_input_size(height, width)
        return self.match_features(height, *self.coarse(image0, image1), threshold)

    def match_features(self, height: int, coarse0, coarse1, padded, skips, threshold: torch.Tensor):
        """Coarse matching + fine refinement on the outputs of :meth:`coarse` (``height``: input
        rows); returns what :meth:`match_cells` returns."""
        cfg = self.config
        hc, wc = coarse0.shape[-2:]
        stride = height // hc
        idx0, idx1, scores, candidates = self.coarse_matching(coarse0, coarse1, threshold)
        rows, cols = self.crop_plan(height, wc * stride)
        # fine features at 1/2 res of the (padded) input, as far as the windows read them
        half = self.fine(padded, skips, list(zip(rows.fine_inputs, cols.fine_inputs)))
        bounds = (rows.full, cols.full)  # full-res map the windows are cut from
        win0 = fine_windows(half[:1], idx0, wc, bounds, stride, cfg.fine_window, pad=0)
        win1 = fine_windows(half[1:], idx1, wc, bounds, stride, cfg.fine_window, pad=1)
        kpts0_c = cell_to_pixel(idx0, wc, stride)
        kpts1_c = cell_to_pixel(idx1, wc, stride)
        kpts0, kpts1 = refine(win0.float(), win1.float(), kpts0_c, kpts1_c, cfg)
        return kpts0, kpts1, scores.float(), candidates, idx0, idx1


def load_deploy_model(
    weights_path: str | Path,
    top_k: int = 2048,
    config: ELoFTRConfig | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> ELoFTRDeploy:
    """Build :class:`ELoFTRDeploy` from a checkpoint (HF safetensors or MatchAnything ``.ckpt``),
    fuse RepVGG/BatchNorm, move to ``device``/``dtype`` and set eval mode. Without ``config`` the
    shape comes from a ``config.json`` beside the weights, else the published defaults."""
    from .weights import config_for, load_state_dict

    model = ELoFTRDeploy(config or config_for(weights_path), top_k)
    model.load_state_dict(load_state_dict(weights_path, model.config), strict=True)
    return model.to(device=device, dtype=dtype).eval()
