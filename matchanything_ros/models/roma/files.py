"""The files of the RoMa models (``matchanything_roma``, ``minima_roma``): where each is
published, finding them without the network, downloading, and seeded random stand-ins.

Reading and checking a file is :mod:`matchanything_ros.models.roma.weights` (``load_roma``: tensors
only, safetensors or ``torch.load(weights_only=True)``); this module never opens one.

Every RoMa model needs two files: its own checkpoint (the CNN encoder and the decoder) and DINOv2
ViT-L/14, the frozen coarse backbone, which neither checkpoint contains (both authors' loaders fetch
it from Meta's URL below when it is not given). One DINOv2 file serves both models.

* ``matchanything_roma.ckpt``: the MatchAnything authors publish it only inside ``weights.zip``
  (with ``matchanything_eloftr.ckpt``) on Google Drive, linked from the README of their Hugging
  Face Space (LittleFrog/MatchAnything, ``imcui/third_party/MatchAnything/README.md``; the
  zju3dv/MatchAnything README and its issue 24 point there). Google Drive serves large files through
  a confirmation page, so there is no URL a program can fetch: the zip is downloaded by hand and
  ``weights download --model matchanything_roma --from-zip weights.zip`` takes the file out of it.
* ``minima_roma.pth``: MINIMA's GitHub release (README "Weights Download", ``weights/download.sh``).
* ``dinov2_vitl14_pretrain.pth``: Meta's DINOv2 release (facebookresearch/dinov2 README; the URL
  RoMa's ``model_zoo`` and MatchAnything's ``encoders.py`` download).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..eloftr.weights import WeightsError
from ..minima.weights import explicit_file, fetch_first

log = logging.getLogger(__name__)

#: the authors' archive of both MatchAnything checkpoints (README of their Space)
MATCHANYTHING_WEIGHTS_ZIP = "https://drive.google.com/file/d/12L3g9-w8rR9K2L4rYaGaDJ7NqX1D713d/view"


@dataclass(frozen=True)
class RomaFile:
    """One file a RoMa model needs: its name, direct download URLs (first tried first; none when
    the publisher offers no fetchable URL) and, for those, how to get it by hand."""

    filename: str
    urls: tuple[str, ...]
    what: str
    by_hand: str = ""


MATCHANYTHING_ROMA = RomaFile(
    "matchanything_roma.ckpt",
    (),
    "MatchAnything-RoMa checkpoint",
    f"the authors publish it only inside weights.zip on Google Drive ({MATCHANYTHING_WEIGHTS_ZIP}, "
    "linked from the README of their Hugging Face Space LittleFrog/MatchAnything): download the zip "
    "in a browser, then run `matchanything-ros weights download --model matchanything_roma --from-zip "
    "weights.zip`",
)
MINIMA_ROMA = RomaFile(
    "minima_roma.pth",
    ("https://github.com/LSXI7/storage/releases/download/MINIMA/minima_roma.pth",),
    "MINIMA RoMa checkpoint",
)
DINOV2_VITL14 = RomaFile(
    "dinov2_vitl14_pretrain.pth",
    ("https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",),
    "DINOv2 ViT-L/14 backbone (Meta)",
)

#: registry model name -> (its checkpoint, DINOv2); the first is what the `weights` option names
MODEL_FILES: dict[str, tuple[RomaFile, RomaFile]] = {
    "matchanything_roma": (MATCHANYTHING_ROMA, DINOV2_VITL14),
    "minima_roma": (MINIMA_ROMA, DINOV2_VITL14),
}
ROMA_MODELS = tuple(MODEL_FILES)


def cache_dir() -> Path:
    """Where RoMa files are downloaded to: ``$XDG_CACHE_HOME/matchanything_ros/roma``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "matchanything_ros" / "roma"


def torch_hub_dir() -> Path:
    """torch.hub's download folder (``torch.hub.get_dir()/checkpoints``, computed without importing
    torch): where RoMa's own code leaves DINOv2 when it downloaded it, so a machine that ran RoMa has it."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "torch")
    return Path(home) / "hub" / "checkpoints"


def hint(model: str) -> str:
    """One line: how to get ``model``'s files."""
    checkpoint, dinov2 = MODEL_FILES[model]
    text = (f"{model} needs {checkpoint.filename} and {dinov2.filename} (DINOv2 ViT-L/14, 1.2 GB): run "
            f"`matchanything-ros weights download --model {model}` on a machine with internet access (it fills "
            f"{cache_dir()}), or give the checkpoint as weights (--weights / the node's `weights` parameter) with "
            f"{dinov2.filename} beside it")
    if not checkpoint.urls:
        text += f"; {checkpoint.filename}: {checkpoint.by_hand}"
    return text


def _places(item: RomaFile, beside: Path | None) -> list[Path]:
    places = [beside, cache_dir()] + ([torch_hub_dir()] if item is DINOV2_VITL14 else [])
    return [p for p in places if p is not None]


def find_file(item: RomaFile, explicit: str | os.PathLike | None = None, beside: Path | None = None) -> Path | None:
    """``explicit`` (a file, or a folder holding ``item.filename``; it must exist), else
    ``item.filename`` beside the checkpoint, in the cache (and for DINOv2 torch.hub's folder), else None."""
    if explicit:
        return explicit_file(explicit, item.filename, item.what)
    for folder in _places(item, beside):
        if (folder / item.filename).is_file():
            return folder / item.filename
    return None


def resolve_files(model: str, weights: str | os.PathLike | None = None, dinov2: str | os.PathLike | None = None,
                  allow_download: bool = True) -> tuple[Path, Path]:
    """(checkpoint, DINOv2) of ``model``: ``weights`` names the checkpoint (a file or a folder),
    ``dinov2`` the DINOv2 file (a file or a folder; default: beside the checkpoint, then the cache,
    then torch.hub's folder). Missing files are downloaded when allowed and possible; otherwise
    WeightsError names each missing file and how to get it, in one line."""
    if model not in MODEL_FILES:
        raise WeightsError(f"unknown RoMa model {model!r}; one of {', '.join(MODEL_FILES)}")
    items = MODEL_FILES[model]
    checkpoint = find_file(items[0], weights)
    beside = checkpoint.parent if checkpoint is not None else None
    backbone = find_file(items[1], dinov2, beside)
    found = [checkpoint, backbone]
    missing = [item for item, path in zip(items, found) if path is None]
    if missing and (not allow_download or any(not item.urls for item in missing)):
        names = " and ".join(item.filename for item in missing)
        raise WeightsError(f"{model}: {names} not found locally; {hint(model)}")
    for item in missing:
        found[items.index(item)] = download(item)
    return found[0], found[1]


def download(item: RomaFile, target_dir: str | os.PathLike | None = None, fetch=None) -> Path:
    """``item`` into ``target_dir`` (default :func:`cache_dir`), atomically (a ``.part`` file renamed
    when complete); an existing non-empty file is kept. ``fetch(url, path)`` writes one URL to a
    file (default ``torch.hub.download_url_to_file``). WeightsError, one line, says what to do when
    the file has no URL or no URL answers."""
    target = Path(target_dir) if target_dir else cache_dir()
    path = target / item.filename
    if path.is_file() and path.stat().st_size > 0:
        return path
    models = " / ".join(f"`matchanything-ros weights download --model {m}`" for m, files in MODEL_FILES.items()
                        if item in files)
    if not item.urls:
        raise WeightsError(f"{item.filename} ({item.what}) cannot be downloaded by this program: {item.by_hand}")
    errors = fetch_first(item.urls, path, fetch)
    if not errors:
        return path
    raise WeightsError(
        f"cannot download {item.filename} ({'; '.join(errors)}); this machine looks offline: run {models} "
        f"on a connected machine and copy {target}, or pass an explicit path"
    )


def extract_from_zip(item: RomaFile, archive: str | os.PathLike, target_dir: str | os.PathLike | None = None) -> Path:
    """Copy the member of ``archive`` named ``item.filename`` (at any depth: the authors' zip holds
    ``weights/matchanything_roma.ckpt``) into ``target_dir`` (default :func:`cache_dir`),
    atomically; the member is copied as bytes, never opened as a checkpoint here."""
    import shutil
    import zipfile

    archive = Path(archive).expanduser()
    if not archive.is_file():
        raise WeightsError(f"zip file not found: {archive}")
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir() and Path(m.filename).name == item.filename]
            if not members:
                raise WeightsError(f"{archive}: holds no {item.filename} (expected the authors' weights.zip)")
            target = Path(target_dir) if target_dir else cache_dir()
            target.mkdir(parents=True, exist_ok=True)
            path, tmp = target / item.filename, target / (item.filename + ".part")
            try:
                with zf.open(members[0]) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
            return path
    except zipfile.BadZipFile as exc:
        raise WeightsError(f"{archive}: not a readable zip file ({exc})") from None


# --------------------------------------------------------------------------- random stand-ins
def write_random_checkpoints(directory, models=ROMA_MODELS, seed: int = 0) -> dict[str, Path]:
    """Seeded random weights in the published layouts (the network's own
    :func:`matchanything_ros.models.roma.random_weights.write_published_files`: float16, the loader
    reads either) for ``models`` into ``directory``, for tests, benchmarks and the accuracy
    plumbing; a model whose checkpoint and DINOv2 are both there already is left as it is (a
    benchmark's work folder keeps them). Returns {filename: path}. Random weights prove plumbing,
    never accuracy."""
    from .random_weights import write_published_files

    directory = Path(directory)
    paths = {}
    for model in models:
        checkpoint, dinov2 = (directory / item.filename for item in MODEL_FILES[model])
        if not (checkpoint.is_file() and dinov2.is_file()):
            written = write_published_files(directory, model, seed)
            checkpoint, dinov2 = Path(written["checkpoint"]), Path(written["dinov2"])
        paths[checkpoint.name], paths[dinov2.name] = checkpoint, dinov2
    return paths
