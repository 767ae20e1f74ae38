"""Pins down how transformers' EfficientLoFTR output lists pair keypoints, and that ours pair
per match.

transformers returns ``matches[:, 0]`` indexed by image-1 cell (holding the image-0 cell) and
``matches[:, 1]`` indexed by image-0 cell; ``post_process_keypoint_matching`` zips the surviving
entries of both lists, which pairs the right cells only when the mapping preserves order.
"""
from __future__ import annotations

import pytest
import torch

from test_eloftr_common import build_reference

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


@pytest.fixture(scope="module")
def reference():
    return build_reference()


def _hf_pairs(ref, conf: torch.Tensor) -> list[tuple[int, int]]:
    """Cell pairs as transformers' post-processing reports them."""
    from transformers import EfficientLoFTRImageProcessor
    from transformers.models.efficientloftr.modeling_efficientloftr import EfficientLoFTRKeypointMatchingOutput

    indices, scores = ref._get_matches_from_scores(conf.reshape(1, H, W, H, W))
    # keypoints exactly as the model builds them (cell -> x, y), in a 1-pixel-per-cell image
    kpts = torch.stack([indices % W, indices // W], dim=-1).float()
    kpts = kpts / torch.tensor([W, H])
    out = EfficientLoFTRKeypointMatchingOutput(matches=indices, matching_scores=scores, keypoints=kpts)
    res = EfficientLoFTRImageProcessor().post_process_keypoint_matching(out, [((H, W), (H, W))])[0]
    k0, k1 = res["keypoints0"], res["keypoints1"]
    return [(int(a[1]) * W + int(a[0]), int(b[1]) * W + int(b[0])) for a, b in zip(k0, k1)]


def _our_pairs(conf: torch.Tensor) -> list[tuple[int, int]]:
    idx0, idx1, scores, _ = select_matches(conf, (H, W), (H, W), torch.tensor(0.1), 2, 64, rule="mnn")
    keep = scores > 0
    return list(zip(idx0[keep].tolist(), idx1[keep].tolist()))


def _correct(pairs, mapping) -> float:
    return sum(mapping.get(i) == j for i, j in pairs) / max(len(pairs), 1)


def test_reference_pairing_right_for_shift_only(reference):
    shift, rot = _shift(), _rot180()
    assert _correct(_hf_pairs(reference, _confidence(shift)), shift) == 1.0
    hf_rot = _hf_pairs(reference, _confidence(rot))
    assert len(hf_rot) == len(rot)
    assert _correct(hf_rot, rot) == 0.0  # every pair wrong under a 180 degree rotation


@pytest.mark.parametrize("mapping", [_shift, _rot180], ids=["shift", "rot180"])
def test_our_pairing_is_per_match(mapping):
    m = mapping()
    pairs = _our_pairs(_confidence(m))
    assert len(pairs) == len(m)
    assert _correct(pairs, m) == 1.0


def test_reference_batch_interleaves_pairs(reference):
    """With batch size 2, the reference's pair 0 receives pair 1's image-0 indices."""
    shift, rot = _confidence(_shift()), _confidence(_rot180())
    both = torch.stack([shift, rot]).reshape(2, H, W, H, W)
    indices, _ = reference._get_matches_from_scores(both)
    single_rot, _ = reference._get_matches_from_scores(rot.reshape(1, H, W, H, W))
    single_shift, _ = reference._get_matches_from_scores(shift.reshape(1, H, W, H, W))
    assert not torch.equal(indices[0], single_shift[0])
    # batch 0, list 1 holds pair 1's image-0 indices wherever pair 0 has a match there
    kept = indices[0, 1] > -1
    assert kept.any()
    assert torch.equal(indices[0, 1][kept], single_rot[0, 0][kept])


def test_reference_fine_stage_one_is_broken(reference):
    """transformers 5.x first fine stage: the window offset is gathered along the matches axis,
    so every keypoint gets the offset of window pixel 0, (-3.5, -3.5), whatever the arg-max."""
    n, ww = 80, 64
    conf = torch.zeros(1, n, ww, ww)
    for k in range(n):
        conf[0, k, (7 * k) % ww, (11 * k + 5) % ww] = 1.0
    _, matches = reference._get_first_stage_fine_matching(conf, torch.zeros(1, 2, n, 2), ww, 1.0)
    assert torch.all(matches == -3.5)
