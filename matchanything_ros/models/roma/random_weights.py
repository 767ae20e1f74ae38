"""Seeded random RoMa weights that anyone can rebuild from a tensor's name and shape.

The reference pack of the authors' MatchAnything-RoMa (``test/data/roma_reference``) and our
parity test must use the *same* weights, but RoMa's checkpoint plus its DINOv2 ViT-L/14 backbone
are ~1.5 GB in fp32: far too large to keep in the repository. So every tensor is a pure function
of (seed, name, shape): the pack's generator fills the authors' model with it, the test fills
ours, and only the outputs are stored.

The scales keep a random network's activations in a useful range (a unit-variance fan-in init;
norm layers near identity; BatchNorm running statistics near 0 / 1), so the warp and certainty
are input-dependent rather than saturated.
"""
from __future__ import annotations

import math
import zlib


def seeded_tensor(name: str, shape, dtype=None, seed: int = 0):
    """The tensor called ``name`` with ``shape`` under ``seed`` (float32 unless ``dtype`` is an
    integer type: then zeros, e.g. BatchNorm's ``num_batches_tracked``)."""
    import torch

    shape = tuple(int(s) for s in shape)
    if dtype is not None and not torch.empty((), dtype=dtype).is_floating_point():
        return torch.zeros(shape, dtype=dtype)
    g = torch.Generator().manual_seed((zlib.crc32(name.encode()) * 1000003 + seed) & 0x7FFFFFFFFFFFFFFF)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return 0.5 + torch.rand(shape, generator=g)
    if leaf == "running_mean":
        return 0.1 * torch.randn(shape, generator=g)
    if leaf == "bias":
        return 0.02 * torch.randn(shape, generator=g)
    if leaf in ("gamma",) or (leaf == "weight" and len(shape) == 1):  # norm / layer-scale affine
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    if len(shape) >= 2:  # linear / conv: unit-variance fan-in
        fan_in = math.prod(shape[1:])
        return torch.randn(shape, generator=g) / math.sqrt(max(fan_in, 1))
    return 0.02 * torch.randn(shape, generator=g)  # tokens, embeddings


def seeded_state_dict(template, seed: int = 0) -> dict:
    """``{name: seeded_tensor(name, value.shape, value.dtype, seed)}`` for a state dict (or any
    mapping of name -> tensor) used only for its names, shapes and dtypes."""
    return {name: seeded_tensor(name, value.shape, value.dtype, seed) for name, value in template.items()}


#: the published file names (and layouts) :func:`write_published_files` writes
CHECKPOINT_NAMES = {"matchanything_roma": "matchanything_roma.ckpt", "minima_roma": "minima_roma.pth"}
DINOV2_NAME = "dinov2_vitl14_pretrain.pth"


def write_published_files(directory, variant: str = "matchanything_roma", seed: int = 0, half: bool = True) -> dict:
    """Seeded random weights as the published files in ``directory``: the variant's checkpoint
    (MatchAnything: ``{"state_dict": {"matcher.model.<key>": ...}}``; MINIMA: a bare state dict)
    and ``dinov2_vitl14_pretrain.pth``. ``half`` stores float16 (the files are 0.5 GB + 0.6 GB
    instead of twice that; the loader reads either). Returns {"checkpoint": path, "dinov2": path}."""
    from pathlib import Path

    import torch

    from .model import RoMa

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    template = RoMa().state_dict()
    network = {k: v for k, v in template.items() if not k.startswith("dinov2.")}
    vit = {k[len("dinov2."):]: v for k, v in template.items() if k.startswith("dinov2.")}

    def cast(state):
        return {k: v.half() if half and v.is_floating_point() else v for k, v in state.items()}

    if variant == "matchanything_roma":
        ckpt = {"state_dict": cast(seeded_state_dict({"matcher.model." + k: v for k, v in network.items()}, seed))}
    elif variant == "minima_roma":
        ckpt = cast(seeded_state_dict(network, seed))
    else:
        raise ValueError(f"unknown RoMa variant {variant!r}")
    paths = {"checkpoint": directory / CHECKPOINT_NAMES[variant], "dinov2": directory / DINOV2_NAME}
    torch.save(ckpt, paths["checkpoint"])
    torch.save(cast(seeded_state_dict(vit, seed)), paths["dinov2"])
    return paths
