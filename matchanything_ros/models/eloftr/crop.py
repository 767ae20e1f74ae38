"""How much of the square-padded maps the network has to compute, per axis.

With ``pad_to_square`` a 640x480 input runs through the backbone as 640x640, but only the valid
cells are matched and refinement reads windows only around valid cells. Each convolution spreads
the padding's influence by one pixel per layer, so the bottom (or right) of every map only has to
be computed as far as the rows that can still reach a valid output. This module counts, backwards
from what the outputs read, how many leading rows (or columns) each stage needs *exactly*:

- a 3x3 convolution with stride 1 on a crop exact over its first ``e`` rows is exact over its first
  ``e - 1`` output rows (the crop's zero padding reaches one row in); with stride 2 over its first
  ``floor((e - 1) / 2)`` rows, i.e. ``n`` exact output rows need ``2 n`` exact input rows;
- x2 bilinear upsampling (align_corners=False) reads source rows ``floor(y / 2 - 1/4)`` and the one
  after, so ``n`` exact output rows need ``(2 n - 3) // 4 + 2`` exact source rows.

A crop equal to the whole map has its true edge, so every count is capped at the map size (then
nothing is cut); a longer crop than needed is as exact. The counts depend only on the input size, so the exported graph stays static.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import ELoFTRConfig


#: a cut backbone map costs ONNX Runtime a Slice between two blocked-layout reorders (seen in its
#: profile), so a stage is cut only where that drops at least this share of its input rows
MIN_CUT = 0.05


def upsample_need(rows: int) -> int:
    """Exact source rows that x2 bilinear upsampling needs for ``rows`` exact output rows."""
    return (2 * rows - 3) // 4 + 2


@dataclass(frozen=True)
class AxisCrop:
    """Leading rows (or columns) to compute along one axis.

    stage_inputs: per backbone stage, how much of its input to keep; fine_inputs: per fusion
    block (coarsest first), the length of its input map; coarse: length of the zero-filled
    transformer output fed to the fine stage; full: the padded input's length (windows are zero
    outside it)."""

    stage_inputs: tuple[int, ...]
    fine_inputs: tuple[int, ...]
    coarse: int
    full: int


def axis_crop(config: ELoFTRConfig, valid: int, full: int, half_span: int) -> AxisCrop:
    """Crop lengths along an axis with ``valid`` input pixels of a ``full``-long padded input.

    half_span: rows of the 1/2-resolution fine map one refinement window reads, starting one row
    above its cell (see :func:`.fine.fine_windows`)."""
    cs = config.coarse_stride
    cells = valid // cs
    strides = config.stage_strides
    # map length at each stage output (a 3x3 stride-2 convolution with padding 1 rounds up)
    lengths, length = [], full
    for s in strides:
        length = (length - 1) // s + 1
        lengths.append(length)
    # fine stage: the last (finest) fusion output must be exact over the rows its windows read
    n_blocks = len(config.stage_channels) - 2
    block_lengths = [lengths[-2 - i] for i in range(n_blocks)]  # fusion levels, coarsest first
    need = (cs // 2) * (cells - 1) - 1 + half_span
    needs = []  # exact input rows per fusion block, finest first
    for i in reversed(range(n_blocks)):
        x_len = need + 2  # conv2 and conv3 are 3x3, stride 1
        needs.append(x_len)
        need = upsample_need(x_len)
    # the coarse map's length sets every level's (x2 per level), so no upsampled map is sliced
    coarse = max([need] + [-(-n // 2 ** (k + 1)) for k, n in enumerate(reversed(needs))])
    coarse = min(lengths[-1], coarse)
    fine_inputs = tuple(min(block_lengths[i], coarse * 2 ** (i + 1)) for i in range(n_blocks))
    skip_need = [0] * len(strides)
    for i in range(n_blocks):
        skip_need[len(strides) - 2 - i] = fine_inputs[i]
    # backbone: the last stage must be exact over the valid cells, earlier ones over what the
    # next stage and the fine stage read
    out_need = cells
    in_needs = []
    for i in reversed(range(len(strides))):
        n = max(out_need, skip_need[i])
        for b in reversed(range(config.stage_blocks[i])):
            n = 2 * n if (b == 0 and strides[i] == 2) else n + 1
        in_needs.append(n)
        out_need = n
    in_needs.reverse()
    # each stage takes what arrives, cut only where that saves MIN_CUT of it
    stage_inputs, arriving = [], full
    for n, s in zip(in_needs, strides):
        take = n if n <= arriving * (1 - MIN_CUT) else arriving
        stage_inputs.append(take)
        arriving = (take - 1) // s + 1
    return AxisCrop(tuple(stage_inputs), fine_inputs, coarse, full)
