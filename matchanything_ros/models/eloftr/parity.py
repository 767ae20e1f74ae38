"""Compare MatchAnything-ELoFTR with the authors' own outputs (the reference pack).

The pack (``shared/reference/matchanything_eloftr``: README.md, manifest.json, reference.npz,
weights.ckpt) holds what the authors' MatchAnything code computes with seeded random weights on
RoadScene pairs, in two modes: ``demo`` (the Space's path: every pair above the threshold) and
``mnn`` (EfficientLoFTR's mutual-nearest-neighbour rule). :func:`run_parity` runs our matcher
end to end on the same image files (the Space's preprocessing, fixed 640x480, the pack's
threshold) through each backend and compares the final matches in original-image pixels.

Tolerances come from the pack's noise floor, the fp32-vs-fp64 difference of the authors' own
network (coarse confidence <= 8.9e-5, keypoints <= 6.1e-5 px): about 10x that, i.e.
:data:`KPT_TOL` px for a match to count as common and :data:`CONF_TOL` for its confidence.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: a reference match is "common" when one of ours lies within this many original pixels in all
#: four coordinates (the pack's suggested original-pixel tolerance, ~30x its 6.1e-5 px floor)
KPT_TOL = 2e-3
#: confidences of common matches must agree to this (~10x the 8.9e-5 floor)
CONF_TOL = 1e-3
#: share of the reference matches that may be missed (and of ours that may be extra): with the
#: pack's random weights the fine stage's dual softmax is flat (top-2 gap ~8e-5), so fp32 noise
#: can flip a near-tie to a neighbouring pixel (1 of 9984 matches in the pack's cases); a real
#: divergence moves ~1 % or more (test/test_eloftr_authors_parity.py)
FLIP_SHARE = 1e-3
MODES = ("demo", "mnn")


class ParityError(RuntimeError):
    """The reference pack is missing or incomplete."""


@dataclass
class Pack:
    folder: Path
    manifest: dict
    arrays: dict
    data_dir: Path

    @property
    def weights(self) -> Path:
        return self.folder / "weights.ckpt"

    @property
    def threshold(self) -> float:
        return float(self.manifest["config"]["match_coarse"]["thr"])

    @property
    def network_size(self) -> tuple[int, int]:
        """(h, w) the Space resizes every image to."""
        pre = self.manifest["config"]["preprocessing_conf (match_dense.confs)"]
        return int(pre["height"]), int(pre["width"])

    @property
    def cases(self) -> list[str]:
        return list(self.manifest["cases"])

    def get(self, case: str, name: str, mode: str | None = None) -> np.ndarray:
        return self.arrays[f"{case}.{mode}.{name}" if mode else f"{case}.{name}"]

    def images(self, case: str) -> tuple[np.ndarray, np.ndarray]:
        """The case's (visible, thermal) files read as 8-bit BGR, as the Space receives them."""
        import cv2

        info = self.manifest["cases"][case]
        out = []
        for rel in (info["visible"], info["thermal"]):
            path = self.data_dir / rel if "/" in rel else self.folder / rel
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise ParityError(f"{path}: image of case {case} missing or unreadable")
            out.append(image)
        return out[0], out[1]


def load_pack(folder: str | Path, data_dir: str | Path | None = None) -> Pack:
    """Read a reference pack; ``data_dir`` defaults to ``<folder>/../../data/roadscene_dev``."""
    folder = Path(folder)
    needed = [folder / n for n in ("manifest.json", "reference.npz", "weights.ckpt")]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise ParityError(f"reference pack incomplete: missing {', '.join(missing)}")
    data_dir = Path(data_dir) if data_dir else folder / ".." / ".." / "data" / "roadscene_dev"
    if not data_dir.is_dir():
        raise ParityError(f"RoadScene images not found at {data_dir} (pass the data folder)")
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParityError(f"{folder / 'manifest.json'} is not valid JSON: {exc}") from None
    problem = _manifest_problem(manifest)
    if problem:
        raise ParityError(f"{folder / 'manifest.json'}: {problem}")
    try:
        with np.load(folder / "reference.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise ParityError(f"{folder / 'reference.npz'} is not a readable .npz of arrays: {exc}") from None
    return Pack(folder, manifest, arrays, data_dir.resolve())


def _manifest_problem(manifest) -> str | None:
    """What a reference pack's manifest lacks of what the parity command reads, or None."""
    def get(*keys):
        node = manifest
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                raise KeyError(".".join(keys))
            node = node[key]
        return node

    try:
        float(get("config", "match_coarse", "thr"))
        get("config", "preprocessing_conf (match_dense.confs)")
        str(get("sources", "authors_code", "commit"))
        cases = get("cases")
    except KeyError as exc:
        return f"no {exc.args[0]}"
    except (TypeError, ValueError):
        return "config.match_coarse.thr is not a number"
    if not isinstance(cases, dict) or not cases:
        return "cases is not a non-empty mapping"
    for name, info in cases.items():
        if not isinstance(info, dict) or not all(isinstance(info.get(k), str) for k in ("visible", "thermal")):
            return f"case {name!r} names no visible and thermal image"
    return None


def compare(ours: tuple[np.ndarray, np.ndarray, np.ndarray], ref: tuple[np.ndarray, np.ndarray, np.ndarray],
            tol: float = KPT_TOL) -> dict:
    """Match lists (kpts0 (N, 2), kpts1 (N, 2), conf (N,)) -> counts and differences.

    A reference match is common when our nearest match (max-norm over the four coordinates) is
    within ``tol``; differences are the maxima over common matches."""
    a = np.concatenate([ours[0], ours[1]], axis=1).astype(np.float64)
    b = np.concatenate([ref[0], ref[1]], axis=1).astype(np.float64)
    out = {"ours": len(a), "authors": len(b), "common": 0, "max_kpt_diff": float("nan"), "max_conf_diff": float("nan")}
    if not len(a) or not len(b):
        return out
    nearest = np.empty(len(b), np.int64)
    dist = np.empty(len(b))
    for start in range(0, len(b), 512):  # chunks: (512, N) distance blocks
        block = np.abs(b[start:start + 512, None, :] - a[None, :, :]).max(axis=-1)
        nearest[start:start + 512] = block.argmin(axis=1)
        dist[start:start + 512] = block.min(axis=1)
    common = dist <= tol
    out["common"] = int(common.sum())
    if common.any():
        out["max_kpt_diff"] = float(dist[common].max())
        out["max_conf_diff"] = float(np.abs(ours[2][nearest[common]].astype(np.float64) - ref[2][common]).max())
    return out


def run_parity(pack: Pack, backends=("torch", "onnxruntime"), modes=("demo",), cases=None, work_dir=None,
               max_matches: int = 3840) -> list[dict]:
    """Our matcher end to end on every case, per backend and mode: one row per run."""
    from .matcher import ELoFTRMatcher

    rows = []
    for backend in backends:
        for mode in modes:
            matcher = ELoFTRMatcher(
                weights=pack.weights, backend=backend, device="cpu", max_matches=max_matches,
                match_threshold=pack.threshold, match_rule="mnn" if mode == "mnn" else "mtd",
                fixed_size=pack.network_size, download=False, cache_dir=work_dir,
            )
            for case in cases or pack.cases:
                got = matcher.match(*pack.images(case))
                ref = (pack.get(case, "mkpts0", mode), pack.get(case, "mkpts1", mode), pack.get(case, "mconf", mode))
                row = {"backend": backend, "mode": mode, "case": case, **compare((got.kpts0, got.kpts1, got.scores), ref)}
                row["candidates"] = got.info["candidates"]
                row["truncated"] = got.info["truncated"]
                rows.append(row)
    return rows


def row_problem(row: dict) -> str | None:
    """Why one run is not at parity with the authors' outputs, or None: every reference match
    found and no other (within KPT_TOL px; FLIP_SHARE of them may flip), confidences within CONF_TOL, no candidate dropped
    for want of output slots (K)."""
    if row["truncated"]:
        return f"{row['truncated']} candidates beyond K (raise --max-matches)"
    slack = math.ceil(FLIP_SHARE * row["authors"])
    if row["authors"] - row["common"] > slack or row["ours"] - row["common"] > slack:
        return f"{row['common']} common of {row['authors']} reference and {row['ours']} own matches"
    if row["common"] and not row["max_kpt_diff"] <= KPT_TOL:
        return f"keypoints differ by {row['max_kpt_diff']:.2e} px > {KPT_TOL:g}"
    if row["common"] and not row["max_conf_diff"] <= CONF_TOL:
        return f"confidences differ by {row['max_conf_diff']:.2e} > {CONF_TOL:g}"
    return None


def format_rows(rows: list[dict]) -> str:
    lines = ["| backend | mode | case | ours | authors | common | max kpt diff px | max conf diff | truncated | parity |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        problem = row_problem(r)
        lines.append(f"| {r['backend']} | {r['mode']} | {r['case']} | {r['ours']} | {r['authors']} | {r['common']} | "
                     f"{r['max_kpt_diff']:.2e} | {r['max_conf_diff']:.2e} | {r['truncated']} | "
                     f"{'PASS' if problem is None else 'FAIL: ' + problem} |")
    return "\n".join(lines)
