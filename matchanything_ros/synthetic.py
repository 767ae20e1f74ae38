"""Procedurally rendered visible/thermal pairs with exact ground truth (no data, no download).

A latent scene is a set of regions, each with a *material*: colour, albedo texture and shading
for the visible camera, temperature and emissivity for the thermal camera. The two modalities share
region boundaries but not their appearance: contrast is kept, inverted or unrelated per region,
visible-only paint/text and fine texture are absent in thermal, thermal has heat blobs the visible
image lacks, thermal is blurred (heat diffusion + optics) and carries fixed-pattern and temporal
noise, and it is written as 16-bit counts on a realistic offset (~20000-30000).

Two kinds of pair:

* planar (:func:`make_planar_pair`): a textured plane seen by two homographies; ground truth ``H``
  maps visible pixels to thermal pixels exactly.
* stereo (:func:`make_stereo_pair`): a piecewise-planar 3-D scene (ground, a back wall, boxes) seen
  by two pinhole cameras (K0, K1, R, t); both images are rendered by ray casting every pixel, so
  ``depth0`` and the reprojection ``K1 (R depth0 K0^-1 x + t)`` are exact.

Everything is pure numpy/OpenCV and deterministic per seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = ["SyntheticPair", "make_planar_pair", "make_stereo_pair"]


@dataclass
class SyntheticPair:
    """A visible/thermal pair with its exact ground truth.

    visible: (H, W, 3) uint8 BGR. thermal: (H1, W1) uint16 counts. kind: "planar" or "stereo".
    H: 3x3 homography, visible pixel -> thermal pixel (planar only). K0, K1: intrinsics of the
    visible / thermal camera (stereo; None for planar). R, t: OpenCV relative pose, X1 = R X0 + t
    in metres (stereo). depth0: (H, W) float32 z-depth in metres of every visible pixel (stereo).
    """

    visible: np.ndarray
    thermal: np.ndarray
    kind: str
    seed: int
    H: np.ndarray | None = None
    K0: np.ndarray | None = None
    K1: np.ndarray | None = None
    R: np.ndarray | None = None
    t: np.ndarray | None = None
    depth0: np.ndarray | None = None
    info: dict = field(default_factory=dict, repr=False)

    def visible_to_thermal(self, points: np.ndarray) -> np.ndarray:
        """Map visible pixels (N, 2) to thermal pixels with the ground truth.

        Planar: exact for any point. Stereo: uses ``depth0`` at the nearest pixel, so it is exact
        at integer pixel coordinates (pixel centres)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if self.kind == "planar":
            return cv2.perspectiveTransform(pts[None], self.H)[0]
        cols = np.clip(np.rint(pts[:, 0]).astype(int), 0, self.depth0.shape[1] - 1)
        rows = np.clip(np.rint(pts[:, 1]).astype(int), 0, self.depth0.shape[0] - 1)
        return reproject(pts, self.depth0[rows, cols], self.K0, self.K1, self.R, self.t)

    def warp_thermal_to_visible(self) -> np.ndarray:
        """The thermal image resampled into the visible camera with the ground truth (uint16,
        visible size; 0 where the thermal camera does not see). Stereo ignores occlusions."""
        h, w = self.visible.shape[:2]
        if self.kind == "planar":
            return cv2.warpPerspective(
                self.thermal, self.H, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_CONSTANT, borderValue=0,
            )
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        p1 = reproject(np.stack([u.ravel(), v.ravel()], 1), self.depth0.ravel(), self.K0, self.K1, self.R, self.t)
        map_x = p1[:, 0].reshape(h, w).astype(np.float32)
        map_y = p1[:, 1].reshape(h, w).astype(np.float32)
        return cv2.remap(self.thermal, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def reproject(points0, depth0, K0, K1, R, t) -> np.ndarray:
    """Visible pixels (N, 2) with z-depths (N,) -> thermal pixels (N, 2): K1 (R X0 + t)."""
    pts = np.asarray(points0, dtype=np.float64).reshape(-1, 2)
    X0 = np.linalg.solve(K0, np.c_[pts, np.ones(len(pts))].T) * np.asarray(depth0, dtype=np.float64).reshape(1, -1)
    x1 = K1 @ (R @ X0 + np.asarray(t, dtype=np.float64).reshape(3, 1))
    return (x1[:2] / x1[2:]).T


# --------------------------------------------------------------------------------------------
# latent scene: a material map rendered into a visible reflectance and a thermal radiance canvas


def _noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth value noise in [-1, 1] with feature size ~cell px (bicubic upsampled lattice)."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    lattice = rng.uniform(-1.0, 1.0, (gh, gw)).astype(np.float32)
    return np.clip(cv2.resize(lattice, (w, h), interpolation=cv2.INTER_CUBIC), -1.0, 1.0)


def _random_shape(rng: np.random.Generator, w: int, h: int) -> tuple[str, np.ndarray]:
    """One random region outline: polygon vertices (int32) or a thick polyline."""
    size = float(np.exp(rng.uniform(np.log(0.03), np.log(0.3)))) * min(w, h)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    kind = rng.choice(["rect", "ellipse", "poly", "line"], p=[0.35, 0.2, 0.3, 0.15])
    if kind == "rect":
        a, b = size * rng.uniform(0.3, 1.0), size * rng.uniform(0.3, 1.0)
        box = cv2.boxPoints(((cx, cy), (a, b), rng.uniform(-30, 30)))
        return "fill", box.astype(np.int32)
    if kind == "ellipse":
        pts = cv2.ellipse2Poly((int(cx), int(cy)), (int(size / 2) + 1, int(size * rng.uniform(0.2, 0.5)) + 1),
                               int(rng.uniform(0, 180)), 0, 360, 10)
        return "fill", pts.astype(np.int32)
    if kind == "poly":
        n = int(rng.integers(3, 8))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = size * rng.uniform(0.25, 0.6, n)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
        return "fill", pts.astype(np.int32)
    n = int(rng.integers(2, 4))
    pts = np.stack([cx + np.cumsum(rng.uniform(-size, size, n)), cy + np.cumsum(rng.uniform(-size, size, n))], 1)
    return "line", pts.astype(np.int32)


def _latent_scene(rng: np.random.Generator, w: int, h: int, n_regions: int | None = None):
    """Render a (h, w) latent scene: visible reflectance (h, w, 3) float32 in [0, 1] and thermal
    radiance (h, w) float32 in kelvin-like units."""
    n_regions = n_regions or int(rng.integers(90, 150) * max(0.5, w * h / (800 * 640)))
    labels = np.zeros((h, w), np.int32)
    for i in range(1, n_regions + 1):
        how, pts = _random_shape(rng, w, h)
        if how == "fill":
            cv2.fillPoly(labels, [pts], i)
        else:
            cv2.polylines(labels, [pts], False, i, int(rng.integers(3, 14)))
    n = n_regions + 1

    # Materials. Visible: luminance, tint, texture strength. Thermal: temperature follows the
    # luminance (sun-heated dark paint), its inverse (cool bright surfaces, warm dark shadows) or
    # nothing; emissivity < 1 reflects the cold sky (metal, glass look cold).
    lum = rng.uniform(0.08, 0.92, n)
    tint = rng.uniform(0.6, 1.4, (n, 3))
    colour = np.clip(lum[:, None] * tint, 0.0, 1.0).astype(np.float32)
    vis_tex = (rng.uniform(0.0, 0.35, n) * (rng.random(n) < 0.8)).astype(np.float32)
    relation = rng.choice([1.0, -1.0, 0.0], n, p=[0.35, 0.35, 0.3])
    temp = 290.0 + 18.0 * relation * (lum - 0.5) + np.where(relation == 0, rng.uniform(-9, 9, n), 0.0)
    temp += rng.normal(0, 1.5, n)
    hot = rng.random(n) < 0.06  # engines, people, exhausts: bright in thermal only
    temp[hot] += rng.uniform(10, 30, hot.sum())
    emissivity = np.where(rng.random(n) < 0.1, rng.uniform(0.2, 0.5, n), rng.uniform(0.85, 0.98, n))
    sky = 260.0
    radiance = (emissivity * temp + (1.0 - emissivity) * sky).astype(np.float32)
    th_tex = (rng.uniform(0.0, 2.5, n) * rng.choice([1.0, -1.0], n)).astype(np.float32)  # K per unit

    # Texture: a mid-frequency field shared by both modalities (structure: weathering, panels)
    # with a per-region sign and weight, plus fine visible-only grain.
    shared = 0.6 * _noise(rng, h, w, 24.0) + 0.4 * _noise(rng, h, w, 9.0)
    grain = _noise(rng, h, w, 3.0)
    shading = 1.0 + 0.35 * _noise(rng, h, w, max(w, h) / 2.0)  # illumination, not in thermal
    modulation = shading * (1.0 + vis_tex[labels] * (0.6 * shared + 0.4 * grain))
    vis = colour[labels] * modulation[..., None]

    # Visible-only paint: lane markings, text, thin lines.
    paint = np.zeros((h, w), np.uint8)  # putText draws on 8-bit only
    for _ in range(int(rng.integers(8, 20) * max(1.0, w * h / (800 * 640)))):
        p0 = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        if rng.random() < 0.5:
            text = "".join(rng.choice(list("ABCDEFGHKLMNPRSTUVXZ0123456789"), int(rng.integers(2, 7))))
            cv2.putText(paint, text, p0, cv2.FONT_HERSHEY_SIMPLEX, rng.uniform(0.6, 2.0), 255, int(rng.integers(1, 4)))
        else:
            p1 = (p0[0] + int(rng.uniform(-150, 150)), p0[1] + int(rng.uniform(-150, 150)))
            cv2.line(paint, p0, p1, 255, int(rng.integers(1, 5)))
    paint_colour = rng.uniform(0.0, 1.0, 3).astype(np.float32)
    mask = paint > 0
    vis[mask] = 0.2 * vis[mask] + 0.8 * paint_colour

    thermal = radiance[labels] + th_tex[labels] * shared
    thermal += 3.0 * _noise(rng, h, w, max(w, h) / 3.0)  # slow gradients (wind, sun, shade)
    blobs = np.zeros((h, w), np.float32)  # warm blobs with no visible counterpart
    for _ in range(int(rng.integers(3, 9))):
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        cv2.circle(blobs, c, int(rng.uniform(5, 30)), float(rng.uniform(3, 12)), -1)
    thermal += cv2.GaussianBlur(blobs, (0, 0), 5.0)
    thermal = cv2.GaussianBlur(thermal, (0, 0), rng.uniform(0.5, 1.0))  # heat diffusion
    return np.clip(vis, 0.0, 1.0), thermal


# --------------------------------------------------------------------------------------------
# sensor models


def _radial(h: int, w: int) -> np.ndarray:
    """Squared distance from the image centre, 1 at the corners (vignetting profiles)."""
    yy = ((np.arange(h, dtype=np.float32) - h / 2) ** 2)[:, None]
    xx = ((np.arange(w, dtype=np.float32) - w / 2) ** 2)[None, :]
    return (xx + yy) / np.float32(0.25 * (w * w + h * h))


def _visible_sensor(rng: np.random.Generator, reflectance: np.ndarray, noise: float) -> np.ndarray:
    """Reflectance (h, w, 3) in [0, 1] -> uint8 BGR: exposure, vignetting, gamma, optics, noise."""
    h, w = reflectance.shape[:2]
    gain = (np.float32(rng.uniform(0.8, 1.15)) * (1.0 - 0.25 * _radial(h, w)))[..., None]
    img = np.power(np.clip(reflectance * gain, 0, 1), np.float32(1 / 2.2)) * np.float32(255.0)
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    if noise > 0:
        img += np.float32(2.0 * noise) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _thermal_sensor(rng: np.random.Generator, radiance: np.ndarray, noise: float) -> np.ndarray:
    """Radiance (h, w) -> uint16 counts: optics blur, offset ~20000-30000, gain, fixed-pattern
    column/pixel non-uniformity, narcissus vignetting, temporal noise."""
    h, w = radiance.shape
    img = cv2.GaussianBlur(radiance, (0, 0), rng.uniform(0.6, 1.0))
    gain = np.float32(rng.uniform(40.0, 90.0))  # counts per kelvin
    counts = np.float32(rng.uniform(20000, 30000)) + gain * (img - np.float32(290.0))
    counts += np.float32(rng.uniform(-1, 1) * 150.0) * _radial(h, w)
    if noise > 0:
        f = np.float32(noise)
        counts *= 1.0 + f * 0.004 * rng.standard_normal((h, w), dtype=np.float32)  # pixel gain
        counts += f * 12.0 * rng.standard_normal((1, w), dtype=np.float32)  # column pattern
        counts += f * 10.0 * rng.standard_normal((h, w), dtype=np.float32)  # temporal noise
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16)


# --------------------------------------------------------------------------------------------
# planar pairs


def _view_corners(rng, view_wh, rotation_deg, scale_range, perspective, shift) -> np.ndarray:
    """Where a view's corners lie on the scene plane (origin at the plane's centre): a rotated,
    scaled, shifted and jittered rectangle."""
    w, h = view_wh
    s = rng.uniform(*scale_range)
    a = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg))
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    half = np.array([[-w, -h], [w, -h], [w, h], [-w, h]], np.float64) / 2.0 * s
    jitter = rng.uniform(-perspective, perspective, (4, 2)) * np.array([w, h]) * s
    centre = rng.uniform(-shift, shift, 2) * np.array([w, h])
    return (half + jitter) @ rot.T + centre


def _plane_to_view(corners: np.ndarray, view_wh) -> np.ndarray:
    w, h = view_wh
    dst = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    return cv2.getPerspectiveTransform(corners.astype(np.float32), dst).astype(np.float64)


def make_planar_pair(
    seed: int,
    size: tuple[int, int] = (640, 512),
    *,
    thermal_size: tuple[int, int] | None = None,
    rotation_deg: float = 15.0,
    scale_range: tuple[float, float] = (0.85, 1.15),
    perspective: float = 0.06,
    noise: float = 1.0,
) -> SyntheticPair:
    """A textured plane seen by the visible and the thermal camera.

    size / thermal_size: (width, height) of the visible / thermal image (thermal defaults to size).
    rotation_deg, scale_range, perspective: how different the thermal view is from the visible
    one (in-plane rotation, relative scale, corner jitter as a fraction of the size).
    noise: sensor-noise multiplier (0 = noise-free). Ground truth: ``pair.H`` (visible -> thermal).
    """
    w, h = _check_size(size, "size")
    tw, th = _check_size(thermal_size or size, "thermal_size")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    corners_v = _view_corners(rng, (w, h), 4.0, (0.9, 1.05), 0.03, 0.03)
    corners_t = _view_corners(rng, (tw, th), rotation_deg, scale_range, perspective, 0.08)
    # The scene canvas just covers both views (plus a margin for the blurs).
    both = np.vstack([corners_v, corners_t])
    origin = np.floor(both.min(0)) - 16
    cw, ch = (np.ceil(both.max(0)) + 16 - origin).astype(int)
    reflect, radiance = _latent_scene(rng, int(cw), int(ch))
    H_v = _plane_to_view(corners_v - origin, (w, h))
    H_t = _plane_to_view(corners_t - origin, (tw, th))
    flags = cv2.INTER_LINEAR
    vis_ref = cv2.warpPerspective(reflect, H_v, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT101)
    th_rad = cv2.warpPerspective(radiance, H_t, (tw, th), flags=flags, borderMode=cv2.BORDER_REFLECT101)
    H = H_t @ np.linalg.inv(H_v)
    H /= H[2, 2]
    return SyntheticPair(
        visible=_visible_sensor(rng, vis_ref, noise),
        thermal=_thermal_sensor(rng, th_rad, noise),
        kind="planar",
        seed=seed,
        H=H,
        info={"H_scene_to_visible": H_v, "H_scene_to_thermal": H_t},
    )


# --------------------------------------------------------------------------------------------
# stereo pairs: a piecewise-planar scene rendered by ray casting


class _Scene:
    """Ground plane, a (slanted) back wall and boxes standing on the ground, in the visible
    camera's frame (x right, y down, z forward, metres). Every surface samples a shared texture
    atlas with its own offset and texels per metre (about one texel per visible pixel)."""

    def __init__(self, rng: np.random.Generator, atlas_side: int, n_boxes: int, focal: float):
        self.cam_height = rng.uniform(1.2, 1.8)
        wall_angle = np.deg2rad(rng.uniform(-20, 20))
        self.wall_n = np.array([np.sin(wall_angle), 0.0, np.cos(wall_angle)])
        self.wall_d = rng.uniform(14.0, 24.0)  # wall: n . X = d
        self.boxes = []
        for _ in range(n_boxes):
            half = np.array([rng.uniform(0.4, 1.8), rng.uniform(0.4, 1.4), rng.uniform(0.4, 1.8)])
            z = rng.uniform(4.0, 12.0)
            x = rng.uniform(-0.5, 0.5) * z
            centre = np.array([x, self.cam_height - half[1], z])
            yaw = rng.uniform(-np.pi / 4, np.pi / 4)
            rot = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
            self.boxes.append((centre, half, rot))
        # Surfaces: 0 ground, 1 wall, then 6 faces per box. Texture coordinates are metres from
        # the surface's own origin; keep each surface inside the atlas (no mirrored repeats).
        n_surfaces = 2 + 6 * n_boxes
        self.texels_per_m = np.empty(n_surfaces)
        self.offsets = np.empty((n_surfaces, 2))
        a = float(atlas_side)
        self.texels_per_m[0] = 30.0  # ground, coords (x, z): x in +-15 m, z in 0..25 m
        self.offsets[0] = (a / 2 + rng.uniform(-50, 50), rng.uniform(0, max(1.0, a - 25 * 30.0)))
        self.texels_per_m[1] = 1.2 * focal / self.wall_d  # wall, coords (along, y), centred
        self.offsets[1] = (a / 2 + rng.uniform(-50, 50), a * 0.7 + rng.uniform(-50, 50))
        for b, (centre, half, _) in enumerate(self.boxes):
            k = 1.2 * focal / centre[2]
            ids = slice(2 + 6 * b, 8 + 6 * b)
            self.texels_per_m[ids] = k
            extent = 2 * k * half.max()
            self.offsets[ids] = rng.uniform(0, max(1.0, a - extent), (6, 2))
        self.light = np.array([0.3, -0.8, -0.5]) / np.linalg.norm([0.3, -0.8, -0.5])
        self.surface_temp = rng.normal(0.0, 3.0, n_surfaces)  # sun-heated or shaded faces

    def intersect(self, origin: np.ndarray, dirs: np.ndarray, grid: tuple | None = None):
        """Nearest hit of rays origin + s * dirs (dirs (N, 3), not normalised). Returns
        (s (N,), surface id (N,), texture coords in metres (N, 2), normal (N, 3)); s = inf and
        id -1 where nothing is hit. ``grid=(M, w, h)`` says the rays are M @ (u, v, 1) for a
        row-major pixel grid, which lets boxes test only the pixels they can cover."""
        n = len(dirs)
        best = np.full(n, np.inf)
        surf = np.full(n, -1)
        uv = np.zeros((n, 2))
        normal = np.zeros((n, 3))

        def keep(idx, s, sid, coords, nrm):
            better = (s > 1e-6) & (s < best[idx])
            idx = idx[better]
            best[idx] = s[better]
            surf[idx] = sid if np.isscalar(sid) else sid[better]
            uv[idx] = coords[better]
            normal[idx] = nrm if nrm.ndim == 1 else nrm[better]

        def plane(normal_vec, d):
            denom = dirs @ normal_vec
            ok = np.abs(denom) > 1e-12
            s = np.full(n, -1.0)
            s[ok] = (d - origin @ normal_vec) / denom[ok]
            return s

        everything = np.arange(n)
        s = plane(np.array([0.0, 1.0, 0.0]), self.cam_height)  # ground: y = cam_height
        p = origin + s[:, None] * dirs
        keep(everything, s, 0, p[:, [0, 2]], np.array([0.0, -1.0, 0.0]))
        s = plane(self.wall_n, self.wall_d)
        p = origin + s[:, None] * dirs
        along = np.array([self.wall_n[2], 0.0, -self.wall_n[0]])
        keep(everything, s, 1, np.stack([p @ along, p[:, 1]], 1), -self.wall_n)

        norms = None if grid is not None else np.linalg.norm(dirs, axis=1)
        for b, (centre, half, rot) in enumerate(self.boxes):
            # Only rays that pass the box's bounding sphere need the slab test.
            idx = self._box_candidates(origin, dirs, norms, centre, half, rot, grid)
            if idx.size == 0:
                continue
            o = rot.T @ (origin - centre)
            d = dirs[idx] @ rot  # rows: rot.T @ dir, the box frame
            with np.errstate(divide="ignore", invalid="ignore"):
                t1 = (-half - o) / d
                t2 = (half - o) / d
            lo = np.fmin(t1, t2)
            s_in = lo.max(axis=1)
            s_out = np.fmax(t1, t2).min(axis=1)
            axis = lo.argmax(axis=1)
            s = np.where((s_out >= s_in) & np.isfinite(s_in), s_in, -1.0)
            p = o + s[:, None] * d
            rows = np.arange(len(idx))
            sign = np.sign(p[rows, axis])
            others = np.array([[1, 2], [0, 2], [0, 1]])[axis]
            coords = np.stack([p[rows, others[:, 0]], p[rows, others[:, 1]]], 1) + half[others]
            local_n = np.zeros((len(idx), 3))
            local_n[rows, axis] = sign
            keep(idx, s, 2 + 6 * b + 2 * axis + (sign > 0), coords, local_n @ rot.T)
        return best, surf, uv, normal

    @staticmethod
    def _box_candidates(origin, dirs, norms, centre, half, rot, grid) -> np.ndarray:
        """Indices of the rays that may hit a box: its projected corners' pixel bounding box
        (grid rays, box in front), else the rays through its bounding sphere."""
        if grid is not None:
            M, w, h = grid
            corners = centre + (np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T * half) @ rot.T
            q = np.linalg.solve(M, (corners - origin).T)
            if np.all(q[2] > 1e-6):
                uv = q[:2] / q[2]
                u0, v0 = np.maximum(np.floor(uv.min(1)) - 1, 0).astype(int)
                u1, v1 = np.minimum(np.ceil(uv.max(1)) + 1, [w - 1, h - 1]).astype(int)
                if u0 > u1 or v0 > v1:
                    return np.zeros(0, int)
                rows, cols = np.mgrid[v0 : v1 + 1, u0 : u1 + 1]
                return (rows * w + cols).ravel()
            norms = np.linalg.norm(dirs, axis=1)
        rel = centre - origin
        dist = np.linalg.norm(np.cross(dirs, rel), axis=1) / norms
        return np.nonzero((dist <= np.linalg.norm(half) + 1e-6) & (dirs @ rel > 0))[0]

    def render(self, origin, dirs, shape, reflect_atlas, radiance_atlas, M=None):
        """Ray-cast one camera: returns reflectance (h, w, 3), radiance (h, w), ray parameter."""
        h, w = shape
        s, surf, uv, normal = self.intersect(origin, dirs, None if M is None else (M, w, h))
        if np.any(surf < 0):
            raise RuntimeError("synthetic scene: a ray hit nothing (scene construction bug)")
        tex = self.offsets[surf] + uv * self.texels_per_m[surf][:, None]
        map_x = tex[:, 0].reshape(h, w).astype(np.float32)
        map_y = tex[:, 1].reshape(h, w).astype(np.float32)
        remap = dict(interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        reflect = cv2.remap(reflect_atlas, map_x, map_y, **remap)
        radiance = cv2.remap(radiance_atlas, map_x, map_y, **remap)
        lambert = np.clip(normal @ self.light, 0.0, 1.0).reshape(h, w).astype(np.float32)
        reflect *= (0.45 + 0.55 * lambert)[..., None]  # sun shading: visible only
        radiance += self.surface_temp[surf].reshape(h, w).astype(np.float32)
        return reflect, radiance, s


def _rotation(rng, max_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    rvec = axis * np.deg2rad(rng.uniform(-max_deg, max_deg))
    return cv2.Rodrigues(rvec)[0]


def _intrinsics(rng, w: int, h: int, fov_range: tuple[float, float]) -> np.ndarray:
    fov = np.deg2rad(rng.uniform(*fov_range))
    f = (w / 2.0) / np.tan(fov / 2.0)
    cx = (w - 1) / 2.0 + rng.uniform(-0.02, 0.02) * w
    cy = (h - 1) / 2.0 + rng.uniform(-0.02, 0.02) * h
    return np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]], np.float64)


def _pixel_rays(K: np.ndarray, w: int, h: int) -> np.ndarray:
    """K^-1 [u, v, 1] for every pixel centre, row-major, (h*w, 3) with z = 1."""
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    return np.linalg.solve(K, np.stack([u.ravel(), v.ravel(), np.ones(u.size)])).T


def make_stereo_pair(
    seed: int,
    size: tuple[int, int] = (640, 512),
    *,
    thermal_size: tuple[int, int] | None = None,
    baseline_range: tuple[float, float] = (0.1, 0.3),
    max_rotation_deg: float = 3.0,
    n_boxes: int = 5,
    noise: float = 1.0,
) -> SyntheticPair:
    """A ground plane, a back wall and boxes seen by a visible and a thermal pinhole camera.

    The thermal camera sits ``baseline_range`` metres to the side (plus small vertical/forward
    offsets), rotated by up to ``max_rotation_deg``. Ground truth: K0, K1, R, t (OpenCV: X1 = R X0
    + t, metres) and depth0; ``pair.visible_to_thermal`` maps pixels through them."""
    w, h = _check_size(size, "size")
    tw, th = _check_size(thermal_size or size, "thermal_size")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if not 0 < baseline_range[0] <= baseline_range[1]:
        raise ValueError(f"baseline_range must be 0 < min <= max, got {baseline_range}")
    rng = np.random.default_rng(seed)
    atlas = 1200
    reflect_atlas, radiance_atlas = _latent_scene(rng, atlas, atlas)
    K0 = _intrinsics(rng, w, h, (55.0, 70.0))
    scene = _Scene(rng, atlas, n_boxes, K0[0, 0])
    K1 = _intrinsics(rng, tw, th, (45.0, 60.0))
    baseline = rng.uniform(*baseline_range) * rng.choice([-1.0, 1.0])
    centre1 = np.array([baseline, rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)])
    R = _rotation(rng, max_rotation_deg)
    t = -R @ centre1

    rays0 = _pixel_rays(K0, w, h)
    vis_ref, _, depth = scene.render(np.zeros(3), rays0, (h, w), reflect_atlas, radiance_atlas, np.linalg.inv(K0))
    rays1 = _pixel_rays(K1, tw, th) @ R  # rows: R.T @ ray, directions in the visible frame
    M1 = R.T @ np.linalg.inv(K1)
    _, th_rad, _ = scene.render(centre1, rays1, (th, tw), reflect_atlas, radiance_atlas, M1)
    return SyntheticPair(
        visible=_visible_sensor(rng, vis_ref, noise),
        thermal=_thermal_sensor(rng, th_rad, noise),
        kind="stereo",
        seed=seed,
        K0=K0,
        K1=K1,
        R=R,
        t=t,
        depth0=depth.reshape(h, w).astype(np.float32),
        info={"scene": scene, "thermal_centre_in_visible": centre1},
    )


def _check_size(size, name: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (width, height), got {size!r}") from None
    if w < 32 or h < 32:
        raise ValueError(f"{name} must be at least 32x32, got {w}x{h}")
    return w, h
