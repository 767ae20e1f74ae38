"""Write a ROS 2 bag of visible/thermal image pairs with ground truth, for replay + evaluation.

Sources: the synthetic generator (planar pairs with an exact homography, stereo pairs with exact
K0, K1, R, t) or a folder of pre-aligned visible/thermal pairs whose thermal image is warped
with a seeded random homography (the same homographies as the accuracy protocol,
``matchanything_ros.evaluation.homography_protocol``).

Topics (absolute, the node's default input names in the root namespace):
``/visible/image_raw`` (bgr8), ``/thermal/image_raw`` (mono16 synthetic / mono8 folder),
``/visible/camera_info``, ``/thermal/camera_info``. CameraInfo carries the stamp and size of its
image; K is the true intrinsics for stereo pairs and a nominal ``fx = fy = width`` otherwise.

Camera timing: visible frames at ``rate_hz``; each thermal stamp is the visible stamp plus a
uniform random offset in ``[-jitter_ms, +jitter_ms]``; with ``thermal_rate_factor = k`` the
thermal camera runs k times faster (the extra frames repeat the pair's thermal image, as from a
static scene, and lie ``period/k`` apart, so the synchronizer must pick the right one);
``thermal_drop`` drops whole thermal frames with that probability (the visible frame then has
no partner). Receive (bag) times are the stamps plus a few ms of transport latency.

Ground truth: a JSON sidecar next to the bag, ``<bag>.gt.json``, keyed by the visible stamp in
nanoseconds (the stamp the node's outputs carry); see :func:`write_ground_truth`.
"""
from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..json_out import dumps
from .storage import BagError, BagWriter

GT_FORMAT = "matchanything_ros/ground_truth"
GT_VERSION = 1
DEFAULT_TOPICS = {
    "visible_image": "/visible/image_raw",
    "thermal_image": "/thermal/image_raw",
    "visible_info": "/visible/camera_info",
    "thermal_info": "/thermal/camera_info",
}
START_NS = 1_700_000_000 * 1_000_000_000  # fixed epoch: bags are reproducible byte for byte


@dataclass
class Frame:
    """One visible/thermal pair to write, with its ground truth."""

    visible: np.ndarray  # (H, W, 3) uint8 BGR
    thermal: np.ndarray  # (H1, W1) uint8 or uint16
    name: str
    kind: str  # "planar" (H known) or "stereo" (K0, K1, R, t known)
    K0: np.ndarray
    K1: np.ndarray
    H: np.ndarray | None = None
    R: np.ndarray | None = None
    t: np.ndarray | None = None


@dataclass
class CameraTiming:
    """How the two cameras' stamps and receive times are generated (see module docstring)."""

    rate_hz: float = 10.0
    jitter_ms: float = 5.0
    thermal_rate_factor: int = 1
    thermal_drop: float = 0.0
    latency_ms: tuple[float, float] = (2.0, 8.0)  # receive time - stamp, uniform
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rate_hz <= 0:
            raise ValueError(f"rate must be > 0 Hz, got {self.rate_hz}")
        if self.jitter_ms < 0 or self.jitter_ms * 1e-3 >= 0.25 / self.rate_hz:
            raise ValueError(
                f"jitter must be >= 0 and below a quarter frame period ({250 / self.rate_hz:.1f} ms), "
                f"got {self.jitter_ms} ms"
            )
        if self.thermal_rate_factor < 1:
            raise ValueError(f"thermal rate factor must be >= 1, got {self.thermal_rate_factor}")
        if not 0.0 <= self.thermal_drop < 1.0:
            raise ValueError(f"thermal drop probability must be in [0, 1), got {self.thermal_drop}")


@dataclass
class RigSequence:
    """A fixed-rig sequence: one geometry (homography or extrinsics) for every frame, turned by
    ``change_deg`` degrees about the thermal camera's ``axis`` from frame ``change_frame`` on
    (a knocked camera). Axes in the thermal optical frame: roll = z (optical axis), pan = y,
    tilt = x."""

    change_frame: int | None = None
    change_deg: float = 0.0
    axis: str = "roll"

    def __post_init__(self) -> None:
        if self.axis not in RIG_AXES:
            raise ValueError(f"rig change axis must be one of {tuple(RIG_AXES)}, got {self.axis!r}")
        if self.change_frame is not None and self.change_frame < 1:
            raise ValueError(f"rig change frame must be >= 1, got {self.change_frame}")

    def rotation(self, index: int) -> np.ndarray:
        """Rotation of the thermal camera (in its own frame) at frame ``index`` (0-based)."""
        if self.change_frame is None or index < self.change_frame or self.change_deg == 0.0:
            return np.eye(3)
        import cv2

        return cv2.Rodrigues(RIG_AXES[self.axis] * np.deg2rad(self.change_deg))[0]

    def describe(self) -> dict[str, Any]:
        return {"fixed": True, "change_frame": self.change_frame, "change_deg": self.change_deg, "axis": self.axis}


RIG_AXES = {"roll": np.array([0.0, 0.0, 1.0]), "pan": np.array([0.0, 1.0, 0.0]), "tilt": np.array([1.0, 0.0, 0.0])}


def nominal_K(width: int, height: int) -> np.ndarray:
    """Intrinsics of a ~53 deg horizontal field of view camera (fx = fy = width)."""
    return np.array([[width, 0, (width - 1) / 2], [0, width, (height - 1) / 2], [0, 0, 1]], dtype=np.float64)


def synthetic_frames(
    count: int, *, kind: str = "planar", size: tuple[int, int] = (320, 256), seed: int = 0, rig: RigSequence | None = None
) -> Iterator[Frame]:
    """``count`` synthetic pairs (seeds ``seed``, ``seed+1``, ...); kind planar, stereo or mixed
    (alternating, planar first). ``rig`` (stereo only): every pair is seen by the cameras of
    pair ``seed`` (same K0, K1, R, t), the scenes still differ."""
    from ..synthetic import make_planar_pair, make_stereo_pair

    if kind not in ("planar", "stereo", "mixed"):
        raise ValueError(f"synthetic kind must be planar, stereo or mixed, got {kind!r}")
    if count < 1:
        raise ValueError(f"frame count must be >= 1, got {count}")
    if rig is not None:
        if kind != "stereo":
            raise ValueError("a fixed-rig synthetic sequence needs --synthetic stereo (or --folder for a homography rig)")
        first = make_stereo_pair(seed, size=size)
        centre1 = first.info["thermal_centre_in_visible"]
        for i in range(count):
            R = rig.rotation(i) @ first.R  # the thermal camera turned in its own frame
            p = first if i == 0 else make_stereo_pair(seed + i, size=size, rig=(first.K0, first.K1, R, centre1))
            yield Frame(p.visible, p.thermal, f"synthetic-stereo-{seed + i}", "stereo", p.K0, p.K1, R=p.R, t=p.t)
        return
    for i in range(count):
        k = kind if kind != "mixed" else ("planar", "stereo")[i % 2]
        if k == "planar":
            p = make_planar_pair(seed + i, size=size)
            h, w = p.visible.shape[:2]
            th, tw = p.thermal.shape[:2]
            yield Frame(p.visible, p.thermal, f"synthetic-planar-{seed + i}", "planar", nominal_K(w, h), nominal_K(tw, th), H=p.H)
        else:
            p = make_stereo_pair(seed + i, size=size)
            yield Frame(p.visible, p.thermal, f"synthetic-stereo-{seed + i}", "stereo", p.K0, p.K1, R=p.R, t=p.t)


def folder_frames(folder: str | Path, *, count: int | None = None, seed: int = 0, rig: RigSequence | None = None) -> Iterator[Frame]:
    """Aligned pairs from ``folder`` (``visible/`` + ``thermal/``), pair i's thermal image
    warped exactly as the accuracy protocol does (``homography_protocol.warp_pair`` with seed
    ``seed + i``); ground truth is that homography.

    ``rig``: a fixed-rig sequence instead. Every pair is resized to the median size of the pairs
    (one camera resolution) and warped by ONE homography (``random_homography(seed)``), turned
    from ``rig.change_frame`` on by ``K R K^-1`` (nominal K): the thermal camera rotated."""
    import cv2

    from ..evaluation.homography_protocol import load_aligned_pairs, random_homography, warp_pair

    pairs = load_aligned_pairs(folder, limit=count)
    if rig is not None:
        w = int(np.median([p.visible.shape[1] for p in pairs]))
        h = int(np.median([p.visible.shape[0] for p in pairs]))
        H0 = random_homography(seed, w, h)
        K = nominal_K(w, h)
        for i, pair in enumerate(pairs):
            visible = cv2.resize(pair.visible, (w, h), interpolation=cv2.INTER_AREA)
            visible = visible if visible.ndim == 3 else cv2.cvtColor(visible, cv2.COLOR_GRAY2BGR)
            thermal = cv2.resize(pair.thermal, (w, h), interpolation=cv2.INTER_AREA)
            H = K @ rig.rotation(i) @ np.linalg.inv(K) @ H0
            H = H / H[2, 2]
            warped = cv2.warpPerspective(thermal, H, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            yield Frame(visible, warped, pair.name, "planar", K, K, H=H)
        return
    for i, pair in enumerate(pairs):
        visible = pair.visible if pair.visible.ndim == 3 else cv2.cvtColor(pair.visible, cv2.COLOR_GRAY2BGR)
        warped, H = warp_pair(pair, seed + i)
        h, w = visible.shape[:2]
        yield Frame(visible, warped, pair.name, "planar", nominal_K(w, h), nominal_K(w, h), H=np.asarray(H, np.float64))


def write_bag(
    frames: Iterable[Frame],
    out: str | Path,
    *,
    storage: str = "mcap",
    version: int = 5,
    distro: str = "humble",
    timing: CameraTiming | None = None,
    topics: dict[str, str] | None = None,
    frame_ids: tuple[str, str] = ("visible_optical_frame", "thermal_optical_frame"),
    source: str = "",
    progress: bool = False,
    rig: RigSequence | None = None,
    compressed: bool = False,
) -> Path:
    """Write ``frames`` to a new bag at ``out`` and the ground truth to ``<out>.gt.json``.

    ``compressed``: the images as image_transport's compressed transport publishes them,
    sensor_msgs/CompressedImage on ``<image topic>/compressed``: visible JPEG (quality 95),
    thermal PNG (16-bit stays 16-bit, lossless). Returns the ground-truth path. Messages are
    written in receive-time order."""
    from ..imaging.encodings import numpy_to_image

    timing = timing or CameraTiming()
    topics = {**DEFAULT_TOPICS, **(topics or {})}
    if compressed:
        for key in ("visible_image", "thermal_image"):
            topics[key] = topics[key].rstrip("/") + "/compressed"
    rng = np.random.default_rng(timing.seed)
    period_ns = int(round(1e9 / timing.rate_hz))
    out = Path(out)
    gt_frames: dict[str, dict[str, Any]] = {}
    heap: list = []
    seq = 0

    writer = BagWriter(out, storage=storage, version=version, distro=distro).open()
    ts = writer.typestore
    Image = ts.types["sensor_msgs/msg/Image"]
    Compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    Info = ts.types["sensor_msgs/msg/CameraInfo"]
    RoI = ts.types["sensor_msgs/msg/RegionOfInterest"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    Header = ts.types["std_msgs/msg/Header"]

    def header(t_ns: int, frame_id: str):
        return Header(stamp=Time(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000), frame_id=frame_id)

    def image_msg(array: np.ndarray, encoding: str, t_ns: int, frame_id: str):
        if compressed:
            import cv2

            fmt = ".jpg" if encoding == "bgr8" else ".png"
            ok, data = cv2.imencode(fmt, array, [cv2.IMWRITE_JPEG_QUALITY, 95] if fmt == ".jpg" else [])
            if not ok:
                raise BagError(f"cannot encode a {encoding} frame as {fmt}")
            return Compressed(header=header(t_ns, frame_id), format=f"{encoding}; {'jpeg' if fmt == '.jpg' else 'png'} compressed {encoding}",
                              data=np.frombuffer(data.tobytes(), dtype=np.uint8))
        buf = numpy_to_image(array, encoding)
        return Image(
            header=header(t_ns, frame_id), height=buf.height, width=buf.width, encoding=buf.encoding,
            is_bigendian=int(buf.is_bigendian), step=buf.step, data=np.frombuffer(buf.data, dtype=np.uint8),
        )

    def info_msg(K: np.ndarray, shape: tuple[int, ...], t_ns: int, frame_id: str):
        h, w = shape[:2]
        P = np.hstack([K, np.zeros((3, 1))])
        return Info(
            header=header(t_ns, frame_id), height=h, width=w, distortion_model="plumb_bob",
            d=np.zeros(5), k=K.reshape(9).astype(np.float64), r=np.eye(3).reshape(9), p=P.reshape(12),
            binning_x=0, binning_y=0, roi=RoI(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
        )

    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    msgtypes = {topics["visible_image"]: image_type, topics["thermal_image"]: image_type,
                topics["visible_info"]: "sensor_msgs/msg/CameraInfo", topics["thermal_info"]: "sensor_msgs/msg/CameraInfo"}

    def write(t_ns: int, topic: str, msg: Any) -> None:
        writer.add_topic(topic, msgtypes[topic])  # declared by its first message: no empty topic
        writer.write(topic, t_ns, msg)

    def push(t_ns: int, topic: str, msg: Any, latency_ns: int | None = None) -> int:
        """Queue ``msg`` for log time ``t_ns`` + a random latency (or ``latency_ns``, the draw
        still made so that the rest of the bag's timing does not change); returns the latency."""
        nonlocal seq
        latency = int(rng.uniform(*timing.latency_ms) * 1e6)
        if latency_ns is not None:
            latency = latency_ns
        heapq.heappush(heap, (t_ns + latency, seq, topic, msg))
        seq += 1
        return latency

    try:
        iterator = enumerate(frames)
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, desc="make-bag", unit="frame")
        for i, frame in iterator:
            t_vis = START_NS + i * period_ns
            # Flush everything that cannot be overtaken by this frame's messages.
            while heap and heap[0][0] < t_vis - period_ns // 2:
                t, _, topic, msg = heapq.heappop(heap)
                write(t, topic, msg)
            vis_encoding = "bgr8"
            th_encoding = "mono16" if frame.thermal.dtype == np.uint16 else "mono8"
            # each CameraInfo is logged 1 ns before its image (same stamp): a replay has the
            # frame's intrinsics when its image arrives (synthetic stereo frames differ in K)
            lat = push(t_vis, topics["visible_image"], image_msg(frame.visible, vis_encoding, t_vis, frame_ids[0]))
            push(t_vis, topics["visible_info"], info_msg(frame.K0, frame.visible.shape, t_vis, frame_ids[0]), lat - 1)
            offset = int(rng.uniform(-timing.jitter_ms, timing.jitter_ms) * 1e6)
            dropped = rng.uniform() < timing.thermal_drop
            t_th = t_vis + offset
            k = timing.thermal_rate_factor
            for j in range(k):
                # frame j of the faster thermal camera; j == 0 is the true partner
                t_j = t_th + j * period_ns // k
                if j == 0 and dropped:
                    continue
                lat = push(t_j, topics["thermal_image"], image_msg(frame.thermal, th_encoding, t_j, frame_ids[1]))
                push(t_j, topics["thermal_info"], info_msg(frame.K1, frame.thermal.shape, t_j, frame_ids[1]), lat - 1)
            gt_frames[str(t_vis)] = _frame_gt(frame, t_vis, None if dropped else t_th)
        while heap:
            t, _, topic, msg = heapq.heappop(heap)
            write(t, topic, msg)
    finally:
        writer.close()
    if not gt_frames:
        import shutil

        shutil.rmtree(out)  # an empty bag: nothing to keep
        raise BagError("no frames to write: the source produced no image pairs")
    return write_ground_truth(out, gt_frames, topics=topics, timing=timing, source=source,
                              rig=rig.describe() if rig is not None else None)


def _frame_gt(frame: Frame, t_vis: int, t_th: int | None) -> dict[str, Any]:
    def arr(x):
        return None if x is None else np.asarray(x, dtype=np.float64).tolist()

    return {
        "name": frame.name,
        "kind": frame.kind,
        "visible_stamp_ns": t_vis,
        "thermal_stamp_ns": t_th,  # None: the thermal frame was dropped (no pair expected)
        "visible_size": [int(frame.visible.shape[1]), int(frame.visible.shape[0])],
        "thermal_size": [int(frame.thermal.shape[1]), int(frame.thermal.shape[0])],
        "H": arr(frame.H),
        "K0": arr(frame.K0),
        "K1": arr(frame.K1),
        "R": arr(frame.R),
        "t": arr(None if frame.t is None else np.asarray(frame.t).reshape(3)),
    }


def ground_truth_path(bag: str | Path) -> Path:
    """Where :func:`write_bag` puts the ground truth of ``bag``: ``<bag>.gt.json``."""
    bag = Path(bag)
    return bag.with_name(bag.name + ".gt.json")


def write_ground_truth(
    bag: Path, frames: dict[str, dict[str, Any]], *, topics, timing: CameraTiming, source: str, rig: dict | None = None
) -> Path:
    """JSON: ``{"format", "version", "bag", "source", "topics", "timing", "frames": {stamp: {...}}}``
    where each frame has name, kind, stamps, sizes ``[w, h]``, ``H`` (visible px -> thermal px,
    planar), ``K0``, ``K1`` and ``R``, ``t`` (OpenCV X1 = R X0 + t, stereo). A fixed-rig sequence
    adds ``"rig": {"fixed": true, "change_frame", "change_deg", "axis"}`` (its per-frame truth is
    in the frames, as for any sequence)."""
    path = ground_truth_path(bag)
    doc = {
        "format": GT_FORMAT,
        "version": GT_VERSION,
        "bag": bag.name,  # relative to this file's folder
        "source": source,
        "topics": topics,
        "timing": {
            "rate_hz": timing.rate_hz,
            "jitter_ms": timing.jitter_ms,
            "thermal_rate_factor": timing.thermal_rate_factor,
            "thermal_drop": timing.thermal_drop,
            "seed": timing.seed,
        },
        "frames": frames,
    }
    if rig is not None:
        doc["rig"] = rig
    path.write_text(dumps(doc))
    return path


def load_ground_truth(path: str | Path) -> dict[str, Any]:
    """Read and check a ground-truth JSON written by :func:`write_bag`."""
    path = Path(path)
    if not path.is_file():
        raise BagError(f"ground truth file not found: {path} (make-bag writes <bag>.gt.json)")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BagError(f"ground truth {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != GT_FORMAT or not isinstance(doc.get("frames"), dict):
        raise BagError(f"{path} is not a matchanything_ros ground-truth file (format {GT_FORMAT!r})")
    if doc.get("version") != GT_VERSION:
        raise BagError(f"ground truth {path} has version {doc.get('version')}, this tool reads {GT_VERSION}")
    for key, frame in doc["frames"].items():
        problem = _gt_frame_problem(frame)
        if problem:
            raise BagError(f"ground truth {path}, frame {key!r}: {problem}")
    return doc


def _gt_frame_problem(frame: Any) -> str | None:
    """What makes one ground-truth frame unusable (None: nothing): the fields evaluate reads."""
    if not isinstance(frame, dict):
        return "not a mapping"
    try:
        int(frame["visible_stamp_ns"])
    except KeyError:
        return "no visible_stamp_ns"
    except (TypeError, ValueError):
        return f"visible_stamp_ns {frame['visible_stamp_ns']!r} is not an integer"
    shapes = {"H": (3, 3), "R": (3, 3), "t": (3,), "visible_size": (2,)}
    for name, shape in shapes.items():
        if frame.get(name) is None:
            continue
        try:
            value = np.asarray(frame[name], dtype=np.float64)
        except (TypeError, ValueError):
            return f"{name} is not numbers"
        if value.size != int(np.prod(shape)) or not np.isfinite(value).all():
            return f"{name} must be {'x'.join(map(str, shape))} finite numbers"
    if frame.get("H") is not None and frame.get("visible_size") is None:
        return "H without visible_size"
    if frame.get("R") is not None and frame.get("t") is None:
        return "R without t"
    return None
