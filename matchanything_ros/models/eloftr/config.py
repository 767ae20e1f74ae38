"""Shape and matching hyper-parameters of the MatchAnything-ELoFTR network.

The defaults are the published ``zju-community/matchanything_eloftr`` weights (the same shape as
``transformers.EfficientLoFTRConfig()``) run the way the authors' MatchAnything code runs them
(``configs/models/eloftr_model.py`` + the Space wrapper ``hloc/matchers/matchanything.py``):
every cell pair above the threshold (``MTD_SPVS``), bottom-right padding to a square with the
padded cells masked, fp16 RoPE tables, fine stage 1 scaled by sqrt(C) per side (``NORMFINEM``),
coarse threshold 0.1 (``MATCH_COARSE.THR``). ``match_rule="mnn"`` is EfficientLoFTR's rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

#: coarse selection rules (see ELoFTRConfig.match_rule)
MATCH_RULES = ("mtd", "mnn")
#: how transformers' EfficientLoFTR port differs from the authors' MatchAnything code (tested in
#: test_eloftr_transformers.py): ``ELoFTRConfig(**TRANSFORMERS_CHOICES)`` computes what it computes
TRANSFORMERS_CHOICES = dict(match_rule="mnn", pad_to_square=False, rope_fp16=False, fine_stage1_norm="slice")


@dataclass(frozen=True)
class ELoFTRConfig:
    """Architecture of the deployed network (weights must have been trained with this shape)."""

    #: RepVGG stages: blocks per stage, stride of the first block, output channels
    stage_blocks: tuple[int, ...] = (1, 2, 4, 14)
    stage_strides: tuple[int, ...] = (2, 1, 2, 2)
    stage_channels: tuple[int, ...] = (64, 64, 128, 256)
    #: coarse transformer
    num_layers: int = 4
    num_heads: int = 8
    aggregation: int = 4  # kernel = stride of the query conv / key-value max-pool
    rope_theta: float = 10000.0
    #: RoPE position scale (MatchAnything's "NPE": train_res / test_res per axis; 1 = no scaling,
    #: which is what MatchAnything uses at its 832 px evaluation size and what transformers does)
    rope_scale: tuple[float, float] = (1.0, 1.0)
    mlp_negative_slope: float = 0.01
    layer_norm_eps: float = 1e-5
    #: coarse matching
    temperature: float = 0.1
    border_removal: int = 2
    #: fine matching
    fine_window: int = 8
    fine_slice_dim: int = 8
    fine_regress_temperature: float = 10.0
    #: default coarse threshold: MatchAnything's MATCH_COARSE.THR (transformers' default is 0.2;
    #: the Space's hloc conf passes 0.001)
    match_threshold: float = 0.1
    #: coarse selection: "mtd" = every cell pair with conf > threshold (MatchAnything's
    #: MTD_SPVS=True), "mnn" = mutual nearest neighbours above it (EfficientLoFTR)
    match_rule: str = "mtd"
    #: pad the input bottom-right to a square and run the coarse transformer and matching on the
    #: valid cells only, as the authors' wrapper does with its mask (False: no padding)
    pad_to_square: bool = True
    #: RoPE sin/cos tables rounded to fp16 as in the authors' RoPEPositionEncodingSine(ropefp16=True)
    rope_fp16: bool = True
    #: fine stage 1 scaling: "full" divides each side by sqrt(C) (NORMFINEM, EfficientLoFTR and
    #: MatchAnything); "slice" by sqrt(C - slice_dim), transformers' port (kept to show the
    #: difference, never a default)
    fine_stage1_norm: str = "full"

    def __post_init__(self):
        if self.match_rule not in MATCH_RULES:
            raise ValueError(f"match_rule {self.match_rule!r} is not one of {', '.join(MATCH_RULES)}")
        if self.fine_stage1_norm not in ("full", "slice"):
            raise ValueError(f"fine_stage1_norm {self.fine_stage1_norm!r} is not 'full' or 'slice'")

    @property
    def hidden_size(self) -> int:
        return self.stage_channels[-1]

    @property
    def coarse_stride(self) -> int:
        stride = 1
        for s in self.stage_strides:
            stride *= s
        return stride

    @property
    def size_divisor(self) -> int:
        """Network input height/width must be multiples of this (coarse stride x aggregation)."""
        return self.coarse_stride * self.aggregation

    def check_input_size(self, height: int, width: int) -> None:
        """Raise ValueError unless (height, width) is a size the network accepts."""
        d = self.size_divisor
        if height % d or width % d or height <= 0 or width <= 0:
            raise ValueError(
                f"ELoFTR input size {height}x{width} is not a positive multiple of {d}; "
                f"resize both images to the same size divisible by {d} (see preprocess.py)"
            )
        # border removal must leave cells to match
        if min(height, width) // self.coarse_stride <= 2 * self.border_removal:
            raise ValueError(f"ELoFTR input size {height}x{width} is too small")

    @classmethod
    def from_hf_dict(cls, data: dict) -> "ELoFTRConfig":
        """Build from a transformers ``config.json`` dict; raises ValueError for shapes this
        deployment does not implement."""
        blocks = tuple(data.get("stage_num_blocks") or cls.stage_blocks)
        strides = tuple(data.get("stage_stride") or cls.stage_strides)
        channels = tuple(data.get("out_features") or cls.stage_channels)
        qk, kvk = data.get("q_aggregation_kernel_size", 4), data.get("kv_aggregation_kernel_size", 4)
        qs, kvs = data.get("q_aggregation_stride", 4), data.get("kv_aggregation_stride", 4)
        if not (qk == kvk == qs == kvs):
            raise ValueError("ELoFTR config: aggregation kernel sizes and strides must all be equal")
        if data.get("attention_bias", False):
            raise ValueError("ELoFTR config: attention_bias=True is not supported")
        if data.get("coarse_matching_skip_softmax", False):
            raise ValueError("ELoFTR config: coarse_matching_skip_softmax=True is not supported")
        rope = data.get("rope_parameters") or {}
        config = cls(
            stage_blocks=blocks,
            stage_strides=strides,
            stage_channels=channels,
            num_layers=int(data.get("num_attention_layers", 4)),
            num_heads=int(data.get("num_attention_heads", 8)),
            aggregation=int(qk),
            rope_theta=float(rope.get("rope_theta", 10000.0)),
            temperature=float(data.get("coarse_matching_temperature", 0.1)),
            border_removal=int(data.get("coarse_matching_border_removal", 2)),
            fine_window=int(data.get("fine_kernel_size", 8)),
            fine_slice_dim=int(data.get("fine_matching_slice_dim", 8)),
            fine_regress_temperature=float(data.get("fine_matching_regress_temperature", 10.0)),
        )
        config.check_published_shape()
        return config

    #: the fields that decide the network's tensors: a config.json beside the weights may not
    #: change them (a 36-byte file asking for 10^5 channels allocated 12 GB before any check)
    SHAPE_FIELDS = ("stage_blocks", "stage_strides", "stage_channels", "num_layers", "num_heads", "aggregation",
                    "fine_window", "fine_slice_dim")

    def check_published_shape(self) -> None:
        """ValueError unless the network has the published MatchAnything-ELoFTR shape and its
        scalars are finite and positive."""
        published = type(self)()
        different = [f"{name} {getattr(self, name)} (published {getattr(published, name)})"
                     for name in self.SHAPE_FIELDS if getattr(self, name) != getattr(published, name)]
        if different:
            raise ValueError("ELoFTR config: this deployment runs the published network shape; "
                             + "; ".join(different[:3]))
        for name in ("rope_theta", "temperature", "fine_regress_temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 < value <= 1e6):
                raise ValueError(f"ELoFTR config: {name} {value} must be a finite positive number")
        if not 0 <= self.border_removal <= 16:
            raise ValueError(f"ELoFTR config: border_removal {self.border_removal} must be in [0, 16]")
