"""MatchAnything-ELoFTR weights: find, download, read and convert to the deployed layout.

Two checkpoint layouts are accepted:

* transformers (``zju-community/matchanything_eloftr``, ``model.safetensors``): keys such as
  ``efficientloftr.backbone.stages.0.blocks.0.conv1.conv.weight``;
* the authors' Lightning checkpoint (``matchanything_eloftr.ckpt``): ``{"state_dict": ...}`` with
  keys such as ``matcher.backbone.layer0.rbr_dense.conv.weight`` (a ``matcher.model.``, ``model.``
  or no prefix is accepted too).

Both are converted to the transformers names first, then RepVGG branches and BatchNorms are fused
into the deployed convolutions. Pickled checkpoints are read with ``torch.load(weights_only=True)``
only: tensors and plain containers; a checkpoint that pickles anything else is refused, never
unpickled some other way (no input may run code).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from typing import TYPE_CHECKING

from matchanything_ros.matching.base import MatcherError

from .config import ELoFTRConfig

if TYPE_CHECKING:  # torch is imported lazily: locating weights must not need it
    import torch

log = logging.getLogger(__name__)

#: Hugging Face repository of the published weights (Apache-2.0)
HF_REPO_ID = "zju-community/matchanything_eloftr"
HF_FILENAME = "model.safetensors"
HF_CONFIG = "config.json"

WEIGHTS_HINT = (
    "run `matchanything-ros weights download` on a machine with internet access (it fills the "
    "Hugging Face cache, ~/.cache/huggingface), or give an explicit weights path (--weights / the "
    "node's `weights` parameter) to model.safetensors or the authors' matchanything_eloftr.ckpt"
)


class WeightsError(MatcherError):
    """A checkpoint is missing, unreadable or does not fit the network."""


# --------------------------------------------------------------------------- locate / download
def find_local_weights(explicit_path: str | Path | None = None) -> Path | None:
    """The weights file to use without any network access, or None.

    Order: an explicit path (a file, or a directory holding ``model.safetensors`` or a ``.ckpt``)
    -- which must exist -- then the Hugging Face cache for ``zju-community/matchanything_eloftr``.
    """
    if explicit_path:
        path = Path(explicit_path).expanduser()
        if path.is_dir():
            found = _weights_in_dir(path)
            if found is None:
                raise WeightsError(f"{path}: directory holds no model.safetensors or .ckpt file")
            return found
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        return path
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub is a runtime dependency
        return None
    cached = try_to_load_from_cache(HF_REPO_ID, HF_FILENAME)
    if isinstance(cached, str) and Path(cached).is_file():
        return Path(cached)
    return None


def _weights_in_dir(path: Path) -> Path | None:
    for name in (HF_FILENAME, "matchanything_eloftr.ckpt"):
        if (path / name).is_file():
            return path / name
    ckpts = sorted(path.glob("*.ckpt")) + sorted(path.glob("*.safetensors"))
    return ckpts[0] if ckpts else None


def download_weights(cache_dir: str | Path | None = None) -> Path:
    """Download the published weights into the standard Hugging Face cache (or ``cache_dir``)
    and return the local ``model.safetensors`` path. Raises WeightsError with a one-line hint
    when the hub cannot be reached."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover
        raise WeightsError("huggingface_hub is not installed: pip install huggingface_hub") from exc
    try:
        path = hf_hub_download(HF_REPO_ID, HF_FILENAME, cache_dir=cache_dir)
        try:
            hf_hub_download(HF_REPO_ID, HF_CONFIG, cache_dir=cache_dir)
        except Exception:  # the config is optional (defaults describe the same network)
            pass
    except Exception as exc:
        raise WeightsError(
            f"cannot download {HF_REPO_ID} from the Hugging Face hub ({type(exc).__name__}); "
            f"this machine looks offline: download on a connected machine with "
            f"`matchanything-ros weights download` and copy the HF cache (~/.cache/huggingface), "
            f"or pass an explicit weights path"
        ) from None
    return Path(path)


def resolve_weights(explicit_path: str | Path | None = None, allow_download: bool = True) -> Path:
    """Explicit path -> local cache -> download (if allowed); WeightsError says what to do."""
    found = find_local_weights(explicit_path)
    if found is not None:
        return found
    if not allow_download:
        raise WeightsError(f"MatchAnything-ELoFTR weights not found locally; {WEIGHTS_HINT}")
    return download_weights()


# --------------------------------------------------------------------------- read
#: what ``read_checkpoint`` loads; anything else is refused with the file's kind named
ACCEPTED = "a safetensors file or a tensor-only torch checkpoint (.ckpt/.pth, zip or legacy format)"


def file_kind(path: Path) -> str:
    """What a file is, from its first bytes (and, for exported models, its suffix):
    "safetensors", "torch-zip", "pickle", "onnx", "tensorrt", "empty" or "unknown"."""
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".engine", ".plan", ".trt"):
        return "tensorrt"
    size = path.stat().st_size
    if size == 0:
        return "empty"
    with open(path, "rb") as fh:
        head = fh.read(9)
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    # pickle: protocol 2+ starts with PROTO (0x80); protocols 0/1 with an opcode such as
    # MARK '(', EMPTY_DICT '}', EMPTY_LIST ']', GLOBAL 'c', INT 'I', BININT 'J'/'K'
    if head[:1] == b"\x80" or head[:1] in b"(}]cIJKN":
        return "pickle"
    return "unknown"


_KIND_HINTS = {
    "onnx": f"an ONNX model, not weights (expected {ACCEPTED}); the backends export their ONNX files "
    "from the weights themselves, and `build-engine --onnx` takes an export",
    "tensorrt": f"a TensorRT engine, not weights (expected {ACCEPTED}); engines are built from the "
    "weights' ONNX export (`build-engine`)",
    "empty": "the file is empty (interrupted download?); delete it and download again",
    "unknown": f"not a weights file (expected {ACCEPTED})",
}


#: a torch zip checkpoint may unpack to at most this (the published ones are ~60 MB, stored
#: uncompressed, as torch.save writes them)
MAX_CHECKPOINT_BYTES = 1 << 30
#: ... and to at most this many times its size on disk (torch.save does not compress)
MAX_ZIP_RATIO = 2


def check_zip_checkpoint(path: Path, max_bytes: int | None = None) -> None:
    """WeightsError when a torch zip checkpoint would unpack to more than ``max_bytes`` (default
    MAX_CHECKPOINT_BYTES) or MAX_ZIP_RATIO times its size: a few MB of deflated zeros become
    gigabytes in memory."""
    max_bytes = MAX_CHECKPOINT_BYTES if max_bytes is None else int(max_bytes)
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable torch checkpoint ({_first_line(exc)})") from None
    size = path.stat().st_size
    if unpacked > max_bytes or unpacked > MAX_ZIP_RATIO * size + (1 << 20):
        raise WeightsError(f"{path}: unpacks to {unpacked} bytes from {size} (a compressed archive; torch "
                           f"checkpoints are stored, at most {max_bytes} bytes); refused")


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or a tensor-only torch checkpoint.

    Never runs code: safetensors holds no code, and torch checkpoints (zip and legacy format,
    bare pickles of any protocol) are read only by ``torch.load(weights_only=True)``, whose
    unpickler admits tensors and plain containers. A checkpoint that pickles any other object
    is refused as not safe -- there is no fallback to a permissive unpickler.
    """
    path = Path(path)
    if path.is_dir():
        found = _weights_in_dir(path)
        if found is None:
            raise WeightsError(f"{path}: directory holds no model.safetensors or .ckpt file")
        path = found
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    kind = file_kind(path)
    if kind in _KIND_HINTS:
        raise WeightsError(f"{path}: {_KIND_HINTS[kind]}")
    import torch

    if kind == "safetensors":
        try:
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        except Exception as exc:
            raise WeightsError(f"{path}: corrupt safetensors file ({_first_line(exc)}); download it again") from None
    if kind == "torch-zip":
        check_zip_checkpoint(path)
    try:
        # a file object, not the name: torch would pick its loader from the suffix
        with open(path, "rb") as fh:
            data = torch.load(fh, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "Weights only load failed" in text or "weights_only" in text:
            found = re.search(r"(?:GLOBAL|global:?)\s+([\w.]+)", text)
            what = f" (it pickles {found.group(1)})" if found else ""
            raise WeightsError(
                f"{path}: not a safe checkpoint: it holds pickled Python objects other than tensors"
                f"{what}, which could run code when loaded; refused. Accepted: {ACCEPTED}"
            ) from None
        raise WeightsError(f"{path}: cannot read checkpoint ({_first_line(exc)}); the file is corrupt -- download it again") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"{path}: checkpoint holds no state_dict of tensors")
    return dict(data)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


# --------------------------------------------------------------------------- original -> HF names
_ORIGINAL_PREFIXES = ("matcher.model.", "matcher.", "model.", "")


def _original_key_to_hf(key: str) -> str | None:
    """Map one authors' checkpoint key (prefix already removed) to the transformers name."""
    m = re.fullmatch(r"backbone\.layer(\d+)(?:\.(\d+))?\.rbr_(dense|1x1|identity)\.?(.*)", key)
    if m:
        stage, block, branch, rest = m.group(1), m.group(2) or "0", m.group(3), m.group(4)
        base = f"efficientloftr.backbone.stages.{stage}.blocks.{block}"
        if branch == "identity":
            return f"{base}.identity.{rest}"
        conv = "conv1" if branch == "dense" else "conv2"
        part, _, leaf = rest.partition(".")
        return f"{base}.{conv}.{'conv' if part == 'conv' else 'norm'}.{leaf}"
    m = re.fullmatch(r"loftr_coarse\.layers\.(\d+)\.(\w+?)(?:\.(\d+))?\.(weight|bias)", key)
    if m:
        index, name, sub, leaf = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        kind = "self_attention" if index % 2 == 0 else "cross_attention"
        base = f"efficientloftr.local_feature_transformer.layers.{index // 2}.{kind}"
        names = {
            "aggregate": "aggregation.q_aggregation",
            "norm1": "aggregation.norm",
            "q_proj": "attention.q_proj",
            "k_proj": "attention.k_proj",
            "v_proj": "attention.v_proj",
            "merge": "attention.o_proj",
            "norm2": "mlp.layer_norm",
        }
        if name == "mlp" and sub in ("0", "2"):
            return f"{base}.mlp.fc{1 if sub == '0' else 2}.{leaf}"
        if name in names and sub is None:
            return f"{base}.{names[name]}.{leaf}"
        return None
    m = re.fullmatch(r"fine_preprocess\.layer(\d+)_outconv(2)?(?:\.(\d+))?\.(\w+)", key)
    if m:
        level, second, sub, leaf = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        if level == 3 and not second:
            return f"refinement_layer.out_conv.{leaf}"
        block = {2: 0, 1: 1}.get(level)
        if block is None:
            return None
        base = f"refinement_layer.out_conv_layers.{block}"
        if not second:
            return f"{base}.out_conv1.{leaf}"
        return {"0": f"{base}.out_conv2.{leaf}", "1": f"{base}.batch_norm.{leaf}", "3": f"{base}.out_conv3.{leaf}"}.get(sub)
    return None


def original_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an authors' checkpoint state_dict to transformers names (unknown keys dropped)."""
    for prefix in _ORIGINAL_PREFIXES:
        if any(k.startswith(prefix + "backbone.layer0.") for k in state):
            break
    else:
        raise WeightsError("checkpoint has no ELoFTR backbone keys (backbone.layer0.*)")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        new = _original_key_to_hf(key[len(prefix):])
        if new is not None:
            out[new] = value
    return out


def detect_layout(state: dict[str, torch.Tensor]) -> str:
    """'hf' (transformers names) or 'original' (authors' Lightning names)."""
    if any(k.startswith(("efficientloftr.", "refinement_layer.")) for k in state):
        return "hf"
    if any(k.endswith("backbone.layer0.rbr_dense.conv.weight") for k in state):
        return "original"
    sample = ", ".join(list(state)[:3])
    raise WeightsError(f"unrecognised checkpoint layout (first keys: {sample}); expected MatchAnything-ELoFTR weights")


# --------------------------------------------------------------------------- HF names -> deployed
class _Taker:
    """Pop tensors by name, remembering which are missing."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self.state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        self.used: set[str] = set()
        self.missing: list[str] = []

    def get(self, key: str) -> torch.Tensor:
        if key not in self.state:
            self.missing.append(key)
            return None
        self.used.add(key)
        return self.state[key]

    def has_prefix(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k in self.state)

    def bn(self, prefix: str) -> dict[str, torch.Tensor]:
        return {
            "gamma": self.get(prefix + ".weight"),
            "beta": self.get(prefix + ".bias"),
            "mean": self.get(prefix + ".running_mean"),
            "var": self.get(prefix + ".running_var"),
        }


def hf_to_deploy(state: dict[str, torch.Tensor], config: ELoFTRConfig, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Fuse a transformers-layout state_dict into :class:`ELoFTRDeploy`'s state_dict."""
    from .backbone import fold_batch_norm, fuse_repvgg_block

    t = _Taker(state)
    out: dict[str, torch.Tensor] = {}
    eps = 1e-5
    for s, blocks in enumerate(config.stage_blocks):
        for b in range(blocks):
            base = f"efficientloftr.backbone.stages.{s}.blocks.{b}"
            dense = {"weight": t.get(f"{base}.conv1.conv.weight"), **t.bn(f"{base}.conv1.norm")}
            point = {"weight": t.get(f"{base}.conv2.conv.weight"), **t.bn(f"{base}.conv2.norm")}
            identity = t.bn(f"{base}.identity") if t.has_prefix(f"{base}.identity.") else None
            if t.missing:
                continue
            w, bias = fuse_repvgg_block(dense, point, identity, eps)
            out[f"backbone.stages.{s}.{b}.weight"] = w
            out[f"backbone.stages.{s}.{b}.bias"] = bias
    for layer in range(config.num_layers):
        for hf_kind, ours in (("self_attention", "self_attention"), ("cross_attention", "cross_attention")):
            src = f"efficientloftr.local_feature_transformer.layers.{layer}.{hf_kind}"
            dst = f"transformer.{ours}.{layer}"
            pairs = {
                "aggregation.q_aggregation.weight": "q_aggregation.weight",
                "aggregation.norm.weight": "norm.weight",
                "aggregation.norm.bias": "norm.bias",
                "attention.q_proj.weight": "q_proj.weight",
                "attention.k_proj.weight": "k_proj.weight",
                "attention.v_proj.weight": "v_proj.weight",
                "attention.o_proj.weight": "o_proj.weight",
                "mlp.fc1.weight": "fc1.weight",
                "mlp.fc2.weight": "fc2.weight",
                "mlp.layer_norm.weight": "mlp_norm.weight",
                "mlp.layer_norm.bias": "mlp_norm.bias",
            }
            for a, b in pairs.items():
                out[f"{dst}.{b}"] = t.get(f"{src}.{a}")
    out["fine.out_conv.weight"] = t.get("refinement_layer.out_conv.weight")
    for i in range(len(config.stage_channels) - 2):
        src = f"refinement_layer.out_conv_layers.{i}"
        out[f"fine.blocks.{i}.skip.weight"] = t.get(f"{src}.out_conv1.weight")
        w2 = t.get(f"{src}.out_conv2.weight")
        bn = t.bn(f"{src}.batch_norm")
        if not t.missing:
            w2, b2 = fold_batch_norm(w2, bn["mean"], bn["var"], bn["gamma"], bn["beta"], eps)
            out[f"fine.blocks.{i}.conv2.weight"] = w2
            out[f"fine.blocks.{i}.conv2.bias"] = b2
        out[f"fine.blocks.{i}.conv3.weight"] = t.get(f"{src}.out_conv3.weight")
    if t.missing:
        shown = ", ".join(t.missing[:5]) + (f", ... ({len(t.missing)} in all)" if len(t.missing) > 5 else "")
        raise WeightsError(f"{source}: not MatchAnything-ELoFTR weights of this shape; missing keys: {shown}")
    unused = [k for k in t.state if k not in t.used and not k.endswith("num_batches_tracked")]
    if unused:
        log.warning("%s: %d unused tensors ignored (e.g. %s)", source, len(unused), unused[0])
    return out


def config_for(path: str | Path) -> ELoFTRConfig:
    """The network shape for a checkpoint: from a transformers ``config.json`` beside it (as in a
    Hugging Face snapshot) when present, else the published defaults."""
    import json

    candidate = Path(path)
    candidate = (candidate if candidate.is_dir() else candidate.parent) / HF_CONFIG
    if not candidate.is_file():
        return ELoFTRConfig()
    try:
        data = json.loads(candidate.read_text())
        return ELoFTRConfig.from_hf_dict(data)
    except (ValueError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{candidate}: {exc}") from None


def load_state_dict(path: str | Path, config: ELoFTRConfig | None = None) -> dict[str, torch.Tensor]:
    """Read a checkpoint of either layout and return the fused :class:`ELoFTRDeploy` state_dict.

    Raises WeightsError naming the file and the problem (unreadable, wrong layout, missing keys,
    wrong tensor shapes)."""
    from .model import ELoFTRDeploy

    config = config or ELoFTRConfig()
    state = read_checkpoint(path)
    if detect_layout(state) == "original":
        state = original_to_hf(state)
    fused = hf_to_deploy(state, config, source=str(path))
    expected = {k: v.shape for k, v in ELoFTRDeploy(config, 1).state_dict().items()}
    wrong = [f"{k} {tuple(fused[k].shape)} != {tuple(s)}" for k, s in expected.items() if k in fused and fused[k].shape != s]
    if wrong:
        raise WeightsError(f"{path}: tensor shapes do not match the network: {'; '.join(wrong[:3])}")
    return fused
