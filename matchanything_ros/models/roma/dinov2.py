"""DINOv2 ViT-L/14: RoMa's frozen coarse backbone (``dinov2_vitl14_pretrain.pth``).

The authors' RoMa vendors DINOv2's own code (``roma/models/transformer/dinov2.py``: ``vit_large``
with ``img_size=518, patch_size=14, init_values=1.0, ffn_layer="mlp", block_chunks=0``); this is
the same network in one file, parameter names as in the published file (``cls_token``,
``pos_embed``, ``mask_token``, ``patch_embed.proj.*``, ``blocks.{i}.{norm1,attn.qkv,attn.proj,
ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}.*``, ``norm.*``). Only ``forward_features``'
normalised patch tokens are used.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention (DINOv2's ``Attention``; xFormers' kernel computes the same)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block; ``layer_scale`` False and ``eps`` 1e-5 give the block RoMa's
    decoder uses (DINOv2's ``Block`` with its defaults), True and 1e-6 DINOv2's own."""

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool, layer_scale: bool, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, 4 * dim)
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DINOv2(nn.Module):
    """ViT-L/14 at DINOv2's pre-training size (518 px: a 37x37 position grid, interpolated)."""

    def __init__(self, dim: int = 1024, depth: int = 24, heads: int = 16, patch: int = 14, img_size: int = 518):
        super().__init__()
        self.patch = patch
        self.dim = dim
        grid = img_size // patch
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # training only; kept for the file's keys
        self.blocks = nn.ModuleList(
            Block(dim, heads, qkv_bias=True, layer_scale=True, eps=1e-6) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        n = self.pos_embed.shape[1] - 1
        side = int(math.sqrt(n))
        gh, gw = int(h) // self.patch, int(w) // self.patch  # python ints: a constant in an export
        if gh * gw == n and gh == gw:
            return self.pos_embed
        patch_pos = self.pos_embed[:, 1:].float().reshape(1, side, side, self.dim).permute(0, 3, 1, 2)
        # DINOv2 interpolates by a *scale factor* with a 0.1 offset (facebookresearch/dino#8);
        # interpolate then samples at 1/scale, so the factor, not the output size, sets the numbers
        patch_pos = F.interpolate(
            patch_pos, scale_factor=((gh + 0.1) / side, (gw + 0.1) / side), mode="bicubic"
        )
        assert patch_pos.shape[-2:] == (gh, gw)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, gh * gw, self.dim)
        return torch.cat((self.pos_embed[:, :1].float(), patch_pos), dim=1).to(self.pos_embed.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W), sides multiples of 14 -> normalised patch tokens (B, dim, H/14, W/14)."""
        b, _, h, w = x.shape
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(b, -1, -1), tokens), dim=1) + self._pos_embed(h, w)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)[:, 1:]
        return tokens.permute(0, 2, 1).reshape(b, self.dim, h // self.patch, w // self.patch)
