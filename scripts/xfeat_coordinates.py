#!/usr/bin/env python3
"""Where XFeat*'s matched points lie against exact ground truth, read the authors' way and
corrected (docs/ACCURACY.md, "XFeat* coordinates"; matching/xfeat.py ``_refine``).

  .venv/bin/python scripts/xfeat_coordinates.py affine     # bias per rotation / scale, both readings
  .venv/bin/python scripts/xfeat_coordinates.py fit        # the two-offset bias model, authors' reading
  .venv/bin/python scripts/xfeat_coordinates.py roadscene  # aligned visible/thermal pairs, both roles
  .venv/bin/python scripts/xfeat_coordinates.py stereo     # rendered cross-modal rig, inliers vs truth

``affine`` and ``fit`` match a roadscene_dev visible image with an affine copy of itself
(``cv2.warpAffine``, so the truth is exact) and average the error of the matches within 4 px of
the truth. ``roadscene`` reports the mean thermal-minus-visible offset of the matches within
3 px on the 56 aligned pairs, visible as image 0 and swapped. ``stereo`` runs the driving preset's
fit on the fixed-rig synthetic stereo sequence of seed 0 (30 frames) and reports the mean error
of the inliers away from depth edges that lie within 3 px of the truth. Data: ``--data``
(default ../shared/data/roadscene_dev). One line and exit 2 on a missing data folder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CASES = ((0, 1.0), (-20, 1.0), (20, 1.0), (0, 0.85), (0, 1.2), (30, 1.1))  # rotation (deg), scale


def _images(data: Path, step: slice):
    import cv2

    files = sorted((data / "visible").iterdir())[step]
    return [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]


def _affine_errors(matcher, img, deg, scale):
    """Matches of img with its affine copy: (kpts0 - truth, inverse map's linear part)."""
    import cv2

    h, w = img.shape
    A = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), deg, scale)
    m = matcher.match(img, cv2.warpAffine(img, A, (w, h), flags=cv2.INTER_LINEAR))
    Ai = cv2.invertAffineTransform(A)
    return m, Ai, m.kpts0 - (m.kpts1.astype(np.float64) @ Ai[:, :2].T + Ai[:, 2])


def affine(args) -> None:
    import cv2

    from matchanything_ros.matching.xfeat import XFeatMatcher

    imgs = _images(args.data, slice(1, None, 6))
    print(f"{len(imgs)} roadscene_dev visible images; mean error (x, y) px of the matches within 4 px; "
          "share within 1 px")
    for size in ((640, 512), (522, 300)):
        for exact in (False, True):
            m = XFeatMatcher(resolution=640, exact_coordinates=exact, clahe=False)
            for deg, scale in CASES:
                err = []
                for img in imgs:
                    e = _affine_errors(m, cv2.resize(img, size), deg, scale)[2]
                    err.append(e[np.linalg.norm(e, axis=1) < 4])
                e = np.concatenate(err)
                within = float(np.mean(np.linalg.norm(e, axis=1) < 1))
                print(f"{size[0]}x{size[1]} {'corrected' if exact else 'authors  '} rot {deg:4d} scale {scale:4.2f}: "
                      f"n {len(e)} mean ({e[:, 0].mean():+.2f}, {e[:, 1].mean():+.2f}) within 1 px {within:.2f}")


def fit(args) -> None:
    """k0 + a s0 = A^-1 (k1 + c s1): a, c in extraction px, s0 / s1 the points' 1 / scale."""
    import cv2
    import torch

    from matchanything_ros.matching.xfeat import XFeatMatcher

    m = XFeatMatcher(resolution=640, clahe=False)
    xf = m._xfeat  # the authors' arithmetic, spelled out to keep each point's extraction scale
    rows = []
    for deg, scale in ((0, 1.0), (-20, 1.0), (20, 1.0), (-10, 0.9), (10, 1.1), (0, 0.85), (0, 1.2), (30, 1.0)):
        for img in _images(args.data, slice(None, None, 4)):
            img = cv2.resize(img, (640, 512))
            h, w = img.shape
            A = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), deg, scale)
            Ai = cv2.invertAffineTransform(A)
            with torch.inference_mode():
                d0 = xf.detectAndComputeDense(m._tensor(img))
                d1 = xf.detectAndComputeDense(m._tensor(cv2.warpAffine(img, A, (w, h), flags=cv2.INTER_LINEAR)))
                i0, i1 = xf.batch_match(d0["descriptors"], d1["descriptors"])[0]
                logits = xf.net.fine_matcher(torch.cat([d0["descriptors"][0][i0], d1["descriptors"][0][i1]], -1))
                good = (torch.softmax(logits * 3, -1).max(-1)[0] > 0.25).numpy()
                off = xf.subpix_softmax2d(logits.view(-1, 8, 8)).numpy()
            s0, s1 = d0["scales"][0][i0].numpy(), d1["scales"][0][i1].numpy()
            k0 = d0["keypoints"][0][i0].numpy() + off * s0[:, None]
            k1 = d1["keypoints"][0][i1].numpy()
            for p0, p1, a, b in zip(k0[good], k1[good], s0[good], s1[good]):
                rows.append((p0, p1, a, b, Ai))
    k0 = np.array([r[0] for r in rows]); k1 = np.array([r[1] for r in rows])
    s0 = np.array([r[2] for r in rows]); s1 = np.array([r[3] for r in rows])
    Ai = np.array([r[4] for r in rows]); L = Ai[:, :, :2]
    e = k0 - (np.einsum("nij,nj->ni", L, k1) + Ai[:, :, 2])
    sel = np.linalg.norm(e, axis=1) < 4
    for _ in range(3):  # refit on the matches the current model puts within 4 px
        n = int(sel.sum())
        M = np.zeros((2 * n, 4))
        M[0::2, 0] = M[1::2, 1] = s0[sel]
        M[0::2, 2:] = -s1[sel, None] * L[sel, 0, :]
        M[1::2, 2:] = -s1[sel, None] * L[sel, 1, :]
        p = np.linalg.lstsq(M, -e[sel].reshape(-1), rcond=None)[0]
        moved = (k0 + p[:2] * s0[:, None]) - (np.einsum("nij,nj->ni", L, k1 + p[2:] * s1[:, None]) + Ai[:, :, 2])
        sel = np.linalg.norm(moved, axis=1) < 4
    print(f"{n} matches: a (image 0) = ({p[0]:.2f}, {p[1]:.2f}), c (image 1) = ({p[2]:.2f}, {p[3]:.2f}) extraction px")


def roadscene(args) -> None:
    from matchanything_ros.evaluation.homography_protocol import load_aligned_pairs
    from matchanything_ros.matching.base import to_gray_uint8
    from matchanything_ros.matching.xfeat import XFeatMatcher

    import cv2

    pairs = load_aligned_pairs(args.data)
    for exact in (False, True):
        m = XFeatMatcher(resolution=640, exact_coordinates=exact)
        for swap in (False, True):
            off = []
            for pair in pairs:
                v, t = to_gray_uint8(pair.visible), to_gray_uint8(pair.thermal)
                t = cv2.resize(t, v.shape[::-1]) if t.shape != v.shape else t
                for th in (t, 255 - t):
                    r = m.match(th, v) if swap else m.match(v, th)
                    d = (r.kpts0 - r.kpts1) if swap else (r.kpts1 - r.kpts0)
                    off.append(d[np.linalg.norm(d, axis=1) < 3])
            d = np.concatenate(off)
            print(f"{'corrected' if exact else 'authors  '} {'thermal' if swap else 'visible'} as image 0: n {len(d)} "
                  f"mean thermal - visible ({d[:, 0].mean():+.2f}, {d[:, 1].mean():+.2f}) px")


def stereo(args) -> None:
    import yaml

    from matchanything_ros.pipeline import Pipeline, PipelineConfig
    from matchanything_ros.synthetic import make_stereo_pair

    preset = yaml.safe_load((REPO / "config" / "driving_rig.yaml").read_text())["/**"]["ros__parameters"]
    keep = {k: preset[k] for k in ("resolution", "max_matches", "geometry", "ransac_threshold", "min_matches",
                                   "polarity", "thermal")}
    first = make_stereo_pair(0, size=(640, 512))
    rig = (first.K0, first.K1, first.R, first.info["thermal_centre_in_visible"])
    pairs = [first] + [make_stereo_pair(i, size=(640, 512), rig=rig) for i in range(1, 30)]
    for exact in (False, True):
        pipe = Pipeline(PipelineConfig.from_dict({**keep, "model": "xfeat"}))
        pipe.matcher.exact_coordinates = exact
        err = []
        for p in pairs:
            r = pipe.process(p.visible, p.thermal, p.K0, p.K1)
            inl = np.asarray(r.geometry.inliers, bool)
            k0 = r.matches.kpts0[inl]
            e = r.matches.kpts1[inl] - p.visible_to_thermal(k0)
            c = np.clip(np.rint(k0).astype(int), 1, [p.depth0.shape[1] - 2, p.depth0.shape[0] - 2])
            win = np.stack([p.depth0[c[:, 1] + dy, c[:, 0] + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
            smooth = (win.max(0) - win.min(0)) / win.min(0) < 0.02  # away from depth edges
            err.append(e[smooth & (np.linalg.norm(e, axis=1) <= 3)])
        e = np.concatenate(err)
        print(f"{'corrected' if exact else 'authors  '}: {len(e)} inliers within 3 px of the truth, "
              f"mean error ({e[:, 0].mean():+.2f}, {e[:, 1].mean():+.2f}) px")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("study", choices=("affine", "fit", "roadscene", "stereo"))
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "roadscene_dev")
    args = p.parse_args()
    if args.study != "stereo" and not (args.data / "visible").is_dir():
        print(f"xfeat_coordinates: no roadscene_dev data at {args.data} (--data DIR)", file=sys.stderr)
        return 2
    {"affine": affine, "fit": fit, "roadscene": roadscene, "stereo": stereo}[args.study](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
