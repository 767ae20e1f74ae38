"""transformers' EfficientLoFTR port and how it differs from the authors' MatchAnything code.

The proof of parity with the AUTHORS is test_eloftr_authors_parity.py (their outputs, the
reference pack). This file documents transformers' own differences: its network equals ours
with transformers' four choices switched on (``TRANSFORMERS_CHOICES``: mutual nearest
neighbours, no square padding/mask, fp32 RoPE tables, fine stage 1 scaled by sqrt(C - 8) instead
of sqrt(C) per side). Compared on the port's per-cell internals rather than its post-processed
lists (whose pairing is only right for order-preserving mappings, see
test_eloftr_reference_pairing); its fine stage is evaluated on correctly paired windows of its own
fine features with stage 1 written out, because transformers 5.x runs that stage's softmax over
the wrong axis and always returns a (-3.5, -3.5) window offset.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from test_eloftr_common import build_deploy, build_reference, textured_image

from matchanything_ros.models.eloftr.coarse import coarse_confidence
from matchanything_ros.models.eloftr.compare import captured_confidence
from matchanything_ros.models.eloftr.config import TRANSFORMERS_CHOICES, ELoFTRConfig

SIZES = [(128, 160), (160, 224)]


@pytest.fixture(scope="module")
def models():
    ref = build_reference(seed=0)
    return ref, build_deploy(ref, top_k=560, config=ELoFTRConfig(**TRANSFORMERS_CHOICES))


def _pair(kind: str, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    img0 = textured_image(height, width, seed=3).astype(np.float32) / 255.0
    if kind == "identity":
        # same view, different photometry: gamma + noise, as between two exposures
        rng = np.random.default_rng(5)
        img1 = np.clip(img0**1.3 + rng.normal(0, 0.02, img0.shape), 0, 1).astype(np.float32)
    else:  # strongly rotated: 180 degrees
        img1 = np.ascontiguousarray(img0[::-1, ::-1])
    return torch.from_numpy(img0)[None, None], torch.from_numpy(img1)[None, None]


def authors_fine_matching(ref, win0, win1, kp0, kp1):
    """Refine paired windows (K, 64, C) / (K, 100, C) with transformers' stage-1 scaling.

    Stage 1 is written out here because transformers 5.x gets it wrong for its (batch, matches,
    ...) layout: the dual softmax runs over the matches axis and the window offset is gathered
    along the matches axis (see test_eloftr_reference_pairing). Stage 2 is the reference's own.
    """
    w = ref.config.fine_kernel_size
    split = win0.shape[-1] - ref.config.fine_matching_slice_dim
    a0, a1 = win0[..., :split] / split**0.5, win1[..., :split] / split**0.5
    sim = a0 @ a1.transpose(-1, -2)  # (K, 64, 100)
    conf = torch.softmax(sim, 1) * torch.softmax(sim, 2)
    conf = conf.reshape(len(win0), w * w, w + 2, w + 2)[..., 1:-1, 1:-1].reshape(len(win0), -1)
    best = conf.argmax(dim=-1)[:, None]
    idx0, idx1 = best // (w * w), best % (w * w)

    def offset(idx):
        return torch.cat([idx % w, idx // w], dim=-1).float() - (w // 2) + 0.5

    stage1 = torch.stack([kp0 + offset(idx0), kp1 + offset(idx1)])[None]  # (1, 2, K, 2)
    second = win0[..., split:] @ (win1[..., split:] / ref.config.fine_matching_slice_dim**0.5).transpose(-1, -2)
    indices = torch.stack([idx0, idx1])[None]  # (1, 2, K, 1)
    return ref._get_second_stage_fine_matching(indices, stage1, second[None], w * w, 1.0)[0]


def reference_internals(ref, img0, img1, threshold):
    """Reference coarse confidence, its selected (i, j) cell pairs with scores, and the refined
    keypoints of those pairs, all from the reference's own modules."""
    previous = ref.config.coarse_matching_threshold  # the reference is shared: restore it
    ref.config.coarse_matching_threshold = threshold
    try:
        with captured_confidence(ref) as captured, torch.no_grad():
            feats = ref.efficientloftr(torch.stack([img0, img1], dim=1)).feature_maps
            coarse = feats[0]
            h, w = coarse.shape[-2:]
            scale = img0.shape[-2] / h
            _, scores, indices = ref._coarse_matching(coarse, scale)
            # per image-0 cell i: its match j (row 1 of the reference's index lists)
            j_of_i, s_of_i = indices[0, 1], scores[0, 1]
            i_sel = torch.nonzero(j_of_i > -1).reshape(-1)
            j_sel = j_of_i[i_sel]
            win0, win1 = ref.refinement_layer(coarse / ref.config.hidden_size**0.5, feats[1:])
            kp0 = torch.stack([i_sel % w, i_sel // w], -1).float() * scale
            kp1 = torch.stack([j_sel % w, j_sel // w], -1).float() * scale
            refined = authors_fine_matching(ref, win0[0, i_sel], win1[0, j_sel], kp0, kp1)
    finally:
        ref.config.coarse_matching_threshold = previous
    confidence = captured["confidence"].reshape(h * w, h * w)
    return confidence, i_sel, j_sel, s_of_i[i_sel], refined


_CACHE: dict = {}


def _cached_internals(ref, img0, img1, threshold):
    """reference_internals, computed once per input (the reference is the slow part)."""
    key = (img0.numpy().tobytes().__hash__(), img1.numpy().tobytes().__hash__(), threshold)
    if key not in _CACHE:
        _CACHE[key] = reference_internals(ref, img0, img1, threshold)
    return _CACHE[key]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("kind", ["identity", "rot180"])
def test_matches_reference(models, size, kind):
    # random weights give few confident matches: compare every mutual nearest neighbour
    n = _check_parity(*models, *_pair(kind, *size), threshold=0.0)
    # random weights are not rotation invariant: the rotated pair keeps only a few mutual NNs
    assert n >= (5 if kind == "identity" else 1)


def test_threshold_matches_reference(models):
    ref, ours = models
    img0, img1 = _pair("identity", *SIZES[0])
    scores = _cached_internals(ref, img0, img1, 0.0)[3]
    threshold = float(scores.median())  # a threshold that drops about half the matches
    n = _check_parity(ref, ours, img0, img1, threshold)
    assert 0 < n < len(scores)


def _check_parity(ref, ours, img0, img1, threshold):
    conf_ref, i_ref, j_ref, s_ref, refined = _cached_internals(ref, img0, img1, threshold)

    with torch.no_grad():
        c0, c1, _, _ = ours.coarse(img0, img1)
        conf = coarse_confidence(c0, c1, ours.config.temperature)
        kpts0, kpts1, scores, _, idx0, idx1 = ours.match_cells(img0, img1, torch.tensor(threshold))

    assert (conf - conf_ref).abs().max().item() <= 1e-4
    assert len(i_ref) >= 1, "reference found no match to compare"
    assert len(i_ref) <= ours.top_k

    # identical selected coarse matches, as (image-0 cell, image-1 cell) pairs
    valid = scores > 0
    assert int(valid.sum()) == len(i_ref)
    assert not valid[int(valid.sum()):].any(), "matches must come first, best first"
    ours_pairs = {(int(i), int(j)): k for k, (i, j) in enumerate(zip(idx0[valid], idx1[valid]))}
    ref_pairs = {(int(i), int(j)): k for k, (i, j) in enumerate(zip(i_ref, j_ref))}
    assert set(ours_pairs) == set(ref_pairs)

    order = torch.tensor([ours_pairs[p] for p in ref_pairs])
    np.testing.assert_allclose(scores[order].numpy(), s_ref.numpy(), atol=1e-4)
    assert (kpts0[order] - refined[0]).abs().max().item() <= 0.05
    assert (kpts1[order] - refined[1]).abs().max().item() <= 0.05
    print(
        f"\nparity {tuple(img0.shape[-2:])} thr={threshold:.2e}: {len(order)} matches, "
        f"conf max|diff|={(conf - conf_ref).abs().max().item():.2e}, "
        f"kpts max|diff|={max((kpts0[order] - refined[0]).abs().max().item(), (kpts1[order] - refined[1]).abs().max().item()):.2e} px"
    )
    return len(order)


@pytest.mark.parametrize("kind", ["identity", "rot180"])
def test_fine_refinement_on_every_cell(models, kind):
    """Fine stage on many pairs: every image-0 cell with its best image-1 cell (mutual or not),
    refined by the deployed code and by the reference's fine features + authors' formulas."""
    from matchanything_ros.models.eloftr.coarse import cell_to_pixel
    from matchanything_ros.models.eloftr.fine import fine_windows, refine

    ref, ours = models
    img0, img1 = _pair(kind, *SIZES[0])
    with torch.no_grad():
        feats = ref.efficientloftr(torch.stack([img0, img1], dim=1)).feature_maps
        coarse = feats[0]
        h, w = coarse.shape[-2:]
        scale = img0.shape[-2] // h
        c0, c1, padded, skips = ours.coarse(img0, img1)
        conf = coarse_confidence(c0, c1, ours.config.temperature)
        i_all = torch.arange(h * w)
        j_all = conf.argmax(dim=1)
        win0, win1 = ref.refinement_layer(coarse / ref.config.hidden_size**0.5, feats[1:])
        kp0, kp1 = cell_to_pixel(i_all, w, scale), cell_to_pixel(j_all, w, scale)
        expected = authors_fine_matching(ref, win0[0, i_all], win1[0, j_all], kp0, kp1)
        half = ours.fine(padded, skips)
        ours0 = fine_windows(half[:1], i_all, w, (h * scale, w * scale), scale, 8, pad=0)
        ours1 = fine_windows(half[1:], j_all, w, (h * scale, w * scale), scale, 8, pad=1)
        got0, got1 = refine(ours0, ours1, kp0, kp1, ours.config)
    err = torch.maximum((got0 - expected[0]).abs().amax(-1), (got1 - expected[1]).abs().amax(-1))
    print(f"\nfine parity {kind}: {len(err)} cells, max|diff|={err.max().item():.2e} px")
    assert err.max().item() <= 0.05
