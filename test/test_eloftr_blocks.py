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
