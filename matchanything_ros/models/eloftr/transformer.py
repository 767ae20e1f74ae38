"""Aggregated-attention transformer of EfficientLoFTR (self + cross attention, RoPE).

Attention runs on a 4x-aggregated grid (depthwise strided conv for queries, max-pool for keys and
values), the result is upsampled back to the coarse grid and merged through an MLP. Rotary
position embeddings are applied in self-attention only, over the whole 256-d feature (before the
split into heads), as in the released model.

Written channels-last, (N, h, w, C) from end to end, for speed on every runtime: the aggregations
are reshapes with a weighted sum / max, the x4 bilinear upsampling is two small constant matrices,
and the MLP's first layer is split so that its attention half runs on the 16x smaller aggregated
grid (fc1([x, up(o)]) = fc1_x(x) + up(fc1_o(o)): both upsampling and fc1 are linear). No layout
transposes of the 4800 x 256 maps remain; the numbers are the released model's up to float
rounding (tested against transformers' implementation).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import ELoFTRConfig


def rope_tables(
    height: int, width: int, dim: int, theta: float, scale: tuple[float, float], device, fp16: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (height*width, dim) for 2-D RoPE: channel pairs alternate row / column
    frequencies, positions start at 1 (row i, column j of the aggregated grid).

    Computed in fp32 the way the authors' ``RoPEPositionEncodingSine`` does (frequencies
    ``exp(-k ln(theta) / (dim/4))``); ``fp16`` rounds the tables to half precision as their
    ``ropefp16=True`` does (the rotation itself stays fp32)."""
    freq_dim = dim // 2  # half the channels carry row angles, half column angles
    quarter = dim // 4
    inv_freq = torch.exp(torch.arange(0, quarter, 1, device=device).float() * (-math.log(theta) / quarter))
    rows = torch.arange(1, height + 1, dtype=torch.float32, device=device) * scale[0]
    cols = torch.arange(1, width + 1, dtype=torch.float32, device=device) * scale[1]
    row_angles = rows[:, None, None] * inv_freq  # (H, 1, F)
    col_angles = cols[None, :, None] * inv_freq  # (1, W, F)
    angles = torch.stack(
        [row_angles.expand(height, width, -1), col_angles.expand(height, width, -1)], dim=-1
    ).reshape(height * width, freq_dim)  # interleaved: row, col, row, col, ...
    angles = angles.repeat_interleave(2, dim=-1)  # each angle rotates one channel pair
    cos, sin = angles.cos(), angles.sin()
    if fp16:
        cos, sin = cos.half().float(), sin.half().float()
    return cos, sin


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)."""
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)


@functools.lru_cache(maxsize=16)
def bilinear_matrix(size_out: int, size_in: int) -> np.ndarray:
    """(size_out, size_in) float32 matrix of 1-D bilinear upsampling with align_corners=False, the
    way ``F.interpolate(scale_factor=size_out / size_in)`` computes it (source clamped at 0,
    neighbour clamped at the last pixel). A constant of the exported graph (numpy, not traced)."""
    scale = size_in / size_out
    src = np.maximum((np.arange(size_out) + 0.5) * scale - 0.5, 0.0)
    low = np.floor(src).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    frac = src - low
    matrix = np.zeros((size_out, size_in))
    matrix[np.arange(size_out), low] += 1 - frac
    matrix[np.arange(size_out), high] += frac
    return matrix.astype(np.float32)


def upsample_channels_last(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear upsampling (align_corners=False) of a (N, h, w, C) map to (N, height, width, C),
    as two constant-matrix products (rows, then columns): no layout change, no Resize op."""
    n, h, w, c = x.shape
    rows = torch.from_numpy(bilinear_matrix(height, h)).to(x.device, x.dtype)
    cols = torch.from_numpy(bilinear_matrix(width, w)).to(x.device, x.dtype)
    x = (rows @ x.reshape(n, h, w * c)).reshape(n, height, w, c)
    return cols @ x  # (width, w) @ (N, height, w, C) -> (N, height, width, C)


class AggregatedAttention(nn.Module):
    """One aggregated attention block: x attends to source (x itself for self-attention).

    Module and parameter names are those of the checkpoint conversion (``weights.py``); the
    query aggregation keeps its depthwise-conv weight (C, 1, a, a).
    """

    def __init__(self, config: ELoFTRConfig):
        super().__init__()
        c = config.hidden_size
        self.num_heads = config.num_heads
        self.aggregation = config.aggregation
        self.q_aggregation = nn.Conv2d(c, c, config.aggregation, stride=config.aggregation, groups=c, bias=False)
        self.norm = nn.LayerNorm(c, eps=config.layer_norm_eps)
        self.q_proj = nn.Linear(c, c, bias=False)
        self.k_proj = nn.Linear(c, c, bias=False)
        self.v_proj = nn.Linear(c, c, bias=False)
        self.o_proj = nn.Linear(c, c, bias=False)
        self.fc1 = nn.Linear(2 * c, 2 * c, bias=False)
        self.fc2 = nn.Linear(2 * c, c, bias=False)
        self.mlp_norm = nn.LayerNorm(c, eps=config.layer_norm_eps)
        self.negative_slope = config.mlp_negative_slope

    def forward(
        self, x: torch.Tensor, source: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        """x, source: (N, h, w, C) channels-last; returns x updated, same shape."""
        n, h, w, c = x.shape
        a = self.aggregation
        hq, wq = h // a, w // a
        # depthwise a x a, stride-a convolution = weighted sum over each a x a block
        kernel = self.q_aggregation.weight.reshape(c, a, a).permute(1, 2, 0).reshape(1, 1, a, 1, a, c)
        query = (x.reshape(n, hq, a, wq, a, c) * kernel).sum(dim=(2, 4))
        kv = source.reshape(n, hq, a, wq, a, c).amax(dim=(2, 4))  # a x a max-pooling
        query = self.norm(query.reshape(n, hq * wq, c))  # (N, L, C)
        kv = self.norm(kv.reshape(n, hq * wq, c))
        q, k, v = self.q_proj(query), self.k_proj(kv), self.v_proj(kv)
        if rope is not None:
            cos, sin = rope
            # rotation in fp32 like the reference, whatever the autocast dtype
            qf, kf = q.float(), k.float()
            q = (qf * cos + rotate_pairs(qf) * sin).to(q.dtype)
            k = (kf * cos + rotate_pairs(kf) * sin).to(k.dtype)
        head_dim = c // self.num_heads
        q = q.unflatten(-1, (self.num_heads, head_dim)).transpose(1, 2)  # (N, heads, L, d)
        k = k.unflatten(-1, (self.num_heads, head_dim)).transpose(1, 2)
        v = v.unflatten(-1, (self.num_heads, head_dim)).transpose(1, 2)
        # explicit matmul/softmax: exports to plain MatMul/Softmax that every runtime accepts
        attn = torch.softmax((q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(head_dim)), dim=-1)
        out = self.o_proj((attn @ v).transpose(1, 2).flatten(2))  # (N, L, C)
        # MLP on [x, upsampled out]: fc1's second half applied before the (linear) upsampling
        w_x, w_out = self.fc1.weight[:, :c], self.fc1.weight[:, c:]
        out = F.linear(out, w_out).reshape(n, hq, wq, 2 * c)
        hidden = F.linear(x, w_x) + upsample_channels_last(out, h, w)
        merged = self.fc2(F.leaky_relu(hidden, self.negative_slope))
        return x + self.mlp_norm(merged)


class CoarseTransformer(nn.Module):
    """num_layers x (self-attention on both images, then cross-attention 0<-1 and 1<-0).

    The cross step updates image 0 first and lets image 1 attend to the *updated* image 0, as the
    released MatchAnything/EfficientLoFTR code does (zju3dv/MatchAnything issue 26).
    """

    def __init__(self, config: ELoFTRConfig):
        super().__init__()
        self.config = config
        self.self_attention = nn.ModuleList(AggregatedAttention(config) for _ in range(config.num_layers))
        self.cross_attention = nn.ModuleList(AggregatedAttention(config) for _ in range(config.num_layers))

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, C, h, w) x 2 (backbone layout) -> (1, h, w, C) x 2, channels-last."""
        cfg = self.config
        h, w = feat0.shape[-2:]
        rope = rope_tables(
            h // cfg.aggregation, w // cfg.aggregation, cfg.hidden_size, cfg.rope_theta, cfg.rope_scale, feat0.device,
            fp16=cfg.rope_fp16,
        )
        both = torch.cat([feat0, feat1], dim=0).permute(0, 2, 3, 1)  # the one layout change in
        feat0, feat1 = both[:1], both[1:]
        for self_attn, cross_attn in zip(self.self_attention, self.cross_attention):
            both = torch.cat([feat0, feat1], dim=0)
            both = self_attn(both, both, rope)
            feat0, feat1 = both[:1], both[1:]
            feat0 = cross_attn(feat0, feat1, None)
            feat1 = cross_attn(feat1, feat0, None)
        return feat0, feat1
