"""Shared helpers for the ELoFTR tests: a small transformers reference model with real-looking
random weights, and the deployed network built from the same weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from matchanything_ros.models.eloftr.config import ELoFTRConfig  # noqa: E402
from matchanything_ros.models.eloftr.model import ELoFTRDeploy  # noqa: E402
from matchanything_ros.models.eloftr.weights import hf_to_deploy  # noqa: E402


def build_reference(seed: int = 0, threshold: float = 0.1):
    """transformers' EfficientLoFTRForKeypointMatching with PyTorch default initialisation
    (HF's own init draws BatchNorm scales near zero, which leaves no matches) and non-trivial
    BatchNorm statistics so that BN folding is exercised."""
    from transformers import EfficientLoFTRConfig, EfficientLoFTRForKeypointMatching

    torch.manual_seed(seed)
    ref = EfficientLoFTRForKeypointMatching(EfficientLoFTRConfig(coarse_matching_threshold=threshold))
    for module in ref.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in ref.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                module.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
        # default-initialised fine features are so weak that the fine dual-softmax is nearly flat
        # and its arg-max a coin toss at 1e-6 noise; trained weights are sharp, so sharpen these
        ref.refinement_layer.out_conv_layers[-1].out_conv3.weight.mul_(30.0)
    return ref.eval()


def build_deploy(ref, top_k: int = 512) -> ELoFTRDeploy:
    cfg = ELoFTRConfig()
    model = ELoFTRDeploy(cfg, top_k)
    model.load_state_dict(hf_to_deploy(ref.state_dict(), cfg), strict=True)
    return model.eval()


def textured_image(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth random texture, uint8 (H, W): blobs at several scales."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((height, width), np.float32)
    for cell in (4, 9, 23):
        noise = rng.random((height // cell + 2, width // cell + 2)).astype(np.float32)
        img += cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    img -= img.min()
    return (255 * img / img.max()).astype(np.uint8)


def test_reference_weights_are_not_degenerate():
    ref = build_reference()
    bn = ref.efficientloftr.backbone.stages[0].blocks[0].conv1.norm
    assert bn.weight.abs().min() > 0.5  # HF init would give ~0.02
