"""Coarse matching with fixed output shapes: dual-softmax confidence over the valid (unpadded)
cells, every pair above the threshold (MatchAnything) or mutual nearest neighbours found by
row/column maxima (EfficientLoFTR), border removal, threshold as a tensor, fixed top-K (no
NonZero); the number of pairs that passed comes out too, so a full top-K is never silent."""
from __future__ import annotations

import torch
from torch import nn

from .config import ELoFTRConfig


def coarse_confidence(feat0: torch.Tensor, feat1: torch.Tensor, temperature: float) -> torch.Tensor:
    """Dual-softmax confidence (L0, L1) between two (1, C, h, w) coarse feature maps.

    Always computed in fp32: with 4800x4800 cells a half-precision similarity/softmax loses
    nearly every match, so the inputs are cast up even under autocast or a half model.
    """
    c = feat0.shape[1]
    with torch.autocast(device_type=feat0.device.type, enabled=False):
        f0 = feat0.float().flatten(2)[0].transpose(0, 1) / c**0.5  # (L0, C)
        f1 = feat1.float().flatten(2)[0].transpose(0, 1) / c**0.5  # (L1, C)
        similarity = (f0 @ f1.transpose(0, 1)) / temperature
        return dual_softmax(similarity)


def dual_softmax(similarity: torch.Tensor) -> torch.Tensor:
    """softmax over dim -2 times softmax over dim -1 of a (..., L0, L1) matrix.

    The column softmax is written out (max, exp, sum, divide over dim -2): ONNX Runtime runs a
    Softmax over a leading axis of a 4800x4800 matrix in about 120-160 ms on 2 cores, through a
    transposed copy, while these reductions over the leading axis take about 60-80 ms in all
    (docs/BENCHMARKS.md).
    A transpose-softmax-transpose does not help: ORT's transpose optimizer folds it back.
    """
    rows = torch.softmax(similarity, dim=-1)
    shifted = torch.exp(similarity - similarity.amax(dim=-2, keepdim=True))
    cols = shifted / shifted.sum(dim=-2, keepdim=True)
    return cols * rows


def border_mask(h: int, w: int, border: int, device) -> torch.Tensor:
    """(h*w,) bool: True for cells at least ``border`` cells away from the edge."""
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    ok_r = (rows >= border) & (rows < h - border)
    ok_c = (cols >= border) & (cols < w - border)
    return (ok_r[:, None] & ok_c[None, :]).reshape(-1)


def select_matches(
    confidence: torch.Tensor,
    shape0: tuple[int, int],
    shape1: tuple[int, int],
    threshold: torch.Tensor,
    border: int,
    top_k: int,
    rule: str = "mtd",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cell pairs above ``threshold`` away from the border, best ``top_k`` first.

    ``rule="mtd"`` (MatchAnything, ``MTD_SPVS``): every pair (i, j) with conf > threshold, as the
    authors' ``torch.where(mask)``. ``rule="mnn"`` (EfficientLoFTR): only pairs whose conf is the
    maximum of row i and of column j. Both cells must lie ``border`` cells inside the valid grid
    (the authors' padding-aware border). Returns (idx0 (K,), idx1 (K,), scores (K,), candidates
    ()) with scores 0 in empty slots and ``candidates`` the number of pairs that passed (int32):
    more than K means the fixed-size output dropped the weakest. K is always ``top_k``.
    """
    l0, l1 = confidence.shape
    ok0 = border_mask(*shape0, border, confidence.device)
    ok1 = border_mask(*shape1, border, confidence.device)
    if rule == "mnn":
        row_max, best1 = confidence.max(dim=1)  # each image-0 cell's best image-1 cell
        col_max = confidence.max(dim=0).values  # (L1,)
        valid = (row_max >= col_max[best1]) & (row_max > threshold) & ok0 & ok1[best1]
        scores = torch.where(valid, row_max, torch.zeros_like(row_max))
        k = min(top_k, l0)
        scores_k, idx0 = torch.topk(scores, k)
        idx1 = best1[idx0]
    else:
        valid = (confidence > threshold) & ok0[:, None] & ok1[None, :]
        scores = torch.where(valid, confidence, torch.zeros_like(confidence)).reshape(-1)
        k = min(top_k, l0 * l1)
        scores_k, flat = torch.topk(scores, k)
        idx0 = torch.div(flat, l1, rounding_mode="floor")
        idx1 = flat - idx0 * l1
    # counted in fp32, per row then in all: ONNX Runtime reduces a float tensor several times
    # faster than the bool -> int64 sum (87 ms at 4800 x 4800 on 2 cores); exact below 2^24 pairs
    counts = valid.to(torch.float32)
    candidates = (counts.sum(dim=-1).sum() if counts.dim() == 2 else counts.sum()).to(torch.int32)
    if k < top_k:  # fewer cells than slots: pad so the output shape never depends on the input
        pad = top_k - k
        idx0 = torch.cat([idx0, idx0.new_zeros(pad)])
        idx1 = torch.cat([idx1, idx1.new_zeros(pad)])
        scores_k = torch.cat([scores_k, scores_k.new_zeros(pad)])
    return idx0, idx1, scores_k, candidates


def cell_to_pixel(idx: torch.Tensor, width: int, stride: int) -> torch.Tensor:
    """Coarse cell index -> (x, y) pixel position of the cell as the reference reports it
    (column * stride, row * stride)."""
    return torch.stack([idx % width, idx // width], dim=-1).float() * stride


class CoarseMatching(nn.Module):
    """Coarse head as a submodule, so exporters can find (and keep in fp32) its nodes by scope."""

    def __init__(self, config: ELoFTRConfig, top_k: int):
        super().__init__()
        self.temperature = config.temperature
        self.border = config.border_removal
        self.rule = config.match_rule
        self.top_k = top_k

    def forward(self, coarse0: torch.Tensor, coarse1: torch.Tensor, threshold: torch.Tensor):
        """(1, C, h, w) x 2 valid grids -> (idx0 (K,), idx1 (K,), scores (K,) fp32, candidates ())."""
        shape = tuple(coarse0.shape[-2:])
        confidence = coarse_confidence(coarse0, coarse1, self.temperature)
        threshold = threshold.to(confidence.dtype).reshape(())
        return select_matches(confidence, shape, shape, threshold, self.border, self.top_k, self.rule)
