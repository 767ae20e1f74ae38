"""Aggregated-attention transformer of EfficientLoFTR (self + cross attention, RoPE).

Attention runs on a 4x-aggregated grid (depthwise strided conv for queries, max-pool for keys and
values), the result is upsampled back to the coarse grid and merged through an MLP. Rotary
position embeddings are applied in self-attention only, over the whole 256-d feature (before the
split into heads), as in the released model.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ELoFTRConfig


def rope_tables(
    height: int, width: int, dim: int, theta: float, scale: tuple[float, float], device, dtype=torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (height*width, dim) for 2-D RoPE: channel pairs alternate row / column
    frequencies, positions start at 1 (row i, column j of the aggregated grid)."""
    freq_dim = dim // 2  # half the channels carry row angles, half column angles
    inv_freq = 1.0 / (theta ** (torch.arange(0, freq_dim, 2, dtype=torch.float32, device=device) / freq_dim))
    rows = torch.arange(1, height + 1, dtype=torch.float32, device=device) * scale[0]
    cols = torch.arange(1, width + 1, dtype=torch.float32, device=device) * scale[1]
    row_angles = rows[:, None, None] * inv_freq  # (H, 1, F)
    col_angles = cols[None, :, None] * inv_freq  # (1, W, F)
    angles = torch.stack(
        [row_angles.expand(height, width, -1), col_angles.expand(height, width, -1)], dim=-1
    ).reshape(height * width, freq_dim)  # interleaved: row, col, row, col, ...
    angles = angles.repeat_interleave(2, dim=-1)  # each angle rotates one channel pair
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)."""
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)


class AggregatedAttention(nn.Module):
    """One aggregated attention block: x attends to source (x itself for self-attention)."""

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
        n, c, h, w = x.shape
        query = self.q_aggregation(x)
        kv = F.max_pool2d(source, self.aggregation, self.aggregation)
        hq, wq = query.shape[-2:]
        query = self.norm(query.flatten(2).transpose(1, 2))  # (N, L, C)
        kv = self.norm(kv.flatten(2).transpose(1, 2))
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
        out = (attn @ v).transpose(1, 2).flatten(2)  # (N, L, C)
        out = self.o_proj(out).transpose(1, 2).reshape(n, c, hq, wq)
        out = F.interpolate(out, scale_factor=self.aggregation, mode="bilinear", align_corners=False)
        merged = torch.cat([x, out], dim=1).permute(0, 2, 3, 1)
        merged = self.fc2(F.leaky_relu(self.fc1(merged), self.negative_slope))
        merged = self.mlp_norm(merged).permute(0, 3, 1, 2)
        return x + merged


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
        cfg = self.config
        h, w = feat0.shape[-2:]
        rope = rope_tables(
            h // cfg.aggregation, w // cfg.aggregation, cfg.hidden_size, cfg.rope_theta, cfg.rope_scale, feat0.device
        )
        for self_attn, cross_attn in zip(self.self_attention, self.cross_attention):
            both = torch.cat([feat0, feat1], dim=0)
            both = self_attn(both, both, rope)
            feat0, feat1 = both[:1], both[1:]
            feat0 = cross_attn(feat0, feat1, None)
            feat1 = cross_attn(feat1, feat0, None)
        return feat0, feat1
