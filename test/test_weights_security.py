"""No weights file may run code: hostile checkpoints (a pickled object whose ``__reduce__``
writes a marker file) as bare pickles of every protocol, legacy ``torch.save`` and zip
``torch.save``, with the payload at the top, next to the weights and inside the state_dict.

Each is refused with one line naming the file and saying it is not a safe checkpoint, through
the loader, the CLI (``weights check``, ``match --weights``) and node start-up; the runtime
``set_parameters`` path is in test_node.py. The marker file never appears.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from matchanything_ros.models.eloftr.weights import WeightsError, file_kind, load_state_dict, read_checkpoint

REPO = Path(__file__).resolve().parent.parent


class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _objects(marker: Path) -> dict[str, object]:
    weights = {"matcher.backbone.layer0.rbr_dense.conv.weight": torch.zeros(2, 1, 3, 3)}
    return {
        "top": Payload(marker),
        "beside": {"state_dict": weights, "hyper_parameters": Payload(marker)},
        "inside": {"state_dict": {**weights, "matcher.evil": Payload(marker)}},
    }


def _write(path: Path, fmt: str, obj) -> Path:
    if fmt.startswith("pickle"):
        path.write_bytes(pickle.dumps(obj, protocol=int(fmt[-1])))
    elif fmt == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(obj, path)
    return path


FORMATS = [f"pickle{p}" for p in range(6)] + ["legacy", "zip"]


def hostile(tmp_path: Path, fmt: str, position: str, suffix: str = ".ckpt") -> tuple[Path, Path]:
    marker = tmp_path / f"marker_{fmt}_{position}"
    return _write(tmp_path / f"evil_{fmt}_{position}{suffix}", fmt, _objects(marker)[position]), marker


def _assert_refused(message: str, path: Path) -> None:
    assert "\n" not in message.strip(), message
    assert str(path) in message and "not a safe checkpoint" in message, message


@pytest.mark.parametrize("position", ["top", "beside", "inside"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_loader_refuses_pickled_code(tmp_path, fmt, position):
    path, marker = hostile(tmp_path, fmt, position)
    assert file_kind(path) in ("pickle", "torch-zip")
    for load in (read_checkpoint, load_state_dict):
        with pytest.raises(WeightsError) as err:
            load(path)
        _assert_refused(str(err.value), path)
    # any suffix: the kind comes from the bytes, not the name
    renamed = path.rename(path.with_suffix(".safetensors"))
    with pytest.raises(WeightsError) as err:
        read_checkpoint(renamed)
    _assert_refused(str(err.value), renamed)
    assert not marker.exists()


def test_tensor_only_checkpoints_still_load(tmp_path):
    state = {"state_dict": {"a": torch.ones(3)}, "epoch": 3, "global_step": 10, "name": "x"}
    for fmt in ("legacy", "zip"):  # a bare pickle of tensors goes through torch.storage._load_from_bytes
        got = read_checkpoint(_write(tmp_path / f"ok_{fmt}.ckpt", fmt, state))
        assert set(got) == {"a"} and torch.equal(got["a"], torch.ones(3))


def test_wrong_kind_of_file_is_named(tmp_path):
    cases = {
        "model.onnx": (b"\x08\x08\x12\x07pytorch", "ONNX model"),
        "model.engine": (b"ftrt\x00\x00", "TensorRT engine"),
        "empty.ckpt": (b"", "empty"),
        "image.ckpt": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "not a weights file"),
        "text.safetensors": (b"hello world, not weights", "not a weights file"),
    }
    for name, (data, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(WeightsError, match=expected) as err:
            read_checkpoint(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    return env


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "matchanything_ros.cli", *map(str, args)], capture_output=True,
                          text=True, env=_env(), timeout=600, cwd=str(REPO))


@pytest.mark.parametrize("fmt", ["pickle0", "legacy", "zip"])
def test_cli_weights_check_refuses(tmp_path, fmt):
    path, marker = hostile(tmp_path, fmt, "beside")
    res = _cli("weights", "check", path)
    assert res.returncode == 2, res.stderr
    _assert_refused(res.stderr, path)
    assert not marker.exists()


def test_cli_match_refuses(tmp_path):
    import cv2
    import numpy as np

    image = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) % 251).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    path, marker = hostile(tmp_path, "pickle2", "top")
    res = _cli("match", tmp_path / "a.png", tmp_path / "a.png", "--model", "matchanything_eloftr",
               "--backend", "torch", "--weights", path)
    assert res.returncode == 2, res.stderr
    _assert_refused(res.stderr, path)
    assert not marker.exists()


@pytest.mark.ros
def test_node_startup_refuses(tmp_path):
    pytest.importorskip("rclpy")
    path, marker = hostile(tmp_path, "pickle0", "inside")
    params = tmp_path / "params.yaml"
    params.write_text(
        "matcher_node:\n  ros__parameters:\n    model: matchanything_eloftr\n    backend: torch\n"
        f"    weights: {path}\n"
    )
    env = _env()
    env.update(ROS_DOMAIN_ID=str(10 + (os.getpid() + 7) % 190), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    res = subprocess.run([sys.executable, "-m", "matchanything_ros.ros.matcher_node", "--ros-args", "--params-file",
                          str(params)], capture_output=True, text=True, env=env, timeout=300, cwd=str(REPO))
    assert res.returncode == 1, res.stdout + res.stderr
    lines = [line for line in (res.stdout + res.stderr).splitlines() if "cannot start" in line]
    assert len(lines) == 1, res.stdout + res.stderr
    _assert_refused(lines[0], path)
    assert not marker.exists()


def test_weights_folders_cannot_blow_memory(tmp_path):
    """Issue 18, item 9: a config.json beside the weights cannot change the network's shape (a
    36-byte file asked for 12 GB), and a zip checkpoint that unpacks to far more than its size
    (deflated zeros) is refused before torch reads it."""
    import json
    import zipfile

    from matchanything_ros.models.eloftr.config import ELoFTRConfig
    from matchanything_ros.models.eloftr.weights import WeightsError, config_for, read_checkpoint

    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "config.json").write_text(json.dumps({"out_features": [64, 64, 128, 100000]}))
    with pytest.raises(WeightsError, match="published network shape"):
        config_for(tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"coarse_matching_temperature": float("nan")}))
    with pytest.raises(WeightsError, match="finite positive"):
        config_for(tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"num_attention_layers": 4}))
    assert config_for(tmp_path / "model.safetensors") == ELoFTRConfig()
    bomb = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data/0", bytes(64 << 20))  # 64 MB of zeros, ~64 KB on disk
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(WeightsError, match="unpacks to"):
        read_checkpoint(bomb)
