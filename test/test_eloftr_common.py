"""Shared helpers for the ELoFTR tests: a small transformers reference model with real-looking
random weights, and the deployed network built from the same weights."""
from __future__ import annotations

import functools

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")

from matchanything_ros.models.eloftr.config import ELoFTRConfig  # noqa: E402
from matchanything_ros.models.eloftr.model import ELoFTRDeploy  # noqa: E402
from matchanything_ros.models.eloftr.weights import hf_to_deploy  # noqa: E402


@functools.lru_cache(maxsize=None)
def build_reference(seed: int = 0, threshold: float = 0.1):
    """(Cached: one model per seed for the whole session; callers must not modify it.)
    transformers' reference with PyTorch default initialisation (HF's own init draws BatchNorm
    scales near zero, which leaves no matches), non-trivial BatchNorm statistics and sharpened fine
    features (see matchanything_ros.models.eloftr.compare.build_reference)."""
    from matchanything_ros.models.eloftr.compare import build_reference as build

    return build(seed=seed, threshold=threshold)


def build_deploy(ref, top_k: int = 512, config: ELoFTRConfig | None = None) -> ELoFTRDeploy:
    cfg = config or ELoFTRConfig()
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
