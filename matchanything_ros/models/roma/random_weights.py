"""Seeded random RoMa weights that anyone can rebuild from a tensor's name and shape.

The reference pack of the authors' MatchAnything-RoMa (``test/data/roma_reference``) and our
parity test must use the *same* weights, but RoMa's checkpoint plus its DINOv2 ViT-L/14 backbone
are ~1.5 GB in fp32: far too large to keep in the repository. So every tensor is a pure function
of (seed, name, shape): the pack's generator fills the authors' model with it, the test fills
ours, and only the outputs are stored.

Names: a leading ``matcher.model.`` (the MatchAnything checkpoint's prefix) is stripped before the
name is hashed or matched against the rules, so ``seeded_tensor("matcher.model.X", s)`` equals
``seeded_tensor("X", s)``: the checkpoint layout and our model's ``decoder.*`` / ``encoder.*`` keys
get the same values. DINOv2 tensors use the bare names of ``dinov2_vitl14_pretrain.pth``
(``blocks.{i}.ls1.gamma``, ...; our model's ``dinov2.`` prefix is *not* stripped here).

The recipe (first matching rule wins; ``leaf`` is the part after the last dot):

1. integer dtypes: zeros (BatchNorm's ``num_batches_tracked``);
2. ``running_var``: U(0.5, 1.5); ``running_mean``: N(0, 0.1^2);
3. ``bias``: N(0, 0.02^2);
4. DINOv2 layer scale, names ending ``ls1.gamma`` / ``ls2.gamma``: 0.1 * (1 + 0.1 N(0,1)), i.e.
   about 0.1. With gamma about 1 a random 24-block ViT's token-independent residual component
   swamps the per-token part: the output tokens have pairwise cosine >= 0.97 and the coarse
   matcher becomes input-independent;
5. other ``gamma`` and 1-D ``weight`` (norm / layer-scale affine): 1 + 0.1 N(0,1);
6. the residual-branch output projections of RoMa's coarse-classifier transformer,
   ``decoder.embedding_decoder.blocks.{i}.attn.proj.weight`` and ``...blocks.{i}.mlp.fc2.weight``:
   0.1 x the fan-in rule below, so its five blocks do not add a large position-independent part
   (attention averages over positions) on top of the GP posterior and the image features;
7. >= 2-D tensors (linear / conv): N(0, 1/fan_in), fan_in = prod(shape[1:]);
8. anything else (tokens, embeddings): N(0, 0.02^2).

Each tensor is drawn from its own generator, seeded with ``crc32(name) * 1000003 + seed``; a
rule only scales or shifts the draw.

Not part of this recipe: even with rules 4 and 6 the token-independent part of DINOv2's output
dominates the coarse classifier (2-7 of 4096 anchors over 64 positions). The reference pack
therefore sets the BatchNorm statistics that standardise the projected DINOv2 tokens
(``decoder.proj.16.1.running_mean`` / ``running_var``) from one forward pass of its first pair. It
stores them as ``weights_override.*``; see ``test/data/roma_reference/README.md``.
"""
from __future__ import annotations

import math
import re
import zlib


#: stripped from a name before it is hashed or matched (the MatchAnything checkpoint's prefix)
CHECKPOINT_PREFIX = "matcher.model."
#: DINOv2 layer scales (rule 4) and the coarse classifier's residual output projections (rule 6)
LAYER_SCALE = re.compile(r"(^|\.)ls[12]\.gamma$")
DECODER_RESIDUAL_OUT = re.compile(r"(^|\.)embedding_decoder\.blocks\.\d+\.(attn\.proj|mlp\.fc2)\.weight$")
LAYER_SCALE_VALUE = 0.1
DECODER_RESIDUAL_SCALE = 0.1


def canonical_name(name: str) -> str:
    """``name`` without a leading ``matcher.model.``: the name :func:`seeded_tensor` hashes."""
    return name[len(CHECKPOINT_PREFIX):] if name.startswith(CHECKPOINT_PREFIX) else name


def seeded_tensor(name: str, shape, dtype=None, seed: int = 0):
    """The tensor called ``name`` with ``shape`` under ``seed`` (float32 unless ``dtype`` is an
    integer type: then zeros, e.g. BatchNorm's ``num_batches_tracked``). A leading
    ``matcher.model.`` in ``name`` is ignored (see the module docstring for the rules)."""
    import torch

    shape = tuple(int(s) for s in shape)
    if dtype is not None and not torch.empty((), dtype=dtype).is_floating_point():
        return torch.zeros(shape, dtype=dtype)
    name = canonical_name(name)
    g = torch.Generator().manual_seed((zlib.crc32(name.encode()) * 1000003 + seed) & 0x7FFFFFFFFFFFFFFF)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return 0.5 + torch.rand(shape, generator=g)
    if leaf == "running_mean":
        return 0.1 * torch.randn(shape, generator=g)
    if leaf == "bias":
        return 0.02 * torch.randn(shape, generator=g)
    if LAYER_SCALE.search(name):  # DINOv2 layer scale: about 0.1
        return LAYER_SCALE_VALUE * (1.0 + 0.1 * torch.randn(shape, generator=g))
    if leaf in ("gamma",) or (leaf == "weight" and len(shape) == 1):  # norm / layer-scale affine
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    if len(shape) >= 2:  # linear / conv: unit-variance fan-in
        fan_in = math.prod(shape[1:])
        w = torch.randn(shape, generator=g) / math.sqrt(max(fan_in, 1))
        return DECODER_RESIDUAL_SCALE * w if DECODER_RESIDUAL_OUT.search(name) else w
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
