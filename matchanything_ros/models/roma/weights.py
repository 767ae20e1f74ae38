"""Reading RoMa weights: the matcher checkpoint (MatchAnything-RoMa or MINIMA-RoMa layout) and the
separate DINOv2 ViT-L/14 file, tensors only (safetensors or ``torch.load(weights_only=True)``).

* MatchAnything's ``matchanything_roma.ckpt``: ``{"state_dict": {"matcher.model.encoder.cnn.layers.0.weight": ...,
  "matcher.model.decoder.*": ...}}`` (``MatchAnything_Model.load_state_dict`` strips ``matcher.``,
  the module holds RoMa as ``model``).
* DINOv2 ``dinov2_vitl14_pretrain.pth``: the ViT's own state dict (``cls_token``, ``pos_embed``,
  ``blocks.{i}.*``, ...), 1.2 GB in fp32; RoMa keeps it frozen and outside its checkpoint.
"""
from __future__ import annotations

from pathlib import Path

from ..eloftr.weights import WeightsError
from ..minima.weights import _check_against, read_checkpoint

LAYOUT_ROMA = (
    "a RoMa checkpoint: {'state_dict': {...}} or a bare state dict with keys encoder.cnn.layers.*, "
    "decoder.* (optionally prefixed 'matcher.model.', 'matcher.', 'model.' or 'module.')"
)
LAYOUT_DINOV2 = "DINOv2 ViT-L/14 dinov2_vitl14_pretrain.pth: a state dict with keys cls_token, pos_embed, blocks.{i}.*, norm.*"
#: DINOv2 ViT-L/14 in fp32 unpacks to ~1.2 GB
MAX_BYTES = 2 << 30
_PREFIXES = ("matcher.model.", "matcher.", "model.", "module.")


def _strip(state: dict) -> dict:
    """Drop the first wrapper prefix that every encoder/decoder key carries."""
    for prefix in _PREFIXES:
        if any(k.startswith(prefix + "encoder.") for k in state):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def roma_state(path, expected: dict) -> dict:
    """``encoder.*`` / ``decoder.*`` tensors of a RoMa checkpoint, checked against ``expected``."""
    state = read_checkpoint(path, LAYOUT_ROMA, max_bytes=MAX_BYTES)
    if isinstance(state.get("model"), dict):
        state = state["model"]
    state = {k: v for k, v in _strip(state).items() if not k.startswith("encoder.dinov2")}
    return _check_against(state, expected, path, LAYOUT_ROMA)


def dinov2_state(path, expected: dict) -> dict:
    state = read_checkpoint(path, LAYOUT_DINOV2, max_bytes=MAX_BYTES)
    return _check_against(state, expected, path, LAYOUT_DINOV2)


def load_roma(variant: str, checkpoint, dinov2, *, coarse_res: int | None = None, upsample_res: int | None = None,
              device="cpu"):
    """A :class:`~.model.RomaRunner` for ``variant`` ("matchanything_roma", "minima_roma") from its
    checkpoint and the DINOv2 file; ``coarse_res`` / ``upsample_res`` override the authors'
    test-time sizes. WeightsError (one line) for a missing, unsafe or mismatched file."""
    import torch

    from .model import VARIANTS, RoMa, RomaRunner

    if variant not in VARIANTS:
        raise ValueError(f"unknown RoMa variant {variant!r}; one of {', '.join(VARIANTS)}")
    settings = VARIANTS[variant]
    changes = {k: v for k, v in (("coarse_res", coarse_res), ("upsample_res", upsample_res)) if v is not None}
    if changes:
        from dataclasses import replace

        settings = replace(settings, **changes)
    for what, path in (("checkpoint", checkpoint), ("DINOv2 ViT-L/14 weights", dinov2)):
        if path is None or not Path(path).is_file():
            raise WeightsError(f"{variant}: {what} not found: {path}")
    model = RoMa(settings)
    network = {k: v for k, v in model.state_dict().items() if not k.startswith("dinov2.")}
    state = roma_state(checkpoint, network)
    vit = {k[len("dinov2."):]: v for k, v in model.state_dict().items() if k.startswith("dinov2.")}
    state.update({"dinov2." + k: v for k, v in dinov2_state(dinov2, vit).items()})
    model.load_state_dict(state, strict=False)  # num_batches_tracked may be absent; all else checked
    return RomaRunner(model.to(torch.device(device)).eval(), device)
