"""Our coarse selection pairs cells per match, for any mapping (order-preserving or not).

transformers' EfficientLoFTR (5.24.0) paired the surviving entries of two differently indexed
lists, right only for order-preserving mappings (docs/ELOFTR.md). That is another library's
behaviour and may change with its releases, so it is not asserted here; what is asserted is
that our selection gets both mappings right.
"""
from __future__ import annotations

import pytest
import torch

from matchanything_ros.models.eloftr.coarse import select_matches

H, W = 8, 10  # coarse grid


def _confidence(mapping: dict[int, int]) -> torch.Tensor:
    """Synthetic (1, H, W, H, W) confidence: 0.9 on the mapped pairs, small noise elsewhere."""
    gen = torch.Generator().manual_seed(0)
    conf = torch.rand(H * W, H * W, generator=gen) * 0.01
    for i, j in mapping.items():
        conf[i, j] = 0.9
    return conf


def _shift() -> dict[int, int]:
    return {r * W + c: (r + 1) * W + (c + 1) for r in range(2, H - 3) for c in range(2, W - 3)}


def _rot180() -> dict[int, int]:
    return {r * W + c: (H - 1 - r) * W + (W - 1 - c) for r in range(2, H - 2) for c in range(2, W - 2)}


def _our_pairs(conf: torch.Tensor) -> list[tuple[int, int]]:
    idx0, idx1, scores, _ = select_matches(conf, (H, W), (H, W), torch.tensor(0.1), 2, 64, rule="mnn")
    keep = scores > 0
    return list(zip(idx0[keep].tolist(), idx1[keep].tolist()))


def _correct(pairs, mapping) -> float:
    return sum(mapping.get(i) == j for i, j in pairs) / max(len(pairs), 1)


@pytest.mark.parametrize("mapping", [_shift, _rot180], ids=["shift", "rot180"])
def test_our_pairing_is_per_match(mapping):
    m = mapping()
    pairs = _our_pairs(_confidence(m))
    assert len(pairs) == len(m)
    assert _correct(pairs, m) == 1.0
