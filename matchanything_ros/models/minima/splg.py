"""MINIMA SuperPoint + LightGlue as one network with the engines' interface.

``forward(image0, image1, threshold) -> kpts0 (K, 2), kpts1 (K, 2), scores (K,)`` -- the same
contract as the ELoFTR deploy network, so the torch, ONNX Runtime and TensorRT engines, the ONNX
export and the benchmark run it unchanged. Row i is SuperPoint keypoint i of image 0 and its
LightGlue match in image 1; ``scores == 0`` marks a slot without a (mutual, above-threshold) match.

LightGlue is kornia's (``kornia.feature.LightGlue``, a port of cvg/LightGlue with the same state-dict
names); only the fixed-shape driver around its layers is ours:

* ``adaptive=True`` (torch backend default): kornia's own forward on the valid keypoints, with
  MINIMA's early stopping (depth confidence 0.95) and point pruning (width confidence 0.99) --
  exactly MINIMA's ``load_sp_lg`` settings.
* ``adaptive=False`` and every export: all 9 layers over K padded slots, invalid slots masked out
  of attention and of the assignment (what LightGlue-ONNX does too: no data-dependent shapes).
  Without early stopping/pruning this is LightGlue's exact computation, which the adaptive mode
  approximates; with ``depth_confidence = width_confidence = -1`` both give identical matches.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .superpoint import SuperPointFixed

_MASKED = -1.0e4  # similarity of a pair with an empty slot: exp() is 0 in fp32 and fits fp16


@dataclass(frozen=True)
class SPLGConfig:
    """MINIMA's ``load_sp_lg`` settings (sp_conf, lg_conf)."""

    max_keypoints: int = 2048
    detection_threshold: float = 0.0005
    nms_radius: int = 4
    remove_borders: int = 4
    n_layers: int = 9
    num_heads: int = 4
    descriptor_dim: int = 256
    depth_confidence: float = 0.95
    width_confidence: float = 0.99
    filter_threshold: float = 0.1


def build_lightglue(config: SPLGConfig):
    """kornia's LightGlue with MINIMA's configuration and no downloaded weights."""
    try:
        from kornia.feature import LightGlue
    except ImportError as exc:  # kornia is the `minima` extra
        raise ImportError(f"minima_splg needs kornia (pip install 'matchanything_ros[minima]'): {exc}") from None
    # flash=False: kornia's flash path casts attention to fp16 on CUDA; fp16 is the engines' job
    return LightGlue(
        features=None,
        input_dim=config.descriptor_dim,
        descriptor_dim=config.descriptor_dim,
        n_layers=config.n_layers,
        num_heads=config.num_heads,
        flash=False,
        mp=False,
        depth_confidence=config.depth_confidence,
        width_confidence=config.width_confidence,
        filter_threshold=config.filter_threshold,
    )


class SuperPointLightGlue(nn.Module):
    """SuperPoint (ours, fixed K) + LightGlue (kornia) on one image pair; see the module docstring."""

    def __init__(self, config: SPLGConfig | None = None, adaptive: bool = True):
        super().__init__()
        self.config = config or SPLGConfig()
        c = self.config
        self.superpoint = SuperPointFixed(c.max_keypoints, c.detection_threshold, c.nms_radius, c.remove_borders, c.descriptor_dim)
        self.lightglue = build_lightglue(c)
        self.adaptive = bool(adaptive)

    @property
    def top_k(self) -> int:
        return self.superpoint.max_keypoints

    def forward(self, image0: torch.Tensor, image1: torch.Tensor, threshold: torch.Tensor):
        k0, _, d0, v0 = self.superpoint(image0)
        k1, _, d1, v1 = self.superpoint(image1)
        h, w = image0.shape[-2:]
        if self.adaptive and not torch.compiler.is_exporting():
            return self._adaptive(k0[0], d0[0], v0[0], k1[0], d1[0], v1[0], (w, h), float(threshold))
        return self._fixed(k0, d0, v0, k1, d1, v1, (w, h), threshold)

    # ------------------------------------------------------------------ exact, fixed shapes
    def _fixed(self, k0, d0, v0, k1, d1, v1, size, threshold):
        lg = self.lightglue
        wh = k0.new_tensor(size)
        # LightGlue's normalisation: centred, divided by half the longer side
        n0 = (k0 - wh / 2) / (wh.max() / 2)
        n1 = (k1 - wh / 2) / (wh.max() / 2)
        desc0, desc1 = lg.input_proj(d0), lg.input_proj(d1)
        enc0, enc1 = lg.posenc(n0), lg.posenc(n1)
        m0, m1 = v0[..., None], v1[..., None]
        for layer in lg.transformers:
            desc0, desc1 = layer(desc0, desc1, enc0, enc1, mask0=m0, mask1=m1)
        head = lg.log_assignment[len(lg.transformers) - 1]
        md0, md1 = head.final_proj(desc0), head.final_proj(desc1)
        scale = md0.shape[-1] ** 0.25
        sim = (md0 / scale) @ (md1 / scale).transpose(1, 2)
        pair = v0[:, :, None] & v1[:, None, :]
        sim = torch.where(pair, sim, torch.full_like(sim, _MASKED))
        certainty = nn.functional.logsigmoid(head.matchability(desc0)) + nn.functional.logsigmoid(head.matchability(desc1)).transpose(1, 2)
        scores = torch.log_softmax(sim, 2) + torch.log_softmax(sim, 1) + certainty
        best0, match0 = scores.max(2)
        match1 = scores.max(1).indices
        mutual = torch.arange(match0.shape[1], device=match0.device)[None] == match1.gather(1, match0)
        mscore = best0.exp()
        keep = mutual & v0 & v1.gather(1, match0) & (mscore > threshold)
        kpts1 = k1.gather(1, match0[..., None].expand(-1, -1, 2))
        # candidates (the engines' 4th output): every match has a slot of its own keypoint, so
        # none is dropped and the count is the number of matches
        return k0[0], kpts1[0], torch.where(keep, mscore, torch.zeros_like(mscore))[0], keep.sum().to(torch.int32)

    # ------------------------------------------------------------------ MINIMA's adaptive LightGlue
    def _adaptive(self, k0, d0, v0, k1, d1, v1, size, threshold: float):
        lg = self.lightglue
        lg.conf.filter_threshold = threshold
        i0, i1 = torch.nonzero(v0)[:, 0], torch.nonzero(v1)[:, 0]
        wh = k0.new_tensor(size)[None]
        out = lg({
            "image0": {"keypoints": k0[i0][None], "descriptors": d0[i0][None], "image_size": wh},
            "image1": {"keypoints": k1[i1][None], "descriptors": d1[i1][None], "image_size": wh},
        })
        pairs, mscores = out["matches"][0], out["scores"][0]
        rows, cols = i0[pairs[:, 0]], i1[pairs[:, 1]]
        kpts1 = torch.zeros_like(k0)
        kpts1[rows] = k1[cols]
        scores = torch.zeros(k0.shape[0], dtype=k0.dtype, device=k0.device)
        scores[rows] = mscores.to(k0.dtype)
        return k0, kpts1, scores, torch.tensor(len(rows), dtype=torch.int32)


def load_splg(lightglue_path, superpoint_path, config: SPLGConfig | None = None, adaptive: bool = True) -> SuperPointLightGlue:
    """The network with MINIMA's LightGlue file and SuperPoint's standard weights (eval mode)."""
    from .weights import lightglue_state, superpoint_state

    model = SuperPointLightGlue(config, adaptive=adaptive)
    model.superpoint.load_state_dict(superpoint_state(superpoint_path, model.superpoint.state_dict()), strict=True)
    # strict=False only for the derived buffer confidence_thresholds; lightglue_state has checked
    # that every learned tensor is there with its shape
    model.lightglue.load_state_dict(lightglue_state(lightglue_path, model.lightglue.state_dict()), strict=False)
    return model.eval()


def random_splg(seed: int = 0, config: SPLGConfig | None = None, adaptive: bool = True) -> SuperPointLightGlue:
    """Seeded random weights that still give matches, for parity tests and benchmarks.

    PyTorch's default init leaves LightGlue's similarity flat (softmax over ~1000 points gives no
    score above 0.1). SuperPoint's convolutions get He-normal weights (input-dependent features)
    and the assignment head a larger projection and a positive matchability bias, so that a point
    and its counterpart in a shifted image become mutual, confident matches."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = SuperPointLightGlue(config, adaptive=adaptive)
        with torch.no_grad():
            for module in model.superpoint.modules():
                if isinstance(module, nn.Conv2d):
                    # zero-sum He-normal filters: on non-negative (image, ReLU) inputs a plain
                    # random filter is dominated by one common component, and every descriptor
                    # ends up nearly the same
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                    module.weight.sub_(module.weight.mean(dim=(1, 2, 3), keepdim=True))
                    nn.init.zeros_(module.bias)
            for layer in model.lightglue.transformers:
                for block in (layer.self_attn, layer.cross_attn):
                    block.ffn[-1].weight.mul_(0.1)  # keep the input descriptors dominant
            for head in model.lightglue.log_assignment:
                nn.init.eye_(head.final_proj.weight)
                head.final_proj.weight.mul_(24.0)
                nn.init.zeros_(head.final_proj.bias)
                nn.init.constant_(head.matchability.bias, 4.0)
    finally:
        torch.random.set_rng_state(state)
    return model.eval()
