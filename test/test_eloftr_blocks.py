"""The deploy network's building blocks against their plain definitions (no reference needed)."""
import pytest
import torch
import torch.nn.functional as F

from matchanything_ros.models.eloftr.coarse import dual_softmax
from matchanything_ros.models.eloftr.fine import fine_windows, upsample2


def dense_windows(full: torch.Tensor, cells: torch.Tensor, width: int, stride: int, size: int, pad: int):
    """The released model's way: zero-pad the full-resolution map, cut size x size windows."""
    full = F.pad(full, [pad, pad, pad, pad])
    out = []
    for cell in cells.tolist():
        r, c = divmod(cell, width)
        win = full[0, :, r * stride : r * stride + size, c * stride : c * stride + size]
        out.append(win.reshape(win.shape[0], -1).T)
    return torch.stack(out)


@pytest.mark.parametrize("pad", [0, 1])
def test_fine_windows_equal_cutting_the_upsampled_map(pad):
    torch.manual_seed(0)
    h, w, stride = 5, 7, 8
    half = torch.randn(1, 16, h * stride // 2, w * stride // 2)
    cells = torch.arange(h * w)  # every cell: corners and edges included
    got = fine_windows(half, cells, w, (h * stride, w * stride), stride, 8, pad)
    want = dense_windows(upsample2(half), cells, w, stride, 8 + 2 * pad, pad)
    assert got.shape == want.shape == (h * w, (8 + 2 * pad) ** 2, 16)
    assert (got - want).abs().max().item() < 1e-5


def test_dual_softmax_is_the_product_of_both_softmaxes():
    torch.manual_seed(0)
    sim = torch.randn(3, 40, 50) * 5
    want = torch.softmax(sim, dim=1) * torch.softmax(sim, dim=2)
    assert torch.allclose(dual_softmax(sim), want, atol=1e-9, rtol=1e-5)


@pytest.mark.parametrize("rule", ["mtd", "mnn"])
def test_select_matches_rules_and_count(rule):
    """mtd = every pair above the threshold inside the border (the authors' torch.where(mask));
    mnn = also the maximum of its row and column; candidates counts them even when K is full."""
    from matchanything_ros.models.eloftr.coarse import border_mask, select_matches

    torch.manual_seed(0)
    h, w = 6, 7
    f0 = torch.randn(h * w, 16)
    f1 = f0[torch.randperm(h * w)] + 0.7 * torch.randn(h * w, 16)  # a shuffled, noisy view
    conf = dual_softmax(f0 @ f1.T / 4.0)
    thr = 0.01
    ok = border_mask(h, w, 1, "cpu")
    mask = (conf > thr) & ok[:, None] & ok[None, :]
    if rule == "mnn":
        mask &= (conf == conf.max(1, keepdim=True).values) & (conf == conf.max(0, keepdim=True).values)
    want = {(int(i), int(j)) for i, j in zip(*torch.where(mask))}
    assert len(want) >= 5
    idx0, idx1, scores, count = select_matches(conf, (h, w), (h, w), torch.tensor(thr), 1, 64, rule)
    keep = scores > 0
    assert {(int(i), int(j)) for i, j in zip(idx0[keep], idx1[keep])} == want and int(count) == len(want)
    assert torch.all(scores[:-1] >= scores[1:])  # best first
    k = len(want) - 2  # K too small: the weakest are dropped, the count still says how many passed
    _, _, scores_k, count_k = select_matches(conf, (h, w), (h, w), torch.tensor(thr), 1, k, rule)
    assert int((scores_k > 0).sum()) == k and int(count_k) == len(want)
    assert torch.equal(scores_k, scores[:k])


def _every_window(model, image0, image1):
    """Coarse features and the fine windows of every valid cell, as match_features cuts them."""
    h, w = image0.shape[-2:]
    c0, c1, padded, skips = model.coarse(image0, image1)
    rows, cols = model.crop_plan(h, w)
    half = model.fine(padded, skips, list(zip(rows.fine_inputs, cols.fine_inputs)))
    wc = c0.shape[-1]
    cells = torch.arange(c0.shape[-2] * wc)
    bounds = (rows.full, cols.full)
    return c0, c1, fine_windows(half[:1], cells, wc, bounds, 8, 8, 0), fine_windows(half[1:], cells, wc, bounds, 8, 8, 1)


@pytest.mark.parametrize("shape", [(128, 384), (384, 128)])
def test_cropped_padding_gives_the_uncropped_results(shape, monkeypatch):
    """The backbone and fine stage compute only the part of the square-padded maps that valid
    cells can reach (crop.py); in float64 their results equal computing the whole padded maps,
    and one row/column less than the tightest margin changes them (the margins are not guesses)."""
    import dataclasses

    from matchanything_ros.models.eloftr.config import ELoFTRConfig
    from matchanything_ros.models.eloftr.crop import axis_crop
    from matchanything_ros.models.eloftr.fine import window_span
    from matchanything_ros.models.eloftr.model import ELoFTRDeploy

    torch.manual_seed(0)
    # the released depth (so the backbone's reach is real), few channels (so it runs quickly)
    config = ELoFTRConfig(stage_channels=(8, 16, 16, 32), num_layers=1, num_heads=2)
    model = ELoFTRDeploy(config, top_k=16).double().eval()
    for conv in model.backbone.modules():  # He init: activations stay O(1) through 21 layers
        if isinstance(conv, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    images = [torch.rand(1, 1, *shape, dtype=torch.float64) for _ in range(2)]
    side = max(shape)
    plan = model.crop_plan(*shape)
    axis = 0 if shape[0] < shape[1] else 1
    assert plan[axis].stage_inputs[-1] < side // 4 and plan[axis].fine_inputs[-1] < side // 2  # it does crop
    with torch.no_grad():
        cropped = _every_window(model, *images)
        whole = (axis_crop(model.config, side, side, window_span(8)),) * 2
        monkeypatch.setattr(model, "crop_plan", lambda h, w: whole)
        want = _every_window(model, *images)
        # the last backbone stage's input is cut to the minimum; the finest fusion input must
        # hold the rows the windows read (4 per cell row + a 6-row span from one row above) + 2
        tight = {"stage_inputs": plan[axis].stage_inputs[-1], "fine_inputs": 4 * (min(shape) // 8 - 1) - 1 + window_span(8) + 2}
        for field in ("stage_inputs", "fine_inputs"):
            short = list(plan)
            lengths = list(getattr(plan[axis], field))
            assert lengths[-1] >= tight[field]
            lengths[-1] = tight[field] - 1
            short[axis] = dataclasses.replace(plan[axis], **{field: tuple(lengths)})
            monkeypatch.setattr(model, "crop_plan", lambda h, w: tuple(short))
            worse = _every_window(model, *images)
            assert max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(worse, want)) > 1e-8, field
    for got, ref in zip(cropped, want):
        assert got.shape == ref.shape
        assert (got - ref).abs().max().item() <= 1e-12 * ref.abs().max().item()
