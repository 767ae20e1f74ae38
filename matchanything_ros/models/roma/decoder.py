"""RoMa's coarse-to-fine decoder (the authors' ``roma/models/matcher.py``: ``GP``, ``CosKernel``,
``TransformerDecoder``, ``ConvRefiner``, ``Decoder``; ``utils/local_correlation.py``;
``utils/utils.py:cls_to_flow_refine``), inference only.

A *warp* is a (B, 2, H, W) field of image-B coordinates in [-1, 1] (grid_sample's convention,
``align_corners=False``) for every pixel of image A; the *certainty* beside it is a logit.
At scale 16 a Gaussian process regresses image-B position embeddings from image-A features, and
a transformer classifies each cell into one of 64x64 anchors of image B (refined by the
probability-weighted mean of the anchor and its four neighbours). Scales 8, 4, 2, 1 then each
refine the warp with a depth-wise CNN that sees image A's features, image B's features sampled at
the warp, a displacement embedding and (8 and 16) a local correlation volume around the target.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .dinov2 import Block


def coordinate_grid(b: int, h: int, w: int, device=None) -> torch.Tensor:
    """(B, 2, H, W) pixel-centre coordinates in [-1, 1], x first."""
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=device, dtype=torch.float32)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=device, dtype=torch.float32)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    # (the explicit float32 keeps an ONNX export from typing the folded constant as double)
    return torch.stack((grid_x, grid_y))[None].expand(b, 2, h, w).to(torch.float32)


class GP(nn.Module):
    """Gaussian-process match encoder with a cosine kernel (T = 0.2), Fourier position basis,
    noise 0.1, mean only (``no_cov``)."""

    def __init__(self, dim: int, temperature: float = 0.2, sigma_noise: float = 0.1):
        super().__init__()
        self.pos_conv = nn.Conv2d(2, dim, 1, 1)
        self.temperature = temperature
        self.sigma_noise = sigma_noise

    def kernel(self, x: torch.Tensor, y: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        c = torch.einsum("bnd,bmd->bnm", x, y) / (x.norm(dim=-1)[..., None] * y.norm(dim=-1)[:, None] + eps)
        return ((c - 1.0) / self.temperature).exp()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, _, h1, w1 = (int(v) for v in x.shape)
        _, _, h2, w2 = (int(v) for v in y.shape)
        f = torch.cos(8 * math.pi * self.pos_conv(coordinate_grid(b, h2, w2, y.device)))
        x = x.float().flatten(2).transpose(1, 2)
        y = y.float().flatten(2).transpose(1, 2)
        f = f.flatten(2).transpose(1, 2)
        k_yy = self.kernel(y, y)
        k_xy = self.kernel(x, y)
        eye = torch.eye(h2 * w2, device=x.device)[None]
        k_yy = k_yy + self.sigma_noise * eye
        # the authors add the noise once more where a diagonal entry is still exactly zero
        zero_diag = (torch.diagonal(k_yy, dim1=1, dim2=2) == 0)
        k_yy = k_yy + self.sigma_noise * zero_diag[..., None] * eye
        mu = k_xy.matmul(torch.linalg.inv(k_yy).matmul(f))
        return mu.transpose(1, 2).reshape(b, -1, h1, w1)


class TransformerDecoder(nn.Module):
    """Five transformer blocks over the concatenated GP posterior and image-A features ->
    64x64 anchor logits + one certainty logit per cell."""

    def __init__(self, dim: int, out_dim: int, depth: int = 5, heads: int = 8):
        super().__init__()
        self.blocks = nn.Sequential(*[Block(dim, heads, qkv_bias=False, layer_scale=False, eps=1e-5) for _ in range(depth)])
        self.to_out = nn.Linear(dim, out_dim)
        self.out_dim = out_dim

    def forward(self, gp_posterior: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat((gp_posterior, features), dim=1)
        b, c, h, w = x.shape
        out = self.to_out(self.blocks(x.reshape(b, c, h * w).permute(0, 2, 1)))
        out = out.permute(0, 2, 1).reshape(b, self.out_dim, h, w)
        return out[:, :-1], out[:, -1:]


def cls_to_flow_refine(cls: torch.Tensor) -> torch.Tensor:
    """Anchor logits (B, R*R, H, W) -> warp (B, 2, H, W): the softmax-weighted mean of the best
    anchor and its left/right/up/down neighbours (indices clamped, not wrapped to the grid)."""
    c = int(cls.shape[1])
    res = round(math.sqrt(c))
    steps = torch.linspace(-1 + 1 / res, 1 - 1 / res, steps=res, device=cls.device, dtype=torch.float32)
    gy, gx = torch.meshgrid(steps, steps, indexing="ij")
    anchors = torch.stack((gx, gy), dim=-1).reshape(c, 2).to(torch.float32)
    prob = cls.softmax(dim=1)
    mode = prob.max(dim=1).indices
    index = torch.stack((mode - 1, mode, mode + 1, mode - res, mode + res), dim=1).clamp(0, c - 1).long()
    neighbours = torch.gather(prob, dim=1, index=index)[..., None]  # (B, 5, H, W, 1)
    flow = sum(neighbours[:, i] * anchors[index[:, i]] for i in range(5))
    return (flow / neighbours.sum(dim=1)).permute(0, 3, 1, 2)


def local_correlation(feature0: torch.Tensor, feature1: torch.Tensor, radius: int, flow: torch.Tensor) -> torch.Tensor:
    """(B, (2r+1)^2, H, W): image-A features dotted with image-B features sampled on a
    (2r+1)x(2r+1) window (steps of 2/H, 2/W: two cells... of the normalised range per side cell)
    around each warp target, / sqrt(C)."""
    r = radius
    k = (2 * r + 1) ** 2
    b, c, h, w = (int(v) for v in feature0.shape)
    wy = torch.linspace(-2 * r / h, 2 * r / h, 2 * r + 1, device=feature0.device, dtype=torch.float32)
    wx = torch.linspace(-2 * r / w, 2 * r / w, 2 * r + 1, device=feature0.device, dtype=torch.float32)
    gy, gx = torch.meshgrid(wy, wx, indexing="ij")
    window = torch.stack((gx, gy), dim=-1).reshape(1, k, 2).to(torch.float32)
    coords = flow.permute(0, 2, 3, 1)
    corr = torch.empty((b, k, h, w), device=feature0.device, dtype=feature0.dtype)
    for i in range(b):
        points = (coords[i, :, :, None] + window[:, None, None]).reshape(1, h, w * k, 2)
        sampled = F.grid_sample(feature1[i:i + 1], points, padding_mode="zeros", align_corners=False, mode="bilinear")
        sampled = sampled.reshape(c, h, w, k)
        corr[i] = (feature0[i, ..., None] / (c ** 0.5) * sampled).sum(dim=0).permute(2, 0, 1)
    return corr


def _block(in_dim: int, out_dim: int, kernel_size: int) -> nn.Sequential:
    """Depth-wise k x k conv (groups = in_dim), BatchNorm, ReLU, 1x1 conv."""
    return nn.Sequential(
        nn.Conv2d(in_dim, out_dim, kernel_size, 1, kernel_size // 2, groups=in_dim),
        nn.BatchNorm2d(out_dim),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_dim, out_dim, 1, 1, 0),
    )


class ConvRefiner(nn.Module):
    """One scale's warp refinement: (A features, B features at the warp, displacement
    embedding[, local correlation]) -> (delta warp in cells of 1/4 px... scaled by the decoder,
    delta certainty logit)."""

    def __init__(self, dim: int, emb_dim: int, radius: int = 0, kernel_size: int = 5, hidden_blocks: int = 8):
        super().__init__()
        self.block1 = _block(dim, dim, kernel_size)
        self.hidden_blocks = nn.Sequential(*[_block(dim, dim, kernel_size) for _ in range(hidden_blocks)])
        self.out_conv = nn.Conv2d(dim, 3, 1, 1, 0)
        self.disp_emb = nn.Conv2d(2, emb_dim, 1, 1, 0)
        self.radius = radius

    def forward(self, x: torch.Tensor, y: torch.Tensor, flow: torch.Tensor, scale_factor: float) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = (int(v) for v in x.shape)
        x_hat = F.grid_sample(y, flow.permute(0, 2, 3, 1), align_corners=False, mode="bilinear")
        displacement = flow - coordinate_grid(b, h, w, x.device)
        parts = [x, x_hat, self.disp_emb(40 / 32 * scale_factor * displacement)]
        if self.radius:
            parts.append(local_correlation(x, y, self.radius, flow))
        d = self.hidden_blocks(self.block1(torch.cat(parts, dim=1)))
        d = self.out_conv(d.float())
        return d[:, :-1], d[:, -1:]


class Decoder(nn.Module):
    """Scales 16 (GP + transformer, then refiner), 8, 4, 2, 1 (refiners); ``upsample`` runs 8..1
    only, starting from a previous pass's warp and certainty."""

    SCALES = ("16", "8", "4", "2", "1")
    REFINE_INIT = 4  # the displacement unit: 1/4 of a pixel at scale 1, times the scale

    def __init__(self, coarse_dim: int = 1024, dim: int = 512, anchors: int = 64):
        super().__init__()
        half = dim // 2
        self.embedding_decoder = TransformerDecoder(2 * dim, anchors ** 2 + 1)
        self.gps = nn.ModuleDict({"16": GP(dim)})
        self.proj = nn.ModuleDict({
            "16": nn.Sequential(nn.Conv2d(coarse_dim, dim, 1, 1), nn.BatchNorm2d(dim)),
            "8": nn.Sequential(nn.Conv2d(512, dim, 1, 1), nn.BatchNorm2d(dim)),
            "4": nn.Sequential(nn.Conv2d(256, half, 1, 1), nn.BatchNorm2d(half)),
            "2": nn.Sequential(nn.Conv2d(128, 64, 1, 1), nn.BatchNorm2d(64)),
            "1": nn.Sequential(nn.Conv2d(64, 9, 1, 1), nn.BatchNorm2d(9)),
        })
        self.conv_refiner = nn.ModuleDict({
            "16": ConvRefiner(2 * dim + 128 + 15 ** 2, 128, radius=7),
            "8": ConvRefiner(2 * dim + 64 + 7 ** 2, 64, radius=3),
            "4": ConvRefiner(2 * half + 32 + 5 ** 2, 32, radius=2),
            "2": ConvRefiner(2 * 64 + 16, 16),
            "1": ConvRefiner(2 * 9 + 6, 6),
        })

    def forward(self, f1: dict, f2: dict, *, flow=None, certainty=None, upsample: bool = False,
                scale_factor: float = 1.0) -> dict[int, dict[str, torch.Tensor]]:
        """Pyramids of images A and B -> {scale: {"flow", "certainty"}} after each scale."""
        scales = self.SCALES[1:] if upsample else self.SCALES
        sizes = {scale: tuple(int(v) for v in f1[scale].shape[-2:]) for scale in f1}  # ints: constants in an export
        h, w = sizes[1]
        b = f1[1].shape[0]
        coarsest = int(scales[0])
        if upsample:
            flow = F.interpolate(flow, size=sizes[coarsest], align_corners=False, mode="bilinear")
            certainty = F.interpolate(certainty, size=sizes[coarsest], align_corners=False, mode="bilinear")
        else:
            flow, certainty = None, 0.0
        out = {}
        for name in scales:
            s = int(name)
            f1_s, f2_s = self.proj[name](f1[s]), self.proj[name](f2[s])
            if name == "16" and not upsample:
                gp_posterior = self.gps[name](f1_s, f2_s)
                cls, certainty = self.embedding_decoder(gp_posterior, f1_s)
                flow = cls_to_flow_refine(cls)
                out[s] = {"gm_flow": flow, "gm_certainty": certainty}
            delta, delta_certainty = self.conv_refiner[name](f1_s, f2_s, flow, scale_factor)
            displacement = s * torch.stack(
                (delta[:, 0].float() / (self.REFINE_INIT * w), delta[:, 1].float() / (self.REFINE_INIT * h)), dim=1
            )
            flow = flow + displacement
            certainty = certainty + delta_certainty
            out.setdefault(s, {}).update(flow=flow, certainty=certainty)
            if name != "1":
                flow = F.interpolate(flow, size=sizes[s // 2], mode="bilinear")
                certainty = F.interpolate(certainty, size=sizes[s // 2], mode="bilinear")
        return out
