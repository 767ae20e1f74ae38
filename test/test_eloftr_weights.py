"""Checkpoint reading in both layouts (transformers safetensors, the authors' Lightning .ckpt),
safety of pickle loading, error messages, and weights discovery without network."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch

from test_eloftr_common import build_reference, textured_image

from matchanything_ros.matching.base import MatcherError
from matchanything_ros.models.eloftr.model import ELoFTRDeploy, load_deploy_model
from matchanything_ros.models.eloftr.weights import (
    WeightsError,
    detect_layout,
    find_local_weights,
    load_state_dict,
    read_checkpoint,
)


def hf_to_original_key(key: str) -> str:
    """transformers name -> the authors' checkpoint name (inverse of the loader's mapping, written
    independently from the names in zju3dv's EfficientLoFTR / MatchAnything sources)."""
    m = re.fullmatch(r"efficientloftr\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.(conv1|conv2|identity)\.?(conv|norm)?\.?(.*)", key)
    if m:
        stage, block, branch, part, leaf = m.groups()
        layer = f"matcher.backbone.layer{stage}" + ("" if stage == "0" else f".{block}")
        if branch == "identity":
            return f"{layer}.rbr_identity.{leaf}"
        return f"{layer}.rbr_{'dense' if branch == 'conv1' else '1x1'}.{'conv' if part == 'conv' else 'bn'}.{leaf}"
    m = re.fullmatch(r"efficientloftr\.local_feature_transformer\.layers\.(\d+)\.(self|cross)_attention\.(.+)", key)
    if m:
        index = 2 * int(m.group(1)) + (m.group(2) == "cross")
        rest = m.group(3)
        for hf, orig in (
            ("aggregation.q_aggregation", "aggregate"), ("aggregation.norm", "norm1"),
            ("attention.q_proj", "q_proj"), ("attention.k_proj", "k_proj"), ("attention.v_proj", "v_proj"),
            ("attention.o_proj", "merge"), ("mlp.fc1", "mlp.0"), ("mlp.fc2", "mlp.2"), ("mlp.layer_norm", "norm2"),
        ):
            if rest.startswith(hf + "."):
                return f"matcher.loftr_coarse.layers.{index}.{orig}{rest[len(hf):]}"
    m = re.fullmatch(r"refinement_layer\.out_conv_layers\.(\d+)\.(\w+)\.(\w+)", key)
    if m:
        level = {"0": 2, "1": 1}[m.group(1)]
        part = {"out_conv1": "outconv", "out_conv2": "outconv2.0", "batch_norm": "outconv2.1", "out_conv3": "outconv2.3"}[m.group(2)]
        return f"matcher.fine_preprocess.layer{level}_{part}.{m.group(3)}"
    if key.startswith("refinement_layer.out_conv."):
        return "matcher.fine_preprocess.layer3_outconv." + key.rsplit(".", 1)[1]
    raise AssertionError(f"unmapped key {key}")


@pytest.fixture(scope="module")
def reference():
    return build_reference(seed=0)


@pytest.fixture(scope="module")
def pair():
    img = textured_image(128, 160, seed=11).astype(np.float32) / 255
    return torch.from_numpy(img)[None, None], torch.from_numpy(np.ascontiguousarray(img[:, ::-1]))[None, None]


@pytest.fixture(scope="module")
def expected(reference, pair):
    from matchanything_ros.models.eloftr.weights import hf_to_deploy

    model = ELoFTRDeploy(top_k=64)
    model.load_state_dict(hf_to_deploy(reference.state_dict(), model.config))
    with torch.no_grad():
        return model.eval()(*pair, torch.tensor(0.0))


def _run(path, pair):
    model = load_deploy_model(path, top_k=64)
    with torch.no_grad():
        return model(*pair, torch.tensor(0.0))


def _assert_same(a, b):
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_hf_safetensors(tmp_path, reference, pair, expected):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    assert detect_layout(read_checkpoint(path)) == "hf"
    _assert_same(_run(path, pair), expected)
    assert find_local_weights(tmp_path) == path  # a directory resolves to its model.safetensors


@pytest.mark.parametrize("prefix", ["matcher.", "matcher.model."])
def test_authors_lightning_ckpt(tmp_path, reference, pair, expected, prefix):
    state = {}
    for k, v in reference.state_dict().items():
        state[prefix + hf_to_original_key(k)[len("matcher."):]] = v.half()  # stored in fp16
    # Lightning checkpoints carry training metadata next to the weights
    ckpt = {"epoch": 7, "global_step": 1234, "pytorch-lightning_version": "1.3.5", "state_dict": state}
    path = tmp_path / "matchanything_eloftr.ckpt"
    torch.save(ckpt, path)
    assert detect_layout(read_checkpoint(path)) == "original"
    got = _run(path, pair)
    ref_half = {k: v.half().float() for k, v in reference.state_dict().items()}
    from matchanything_ros.models.eloftr.weights import hf_to_deploy

    model = ELoFTRDeploy(top_k=64)
    model.load_state_dict(hf_to_deploy(ref_half, model.config))
    with torch.no_grad():
        _assert_same(got, model.eval()(*pair, torch.tensor(0.0)))


def test_corrupt_and_wrong_files(tmp_path, reference):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match="model.safetensors"):
        load_deploy_model(bad)
    truncated = tmp_path / "cut.ckpt"
    full = tmp_path / "full.ckpt"
    torch.save({"state_dict": reference.state_dict()}, full)
    truncated.write_bytes(full.read_bytes()[: 10000])
    with pytest.raises(WeightsError, match="cut.ckpt"):
        load_deploy_model(truncated)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match="empty"):
        load_deploy_model(empty)
    partial = tmp_path / "partial.ckpt"
    state = {k: v for k, v in reference.state_dict().items() if "refinement_layer" not in k}
    torch.save({"state_dict": state}, partial)
    with pytest.raises(WeightsError, match=r"missing keys: refinement_layer\.out_conv\.weight"):
        load_deploy_model(partial)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3)}}, other)
    with pytest.raises(WeightsError, match="unrecognised checkpoint layout"):
        load_deploy_model(other)
    assert issubclass(WeightsError, MatcherError)


def test_find_local_weights(tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match="not found"):
        find_local_weights(tmp_path / "nope.safetensors")
    # an empty Hugging Face cache: nothing found, and no network is touched
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert find_local_weights() is None
    from matchanything_ros.models.eloftr.weights import resolve_weights

    with pytest.raises(WeightsError, match="weights download"):
        resolve_weights(None, allow_download=False)


def test_find_in_hf_cache(tmp_path, monkeypatch, reference):
    """A snapshot in the standard Hugging Face cache layout is found offline."""
    import huggingface_hub.constants as constants
    from safetensors.torch import save_file

    hub = tmp_path / "hub"
    repo = hub / "models--zju-community--matchanything_eloftr"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(snap / "model.safetensors"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    found = find_local_weights()
    assert found is not None and found.name == "model.safetensors" and found.is_file()


def test_parameter_counts(reference):
    """The published network has 16,025,216 parameters; fusing RepVGG branches and BatchNorms
    leaves 15,053,952 in the deployed graph."""
    assert sum(p.numel() for p in reference.parameters()) == 16_025_216
    assert sum(p.numel() for p in ELoFTRDeploy(top_k=1).parameters()) == 15_053_952


def test_config_json_beside_weights(tmp_path, reference, pair, expected):
    """A Hugging Face snapshot's config.json is read and checked against what we implement."""
    import json

    from safetensors.torch import save_file

    from transformers import EfficientLoFTRConfig

    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    (tmp_path / "config.json").write_text(EfficientLoFTRConfig().to_json_string())
    _assert_same(_run(path, pair), expected)
    data = json.loads((tmp_path / "config.json").read_text())
    data["attention_bias"] = True
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(WeightsError, match="attention_bias"):
        load_deploy_model(path)
