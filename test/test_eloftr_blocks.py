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
