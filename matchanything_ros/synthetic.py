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
    field = cv2.resize(lattice, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(field, -1.0, 1.0, out=field)


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


def _region_lookup(labels: np.ndarray, n: int):
    """A function table -> table[labels] for per-region float32 tables, (n,) or (n, 3).

    It remaps the table, seen as a one-row image, with nearest-neighbour sampling: coordinates
    are integers, so values are copied exactly, several times faster than numpy indexing."""
    if max(n, *labels.shape) >= 32767:  # remap's size limit (SHRT_MAX)
        index = labels.astype(np.intp)
        return lambda table: np.take(table, index, axis=0)
    map_x = labels.astype(np.float32)
    map_y = np.zeros_like(map_x)
    return lambda table: cv2.remap(table[None], map_x, map_y, cv2.INTER_NEAREST)


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
    # The canvas is large (the stereo atlas is 1200x1200): work in place where that gives the
    # same float32 operations, free big temporaries early, and scale colour channels one at a
    # time (broadcasting over a 3-long inner axis is slow in numpy).
    per_region = _region_lookup(labels, n)
    del labels
    shared = _noise(rng, h, w, 24.0)
    shared *= 0.6
    shared += 0.4 * _noise(rng, h, w, 9.0)
    grain = _noise(rng, h, w, 3.0)
    shading = _noise(rng, h, w, max(w, h) / 2.0)  # illumination, not in thermal
    shading *= 0.35
    shading += 1.0
    modulation = 0.6 * shared  # shading * (1 + vis_tex * (0.6 shared + 0.4 grain))
    grain *= 0.4
    modulation += grain
    modulation *= per_region(vis_tex)
    modulation += 1.0
    modulation *= shading
    del grain, shading
    vis = per_region(colour)
    for c in range(3):
        vis[..., c] *= modulation
    del modulation

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
    painted, pixels = np.flatnonzero(paint > 0), vis.reshape(-1, 3)  # a few % of the pixels
    pixels[painted] = 0.2 * pixels[painted] + 0.8 * paint_colour

    thermal = per_region(th_tex)
    thermal *= shared
    thermal += per_region(radiance)
    del per_region
    slow = _noise(rng, h, w, max(w, h) / 3.0)  # slow gradients (wind, sun, shade)
    slow *= 3.0
    thermal += slow
    blobs = np.zeros((h, w), np.float32)  # warm blobs with no visible counterpart
    for _ in range(int(rng.integers(3, 9))):
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        cv2.circle(blobs, c, int(rng.uniform(5, 30)), float(rng.uniform(3, 12)), -1)
    thermal += cv2.GaussianBlur(blobs, (0, 0), 5.0)
    thermal = cv2.GaussianBlur(thermal, (0, 0), rng.uniform(0.5, 1.0))  # heat diffusion
    return np.clip(vis, 0.0, 1.0, out=vis), thermal


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
    gain = np.float32(rng.uniform(0.8, 1.15)) * (1.0 - 0.25 * _radial(h, w))
    img = np.empty_like(reflectance)
    for c in range(3):  # per channel: broadcasting over a 3-long inner axis is slow
        np.multiply(reflectance[..., c], gain, out=img[..., c])
    np.clip(img, 0, 1, out=img)
    np.power(img, np.float32(1 / 2.2), out=img)
    img *= np.float32(255.0)
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    if noise > 0:
        temporal = rng.standard_normal(img.shape, dtype=np.float32)
        temporal *= np.float32(2.0 * noise)
        img += temporal
    return np.clip(np.rint(img, out=img), 0, 255, out=img).astype(np.uint8)


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
        s, surf, u, v = self._cast(origin, dirs, grid)
        return s, surf, np.stack([u, v], 1), np.take(self._normals(), surf, axis=0)

    def _cast(self, origin: np.ndarray, dirs: np.ndarray, grid: tuple | None):
        """:meth:`intersect` without normals, texture coords as two (N,) arrays u, v.

        Surfaces are tested in a fixed order (ground, wall, boxes); a later one wins only where
        it is strictly nearer. Arrays are worked on one coordinate at a time (numpy is slow on
        (N, 3) arrays, whose inner axis is 3 long), and a box only on the pixel window it
        projects into. Products with a 3-vector or a 3x3 matrix stay BLAS calls on the same
        rows, in the same memory layout, as in the first (per-surface) version of this code:
        BLAS rounding depends on both, and the output per seed is pinned by the tests."""
        n = len(dirs)
        with np.errstate(divide="ignore", invalid="ignore"):
            # ground y = cam_height (dirs @ (0, 1, 0) is exactly dirs[:, 1]); wall n . X = d
            s_ground = self._plane(dirs[:, 1], origin[1], self.cam_height)
            s_wall = self._plane(dirs @ self.wall_n, origin @ self.wall_n, self.wall_d)
        best = np.where((s_ground > 1e-6) & (s_ground < np.inf), s_ground, np.inf)
        surf = np.where(best < np.inf, 0, -1)
        wall = (s_wall > 1e-6) & (s_wall < best)
        np.copyto(best, s_wall, where=wall)
        surf[wall] = 1
        u, v = np.zeros(n), np.zeros(n)  # texture coords (boxes as they are hit, then the rest)

        norms = None
        for b, (centre, half, rot) in enumerate(self.boxes):
            # Candidate rays: the pixel window the box projects into (grid rays, box in front),
            # else the rays through its bounding sphere.
            window = None if grid is None else self._box_window(origin, centre, half, rot, grid)
            if window is not None:
                w, h = grid[1:]
                d = dirs.reshape(h, w, 3)[window].reshape(-1, 3)
                nearest = best.reshape(h, w)[window].ravel()
            else:
                if norms is None:
                    norms = np.linalg.norm(dirs, axis=1)
                idx = self._box_candidates(origin, dirs, norms, centre, half)
                d, nearest = dirs[idx], best[idx]
            if len(d) == 0:
                continue
            o = rot.T @ (origin - centre)
            d = d @ rot  # rows: rot.T @ dir, the box frame
            # Slab test per axis: the ray is inside the box from the largest slab entry to the
            # smallest slab exit. The axis of that entry is the face hit (the first such axis, as
            # argmax would pick); the ray enters through the face on the +half side if it moves
            # towards -axis.
            near, far = -half - o, half - o
            lo, hi = [], []
            with np.errstate(divide="ignore", invalid="ignore"):
                for k in range(3):
                    t1, t2 = near[k] / d[:, k], far[k] / d[:, k]
                    lo.append(np.fmin(t1, t2))  # never NaN: half > 0
                    hi.append(np.fmax(t1, t2))
            on_y = lo[1] > lo[0]
            s = np.maximum(lo[0], lo[1])
            on_z = lo[2] > s
            s = np.maximum(s, lo[2])
            on_y &= ~on_z
            on_x = ~(on_y | on_z)
            # (s > 1e-6) & (s < nearest) also leaves out infinite entries (rays parallel to a slab
            # and outside it)
            hit = (np.minimum(np.minimum(hi[0], hi[1]), hi[2]) >= s) & (s > 1e-6) & (s < nearest)
            if not hit.any():
                continue
            positive = (on_x & (d[:, 0] < 0)) | (on_y & (d[:, 1] < 0)) | (on_z & (d[:, 2] < 0))
            # surface id 2 + 6 b + 2 axis + positive, in uint8 (bools are 0/1) until written out
            face = (on_y.view(np.uint8) << 1) | (on_z.view(np.uint8) << 2) | positive.view(np.uint8)
            # Texture coords of the face: the hit point's two other axes, from the box corner.
            # Computed for all candidates, kept where the box is hit and nearest.
            p = [o[k] + s * d[:, k] + half[k] for k in range(3)]
            for target, value in (
                (best, s),
                (surf, np.add(face, 2 + 6 * b, dtype=surf.dtype)),
                (u, np.where(on_x, p[1], p[0])),
                (v, np.where(on_z, p[1], p[2])),
            ):
                if window is not None:
                    view = target.reshape(h, w)[window]
                    np.copyto(view, value.reshape(view.shape), where=hit.reshape(view.shape))
                else:
                    target[idx[hit]] = value[hit]

        on_ground = surf == 0
        np.copyto(u, origin[0] + best * dirs[:, 0], where=on_ground)
        np.copyto(v, origin[2] + best * dirs[:, 2], where=on_ground)
        on_wall = surf == 1
        if on_wall.any():
            # Wall points, laid out like dirs: the along-coordinate is a BLAS matrix-vector
            # product over all rays.
            p = np.empty_like(dirs)
            for k in range(3):
                np.multiply(s_wall, dirs[:, k], out=p[:, k])
                p[:, k] += origin[k]
            along = np.array([self.wall_n[2], 0.0, -self.wall_n[0]])
            np.copyto(u, p @ along, where=on_wall)
            np.copyto(v, p[:, 1], where=on_wall)
        return best, surf, u, v

    def _normals(self) -> np.ndarray:
        """Outward normal per surface id, (n_surfaces + 1, 3); the last row, zeros, is the one
        id -1 (nothing hit) indexes."""
        table = np.zeros((2 + 6 * len(self.boxes) + 1, 3))
        table[0] = (0.0, -1.0, 0.0)
        table[1] = -self.wall_n
        faces = np.repeat(np.eye(3), 2, axis=0) * np.tile([-1.0, 1.0], 3)[:, None]  # -x +x -y +y -z +z
        for b, (_, _, rot) in enumerate(self.boxes):
            table[2 + 6 * b : 8 + 6 * b] = faces @ rot.T
        return table

    @staticmethod
    def _plane(denom: np.ndarray, start: float, d: float) -> np.ndarray:
        """Ray parameter of the hits with the plane n . X = d, given n . dirs and n . origin;
        -1 for rays parallel to it."""
        return np.where(np.abs(denom) > 1e-12, (d - start) / denom, -1.0)

    @staticmethod
    def _box_window(origin, centre, half, rot, grid) -> tuple[slice, slice] | None:
        """(rows, cols) of the pixels a box's projected corners span, plus a pixel margin;
        None if a corner is not in front of the camera."""
        M, w, h = grid
        corners = centre + (np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T * half) @ rot.T
        q = np.linalg.solve(M, (corners - origin).T)
        if not np.all(q[2] > 1e-6):
            return None
        uv = q[:2] / q[2]
        u0, v0 = np.maximum(np.floor(uv.min(1)) - 1, 0).astype(int)
        u1, v1 = np.minimum(np.ceil(uv.max(1)) + 1, [w - 1, h - 1]).astype(int)
        if u0 > u1 or v0 > v1:
            return slice(0, 0), slice(0, 0)
        return slice(v0, v1 + 1), slice(u0, u1 + 1)

    @staticmethod
    def _box_candidates(origin, dirs, norms, centre, half) -> np.ndarray:
        """Indices of the rays through a box's bounding sphere."""
        rel = centre - origin
        dist = np.linalg.norm(np.cross(dirs, rel), axis=1) / norms
        return np.nonzero((dist <= np.linalg.norm(half) + 1e-6) & (dirs @ rel > 0))[0]

    def _atlas_maps(self, origin, dirs, shape, M):
        """Ray-cast one camera: where each pixel samples the texture atlas (map_x, map_y float32
        (h, w)), its surface id (h*w,) and ray parameter (h*w,)."""
        h, w = shape
        s, surf, u, v = self._cast(origin, dirs, None if M is None else (M, w, h))
        if np.any(surf < 0):
            raise RuntimeError("synthetic scene: a ray hit nothing (scene construction bug)")
        scale = np.take(self.texels_per_m, surf)
        map_x = (np.take(self.offsets[:, 0], surf) + u * scale).reshape(h, w).astype(np.float32)
        map_y = (np.take(self.offsets[:, 1], surf) + v * scale).reshape(h, w).astype(np.float32)
        return map_x, map_y, surf, s

    def render_visible(self, origin, dirs, shape, reflect_atlas, M=None):
        """Ray-cast the visible camera: reflectance (h, w, 3) with sun shading, ray parameter."""
        h, w = shape
        map_x, map_y, surf, s = self._atlas_maps(origin, dirs, shape, M)
        reflect = cv2.remap(reflect_atlas, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        # Lambert shading per surface, looked up per pixel (the same numbers as normal @ light
        # per pixel, without an (N, 3) normal array).
        lambert = np.clip(self._normals() @ self.light, 0.0, 1.0).astype(np.float32)
        shade = 0.45 + 0.55 * np.take(lambert, surf).reshape(h, w)  # sun shading: visible only
        for c in range(3):  # per channel: broadcasting over a 3-long inner axis is slow
            reflect[..., c] *= shade
        return reflect, s

    def render_thermal(self, origin, dirs, shape, radiance_atlas, M=None):
        """Ray-cast the thermal camera: radiance (h, w) with per-surface temperature offsets."""
        h, w = shape
        map_x, map_y, surf, _ = self._atlas_maps(origin, dirs, shape, M)
        radiance = cv2.remap(radiance_atlas, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        radiance += np.take(self.surface_temp, surf).reshape(h, w).astype(np.float32)
        return radiance


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
    """K^-1 [u, v, 1] for every pixel centre, row-major, (h*w, 3) with z = 1.

    K has no skew, so x depends on u only and y on v only: solve for one row and one column
    of pixels and broadcast (the same solver, hence the same rounding, as solving every pixel).
    The result is the transpose of a C-ordered (3, h*w) array, as np.linalg.solve returns it:
    later BLAS products round differently for another memory layout."""
    m = max(w, h)
    line = np.linalg.solve(K, np.stack([np.arange(m, dtype=np.float64), np.arange(m, dtype=np.float64), np.ones(m)]))
    rays = np.empty((3, h, w))
    rays[0] = line[0, :w]
    rays[1] = line[1, :h, None]
    rays[2] = line[2, :1]
    return rays.reshape(3, h * w).T


def make_stereo_pair(
    seed: int,
    size: tuple[int, int] = (640, 512),
    *,
    thermal_size: tuple[int, int] | None = None,
    baseline_range: tuple[float, float] = (0.1, 0.3),
    max_rotation_deg: float = 3.0,
    n_boxes: int = 5,
    noise: float = 1.0,
    rig: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> SyntheticPair:
    """A ground plane, a back wall and boxes seen by a visible and a thermal pinhole camera.

    The thermal camera sits ``baseline_range`` metres to the side (plus small vertical/forward
    offsets), rotated by up to ``max_rotation_deg``. Ground truth: K0, K1, R, t (OpenCV: X1 = R X0
    + t, metres) and depth0; ``pair.visible_to_thermal`` maps pixels through them.

    ``rig = (K0, K1, R, centre1)`` fixes the cameras (a rigid rig: the same K0, K1, R and thermal
    centre in the visible frame for every seed) while the scene still follows ``seed`` (the
    camera draws are still made, so the random stream and the textures do not change)."""
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
    if rig is not None:
        K0 = np.asarray(rig[0], np.float64).reshape(3, 3)
    scene = _Scene(rng, atlas, n_boxes, K0[0, 0])
    K1 = _intrinsics(rng, tw, th, (45.0, 60.0))
    baseline = rng.uniform(*baseline_range) * rng.choice([-1.0, 1.0])
    centre1 = np.array([baseline, rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)])
    R = _rotation(rng, max_rotation_deg)
    if rig is not None:
        K1 = np.asarray(rig[1], np.float64).reshape(3, 3)
        R = np.asarray(rig[2], np.float64).reshape(3, 3)
        centre1 = np.asarray(rig[3], np.float64).reshape(3)
    t = -R @ centre1

    rays0 = _pixel_rays(K0, w, h)
    vis_ref, depth = scene.render_visible(np.zeros(3), rays0, (h, w), reflect_atlas, np.linalg.inv(K0))
    rays1 = _pixel_rays(K1, tw, th) @ R  # rows: R.T @ ray, directions in the visible frame
    M1 = R.T @ np.linalg.inv(K1)
    th_rad = scene.render_thermal(centre1, rays1, (th, tw), radiance_atlas, M1)
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
