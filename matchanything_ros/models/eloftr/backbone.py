"""RepVGG backbone in deployment form: every block is one 3x3 convolution (with bias) + ReLU.

Training-time RepVGG blocks sum a 3x3 conv+BN, a 1x1 conv+BN and (when shapes allow) an identity
BN. In eval mode that sum is itself a single 3x3 convolution; :func:`fuse_repvgg_block` computes it
exactly, so the deployed graph has 21 convolutions instead of 42 conv+BN pairs and 18 identity BNs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ELoFTRConfig


def fold_batch_norm(
    weight: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm into the preceding bias-free convolution -> (weight, bias)."""
    scale = gamma / torch.sqrt(var + eps)
    return weight * scale.reshape(-1, 1, 1, 1), beta - mean * scale


def fuse_repvgg_block(
    dense: dict[str, torch.Tensor],
    pointwise: dict[str, torch.Tensor],
    identity: dict[str, torch.Tensor] | None,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge the 3x3, 1x1 and identity branches of a RepVGG block into one 3x3 conv.

    Each branch is a dict with BatchNorm tensors ``mean``, ``var``, ``gamma``, ``beta`` and (for the
    convolutions) ``weight``. Returns (weight (out, in, 3, 3), bias (out,)).
    """
    w3, b3 = fold_batch_norm(dense["weight"], dense["mean"], dense["var"], dense["gamma"], dense["beta"], eps)
    w1, b1 = fold_batch_norm(
        pointwise["weight"], pointwise["mean"], pointwise["var"], pointwise["gamma"], pointwise["beta"], eps
    )
    weight = w3 + F.pad(w1, [1, 1, 1, 1])  # a 1x1 kernel is a 3x3 kernel with zeros around it
    bias = b3 + b1
    if identity is not None:
        channels = weight.shape[0]
        eye = torch.zeros_like(weight)
        eye[torch.arange(channels), torch.arange(channels), 1, 1] = 1.0
        wi, bi = fold_batch_norm(eye, identity["mean"], identity["var"], identity["gamma"], identity["beta"], eps)
        weight = weight + wi
        bias = bias + bi
    return weight, bias


class RepVGGBackbone(nn.Module):
    """Fused RepVGG: returns features at 1/2 (stage 2), 1/4 (stage 3) and 1/8 (stage 4)."""

    def __init__(self, config: ELoFTRConfig):
        super().__init__()
        self.stages = nn.ModuleList()
        in_ch = 1
        for blocks, stride, out_ch in zip(config.stage_blocks, config.stage_strides, config.stage_channels):
            convs = []
            for b in range(blocks):
                convs.append(nn.Conv2d(in_ch, out_ch, 3, stride=stride if b == 0 else 1, padding=1, bias=True))
                in_ch = out_ch
            self.stages.append(nn.ModuleList(convs))

    def forward(self, x: torch.Tensor, crops: list[tuple[int, int]] | None = None) -> list[torch.Tensor]:
        """crops: per stage, the leading (rows, cols) of its input to compute (see :mod:`.crop`);
        None: everything."""
        outputs = []
        for i, stage in enumerate(self.stages):
            if crops is not None and x.shape[-2:] != crops[i]:
                x = x[..., : crops[i][0], : crops[i][1]]
            for conv in stage:
                x = F.relu(conv(x))
            outputs.append(x)
        return outputs[1:]
