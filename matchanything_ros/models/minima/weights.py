"""MINIMA checkpoints: where they are published, how to find them offline, and reading each layout.

Published files (MINIMA README, "Weights Download"; Apache-2.0):

* ``minima_lightglue.pth`` -- a bare LightGlue ``state_dict`` (no wrapper) in the *old* cvg/LightGlue
  names ``self_attn.{i}.*`` / ``cross_attn.{i}.*``; MINIMA's ``load_sp_lg`` renames them to
  ``transformers.{i}.self_attn.*`` / ``transformers.{i}.cross_attn.*`` before loading, as we do.
  SuperPoint is not in it: MINIMA uses cvg's standard SuperPoint weights, ``superpoint_v1.pth``
  (keys ``conv1a.weight`` ... ``convDb.bias``).
* ``minima_loftr.ckpt`` -- a Lightning checkpoint ``{"state_dict": {...}}`` whose keys are LoFTR's
  (``backbone.*``, ``loftr_coarse.*``, ``fine_preprocess.*``, ``loftr_fine.*``; MINIMA loads it
  strictly), a ``matcher.`` prefix is accepted too.

Files are read as safetensors or with ``torch.load(weights_only=True)`` only (tensors and plain
containers): a file that needs any other pickled object is refused, never unpickled another way.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..eloftr.weights import WeightsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Published:
    """One published weights file: its name and download URL(s), first tried first."""

    filename: str
    urls: tuple[str, ...]
    what: str


#: MINIMA's GitHub release assets (README "Weights Download")
MINIMA_LIGHTGLUE = Published(
    "minima_lightglue.pth",
    ("https://github.com/LSXI7/storage/releases/download/MINIMA/minima_lightglue.pth",),
    "MINIMA LightGlue (SuperPoint features)",
)
MINIMA_LOFTR = Published(
    "minima_loftr.ckpt",
    ("https://github.com/LSXI7/storage/releases/download/MINIMA/minima_loftr.ckpt",),
    "MINIMA LoFTR",
)
#: the SuperPoint weights cvg/LightGlue downloads (MagicLeap's network, renamed keys)
SUPERPOINT = Published(
    "superpoint_v1.pth",
    ("https://github.com/cvg/LightGlue/releases/download/v0.1_arxiv/superpoint_v1.pth",),
    "SuperPoint (MagicLeap, as distributed by cvg/LightGlue)",
)

#: registry model name -> the files it needs (the first is the one the `weights` option names)
MODEL_FILES: dict[str, tuple[Published, ...]] = {
    "minima_splg": (MINIMA_LIGHTGLUE, SUPERPOINT),
    "minima_loftr": (MINIMA_LOFTR,),
}

LAYOUT_LIGHTGLUE = (
    "MINIMA minima_lightglue.pth: a LightGlue state_dict with keys posenc.Wr.weight, "
    "self_attn.{i}.* / cross_attn.{i}.* (or transformers.{i}.*), log_assignment.{i}.*, token_confidence.{i}.*"
)
LAYOUT_SUPERPOINT = "SuperPoint superpoint_v1.pth: a state_dict with keys conv1a.weight ... convPb.* and convDa.* / convDb.*"
LAYOUT_LOFTR = (
    "MINIMA minima_loftr.ckpt: {'state_dict': {...}} with LoFTR keys backbone.*, loftr_coarse.*, "
    "fine_preprocess.*, loftr_fine.* (optionally prefixed 'matcher.')"
)


def cache_dir() -> Path:
    """Where downloaded MINIMA files live: ``$XDG_CACHE_HOME/matchanything_ros/minima``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "matchanything_ros" / "minima"


def hint(model: str) -> str:
    names = ", ".join(p.filename for p in MODEL_FILES[model])
    return (
        f"run `matchanything-ros weights download --model {model}` on a machine with internet access "
        f"(it fills {cache_dir()}), or give an explicit weights path (--weights / the node's `weights` "
        f"parameter); {model} needs {names}"
    )


def explicit_file(explicit: str | os.PathLike, filename: str, what: str = "") -> Path:
    """A weights path the user named: the file, or ``filename`` inside the named folder; it must
    exist (WeightsError naming what was expected)."""
    path = Path(explicit).expanduser()
    if path.is_dir():
        path = path / filename
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path} (expected {filename}{', the ' + what if what else ''})")
    return path


def find_file(item: Published, explicit: str | Path | None = None, directory: Path | None = None) -> Path | None:
    """An explicit file (must exist), else ``item.filename`` in ``directory`` or the cache, else None."""
    if explicit:
        return explicit_file(explicit, item.filename)
    for folder in (directory, cache_dir()):
        if folder is not None and (folder / item.filename).is_file():
            return folder / item.filename
    return None


def resolve_files(model: str, weights: str | Path | None = None, allow_download: bool = True) -> list[Path]:
    """The local paths of every file ``model`` needs: ``weights`` names the first (a file or a
    directory); the others are looked for beside it, then in the cache; missing ones are
    downloaded when allowed, else WeightsError says what to do."""
    items = MODEL_FILES[model]
    first = find_file(items[0], weights)
    beside = first.parent if first is not None else None
    found = [first] + [find_file(item, None, beside) for item in items[1:]]
    missing = [item for item, path in zip(items, found) if path is None]
    if missing and not allow_download:
        raise WeightsError(f"{model} weights not found locally; {hint(model)}")
    for item in missing:
        found[items.index(item)] = download(item)
    return found


def download(item: Published, target_dir: str | Path | None = None, fetch=None) -> Path:
    """Download ``item`` into ``target_dir`` (default: :func:`cache_dir`) atomically; returns the path.

    ``fetch(url, path)`` writes one URL to a file (default: ``torch.hub.download_url_to_file``); each
    URL is tried in turn, and WeightsError says what to do when none can be reached."""
    target = Path(target_dir) if target_dir else cache_dir()
    path = target / item.filename
    if path.is_file() and path.stat().st_size > 0:
        return path
    errors = fetch_first(item.urls, path, fetch)
    if not errors:
        return path
    command = " / ".join(f"`matchanything-ros weights download --model {m}`" for m, items in MODEL_FILES.items() if item in items)
    raise WeightsError(
        f"cannot download {item.filename} ({'; '.join(errors)}); this machine looks offline: run "
        f"{command} on a connected machine and copy {target}, or pass an explicit path"
    )


def fetch_first(urls, path: Path, fetch=None) -> list[str]:
    """Write the first of ``urls`` that answers to ``path`` (its folder created), atomically: a
    ``.part`` file renamed when complete, removed on failure. ``fetch(url, dest)`` writes one URL
    (default ``torch.hub.download_url_to_file``). Returns [] on success, else one error per URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fetch is None:
        from torch.hub import download_url_to_file

        def fetch(url, dest):
            download_url_to_file(url, str(dest), progress=False)

    errors = []
    tmp = path.with_name(path.name + ".part")
    for url in urls:
        log.info("downloading %s from %s", path.name, url)
        try:
            fetch(url, tmp)
            tmp.replace(path)  # never leave a half file under the real name
            return []
        except Exception as exc:  # network errors come in many types; all mean "not reachable"
            errors.append(f"{url}: {type(exc).__name__}")
            tmp.unlink(missing_ok=True)
    return errors


# --------------------------------------------------------------------------- layouts
def read_checkpoint(path, layout: str, max_bytes: int | None = None) -> dict:
    """Tensors of a safetensors file or a torch checkpoint (``{"state_dict": ...}`` unwrapped),
    read without running code; WeightsError naming ``layout`` otherwise. ``max_bytes``: the most a
    zip checkpoint may unpack to (default ``MAX_CHECKPOINT_BYTES``)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: file is empty (interrupted download?); delete it and download again")
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head[:2] == b"PK":
        from ..eloftr.weights import check_zip_checkpoint

        check_zip_checkpoint(path, max_bytes)
    try:
        if head[:2] == b"PK" or head[:1] == b"\x80":
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        else:
            from safetensors.torch import load_file

            data = load_file(str(path))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise WeightsError(
            f"{path}: not readable as {layout} without running code ({first}); pickled objects other "
            f"than tensors are refused"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"{path}: holds no state_dict of tensors; expected {layout}")
    return dict(data)


def _strip_prefix(state: dict, prefix: str) -> dict:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def _check_against(state: dict, expected: dict, path, layout: str) -> dict:
    """Keep the keys the network has; WeightsError naming the layout if any is missing or misshapen.
    BatchNorm's step counters (``num_batches_tracked``) are optional."""
    expected = {k: v for k, v in expected.items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in state]
    if missing:
        shown = ", ".join(missing[:3]) + (f", ... ({len(missing)} in all)" if len(missing) > 3 else "")
        raise WeightsError(f"{path}: does not fit {layout} (missing {shown})")
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise WeightsError(f"{path}: tensor shapes do not fit {layout}: {'; '.join(wrong[:3])}")
    return {k: state[k].float() if state[k].is_floating_point() else state[k] for k in expected}


def lightglue_state(path, expected: dict) -> dict:
    """Read ``minima_lightglue.pth`` and rename its old attention keys as MINIMA does."""
    import re

    state = _strip_prefix(read_checkpoint(path, LAYOUT_LIGHTGLUE), "matcher.")
    renamed = {re.sub(r"^(self_attn|cross_attn)\.(\d+)\.", r"transformers.\2.\1.", k): v for k, v in state.items()}
    # derived buffers (confidence_thresholds) are rebuilt by the module, never taken from a file
    expected = {k: v for k, v in expected.items() if k != "confidence_thresholds"}
    return _check_against(renamed, expected, path, LAYOUT_LIGHTGLUE)


def superpoint_state(path, expected: dict) -> dict:
    return _check_against(_strip_prefix(read_checkpoint(path, LAYOUT_SUPERPOINT), "extractor."), expected, path, LAYOUT_SUPERPOINT)


def loftr_state(path, expected: dict) -> dict:
    state = _strip_prefix(read_checkpoint(path, LAYOUT_LOFTR), "matcher.")
    return _check_against(state, expected, path, LAYOUT_LOFTR)


# --------------------------------------------------------------------------- synthetic files
def write_published_layouts(directory, lightglue_state_dict=None, superpoint_state_dict=None, loftr_state_dict=None) -> dict:
    """Write the given network state_dicts as files in the *published* layouts (for tests,
    benchmarks and the accuracy plumbing with random weights): ``minima_lightglue.pth`` with
    LightGlue's old ``self_attn.{i}`` / ``cross_attn.{i}`` names, ``superpoint_v1.pth`` and
    ``minima_loftr.ckpt`` as ``{"state_dict": {...}}``. Returns {filename: path}."""
    import re

    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    if lightglue_state_dict is not None:
        old = {re.sub(r"^transformers\.(\d+)\.(self_attn|cross_attn)\.", r"\2.\1.", k): v
               for k, v in lightglue_state_dict.items() if k != "confidence_thresholds"}
        out[MINIMA_LIGHTGLUE.filename] = old
    if superpoint_state_dict is not None:
        out[SUPERPOINT.filename] = dict(superpoint_state_dict)
    if loftr_state_dict is not None:
        out[MINIMA_LOFTR.filename] = {"state_dict": dict(loftr_state_dict)}
    paths = {}
    for name, payload in out.items():
        paths[name] = directory / name
        torch.save(payload, paths[name])
    return paths


def write_random_checkpoints(directory, seed: int = 0) -> dict:
    """Seeded random MINIMA weights (:func:`.splg.random_splg`, :func:`.loftr.random_loftr`) written in the published layouts. Random weights prove plumbing, not accuracy."""
    from .loftr import random_loftr
    from .splg import random_splg

    model, loftr = random_splg(seed), random_loftr(seed)
    return write_published_layouts(directory, model.lightglue.state_dict(), model.superpoint.state_dict(), loftr.state_dict())
