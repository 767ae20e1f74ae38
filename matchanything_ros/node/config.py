"""Configuration of the matcher node, ROS-free: the parameter table and the params-file reader.

The node's ROS parameters are the fields of :class:`NodeConfig` (nested dataclasses give dotted
names such as ``sync.slop``) plus the fields of :class:`~matchanything_ros.pipeline.PipelineConfig`
(``model``, ``geometry``, ``thermal.mode``, ...). :func:`parameter_specs` lists them all with
type, default, description, range and whether they can change at run time; the node declares
exactly these, and :func:`load_params_file` reads the same names from a standard ROS 2 params
YAML, so bag replay and tests configure the pipeline exactly like ``--params-file`` does.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..matching import ROMA_MODELS
from ..pipeline import PipelineConfig

RELIABILITIES = ("best_effort", "reliable")


@dataclass
class TopicsConfig:
    """Input topic names (relative: they follow the node's namespace and remappings)."""

    visible_image: str = "visible/image_raw"
    thermal_image: str = "thermal/image_raw"
    visible_info: str = "visible/camera_info"
    thermal_info: str = "thermal/camera_info"
    use_camera_info: bool = True  # subscribe to CameraInfo (needed by geometry 'essential')
    # image_transport: "raw" (sensor_msgs/Image on the topic) or "compressed"
    # (sensor_msgs/CompressedImage, JPEG / PNG incl. 16-bit PNG, on <topic>/compressed)
    visible_transport: str = "raw"
    thermal_transport: str = "raw"


@dataclass
class SyncConfig:
    """Approximate-time pairing of the visible and thermal images (message_filters semantics)."""

    queue_size: int = 10  # messages kept per stream while waiting for a partner
    slop: float = 0.02  # s, max stamp difference of a pair (strictly below)
    # and at most this many MiB of image data per stream (the oldest go first, counted as
    # sync_unpaired): queue_size alone bounds a count, not memory (1000 x 1280x1024 mono16 = 2.5 GiB)
    max_queue_mb: float = 128.0


@dataclass
class QosConfig:
    """QoS of the image subscriptions (sensor data: best effort, keep last)."""

    reliability: str = "best_effort"  # "best_effort" or "reliable"
    depth: int = 5


@dataclass
class PublishConfig:
    """Which outputs to publish (all runtime-switchable)."""

    correspondences: bool = True  # sensor_msgs/PointCloud2
    pose: bool = True  # geometry_msgs/PoseWithCovarianceStamped (geometry 'essential')
    transform: bool = True  # geometry_msgs/TransformStamped on a topic
    tf: bool = False  # the same transform on /tf (off by default: it may fight a calibrated URDF)
    homography: bool = True  # std_msgs/Float64MultiArray (homography/affine modes)
    registered: bool = True  # thermal image warped into the visible frame (homography/affine)
    debug_image: bool = False  # matches drawn side by side (costs a few ms)
    rig: bool = True  # rig mode: rig/pose, rig/homography (latched) once the estimate converged
    rig_tf_static: bool = False  # rig mode: the rig estimate on /tf_static (opt-in, like publish.tf)


MAX_FRAME_ID = 256
_FRAME_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*")


def valid_frame_id(frame: str) -> bool:
    """A tf2 frame id: letters, digits, ``_ . / -``, not starting with a punctuation mark other
    than ``_``, at most MAX_FRAME_ID characters. Frame ids land in output files and messages:
    nothing else (spaces, quotes, ``;``, ``$``, newlines) is data a consumer should have to escape."""
    return isinstance(frame, str) and len(frame) <= MAX_FRAME_ID and _FRAME_ID.fullmatch(frame) is not None


def output_file_problem(path: str) -> str | None:
    """Why the node must not write ``path`` (None: it may; "" means no file). Its folder must
    exist (the node creates none), and the path must be a regular file or not exist yet: never a
    symlink, FIFO, device or folder, which a rename would replace or a write would follow."""
    if not path:
        return None
    p = Path(path).expanduser()
    if not p.parent.is_dir():
        return f"its folder {str(p.parent)!r} does not exist"
    if p.is_symlink() or (p.exists() and not p.is_file()):
        return f"{str(p)!r} exists and is not a regular file (a symlink, FIFO, device or folder is never replaced)"
    return None


@dataclass
class FramesConfig:
    """Frame ids; empty means "take the frame_id from the input image header"."""

    visible: str = ""
    thermal: str = ""


@dataclass
class OutputConfig:
    """Shape of the published data."""

    inliers_only: bool = False  # correspondences: only geometric inliers (else all + flag)
    registered_normalized: bool = True  # registered image: mono8 normalized thermal, else raw
    publish_on_failure: bool = True  # publish correspondences even when the geometry failed
    debug_outliers: bool = False  # debug/matches: also draw the outliers (red); inliers only by default
    rig_calibration_file: str = ""  # rig mode: keep the estimate in this YAML file ("" = none)


@dataclass
class WorkerConfig:
    """Inference runs on one worker thread; callbacks only queue pairs."""

    queue_size: int = 1  # pending pairs kept; when full the OLDEST is dropped (and counted)
    threads: int = 0  # torch/OpenCV threads of inference; 0: MATCHANYTHING_THREADS, else one per core
    # a model too slow for frame rate on the CPU (the RoMa models: tens of seconds per pair) is
    # refused there unless this says that dropping the frames in between is accepted
    allow_cpu_frame_drops: bool = False


@dataclass
class DiagnosticsConfig:
    """diagnostic_msgs/DiagnosticArray on /diagnostics."""

    period: float = 1.0  # s between diagnostics messages
    warn_inlier_ratio: float = 0.2  # WARN below this inlier ratio
    warn_latency: float = 0.5  # s, WARN when stamp-to-publish latency exceeds this
    stale_timeout: float = 3.0  # s without a processed pair before WARN (ERROR if never)


# -- hardening (issue 9): stamp rules and input size limits ------------------------------
@dataclass
class StampsConfig:
    """Stamp rules in front of the pairing (node.sync.StampGate, docs/NODE.md "Stamps")."""

    max_future: float = 1.0  # s ahead of the node's clock a stamp may be (0 = no check)
    reset_threshold: float = 3.0  # s, a bigger jump back is a time reset once confirmed


@dataclass
class LimitsConfig:
    """Input image size limits, checked on the header before any decoding."""

    max_pixels: int = 40_000_000  # width * height of one image
    min_side: int = 16  # px, shorter side


@dataclass
class NodeConfig:
    """Everything about the node that is not the matching pipeline itself."""

    topics: TopicsConfig = field(default_factory=TopicsConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    qos: QosConfig = field(default_factory=QosConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    frames: FramesConfig = field(default_factory=FramesConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    stamps: StampsConfig = field(default_factory=StampsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                setattr(self, f.name, f.default_factory(**value))  # type: ignore[misc]
        self.validate()

    def validate(self) -> None:
        """Raise ValueError with a clear message for any out-of-range value."""
        if self.sync.queue_size < 1:
            raise ValueError(f"sync.queue_size must be >= 1, got {self.sync.queue_size}")
        if not 0.0 < self.sync.slop <= 10.0:
            raise ValueError(f"sync.slop must be in (0, 10] seconds, got {self.sync.slop}")
        if self.qos.reliability not in RELIABILITIES:
            raise ValueError(f"qos.reliability must be one of {RELIABILITIES}, got {self.qos.reliability!r}")
        if self.qos.depth < 1:
            raise ValueError(f"qos.depth must be >= 1, got {self.qos.depth}")
        if self.worker.queue_size < 1:
            raise ValueError(f"worker.queue_size must be >= 1, got {self.worker.queue_size}")
        if self.diagnostics.period <= 0:
            raise ValueError(f"diagnostics.period must be > 0, got {self.diagnostics.period}")
        st, lim = self.stamps, self.limits
        if not (0.0 <= st.max_future <= 3600.0 and 0.001 <= st.reset_threshold <= 3600.0):
            raise ValueError(f"stamps.max_future must be in [0, 3600] s and stamps.reset_threshold in [0.001, 3600] s; "
                             f"got {st.max_future}, {st.reset_threshold}")
        if not 1 <= lim.min_side <= 4096 or not 1 <= lim.max_pixels <= 1_000_000_000:
            raise ValueError(f"limits.min_side must be in [1, 4096] and limits.max_pixels in [1, 1e9]; "
                             f"got {lim.min_side}, {lim.max_pixels}")
        for name in ("visible_image", "thermal_image", "visible_info", "thermal_info"):
            if not getattr(self.topics, name):
                raise ValueError(f"topics.{name} must not be empty")
        for name in ("visible", "thermal"):
            frame = getattr(self.frames, name)
            if frame and not valid_frame_id(frame):
                raise ValueError(f"frames.{name} must be a frame id (letters, digits, _ . / -; at most "
                                 f"{MAX_FRAME_ID} characters), got {frame!r}")
        problem = output_file_problem(self.output.rig_calibration_file)
        if problem:
            raise ValueError(f"output.rig_calibration_file: {problem}")

    def to_flat(self) -> dict[str, Any]:
        return _flatten(dataclasses.asdict(self))

    @classmethod
    def from_flat(cls, values: dict[str, Any]) -> "NodeConfig":
        """Build from dotted names (``{"sync.slop": 0.05}``); unknown names raise ValueError."""
        nested: dict[str, dict[str, Any]] = {}
        known = {spec.name for spec in _node_specs()}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown node parameter {key!r}")
            group, name = key.split(".", 1)
            nested.setdefault(group, {})[name] = value
        return cls(**nested)


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter: the node declares it from this, the params-file reader checks it."""

    name: str
    default: Any
    description: str = ""
    read_only: bool = False  # True: needs a restart (topics, QoS)
    min_value: float | int | None = None
    max_value: float | int | None = None
    choices: tuple[str, ...] = ()

    @property
    def kind(self) -> type:
        return type(self.default)


# Ranges and choices of the parameter descriptors. They are enforced twice with the same
# result: by rclpy on the node (descriptor ranges) and by split_parameters() for params files and
# replay; PipelineConfig/NodeConfig.validate() add the rules a range cannot say (low < high).
# Bounds are inclusive (ROS ranges are), so each is a value the validators accept: e.g. slop
# starts at 1 ms, not 0. test_node_config checks every bound and choice against the validators.
_RANGES: dict[str, tuple[float | int, float | int]] = {
    "resolution": (64, 4096),
    "max_matches": (1, 100000),
    "match_threshold": (0.0, 0.999),  # 1.0 would refuse every match (PipelineConfig.validate)
    "ransac_threshold": (0.1, 100.0),
    "ransac_confidence": (0.5, 1.0),
    "min_matches": (4, 100000),
    "min_inlier_ratio": (0.0, 0.99),  # 1.0 would refuse every fit
    "min_quality": (0.0, 1.0),  # verdict (issue 11)
    "thermal.low_percentile": (0.0, 99.9),  # and below high_percentile
    "thermal.high_percentile": (0.1, 100.0),
    "thermal.fixed_min": (-1.0e6, 999999.0),  # raw units (counts, K, degC); and below fixed_max
    "thermal.fixed_max": (-999999.0, 1.0e6),
    "thermal.clahe_clip_limit": (0.01, 100.0),
    "thermal.clahe_tile_grid": (1, 64),
    "sync.queue_size": (1, 1000),
    "sync.slop": (0.001, 10.0),
    "sync.max_queue_mb": (1.0, 65536.0),
    "qos.depth": (1, 1000),
    "worker.queue_size": (1, 100),
    "worker.threads": (0, 256),
    "diagnostics.period": (0.05, 60.0),
    "diagnostics.warn_inlier_ratio": (0.0, 1.0),
    "diagnostics.warn_latency": (0.0, 60.0),
    "diagnostics.stale_timeout": (0.1, 3600.0),
    "stamps.max_future": (0.0, 3600.0),
    "stamps.reset_threshold": (0.001, 3600.0),
    "limits.max_pixels": (1, 1_000_000_000),
    "limits.min_side": (1, 4096),
    # rig mode (matchanything_ros/rig.py)
    "rig.window": (2, 1000),
    "rig.max_points": (8, 100000),
    "rig.min_frames": (1, 1000),
    "rig.gate_px": (0.1, 1000.0),
    "rig.gate_deg": (0.01, 180.0),
    "rig.gate_translation_deg": (0.1, 180.0),
    "rig.recent": (2, 1000),
    "rig.alarm_frames": (1, 1000),
    "rig.alarm_hold": (0, 100000),
    "rig.systematic_px": (0.0, 100.0),
    "rig.systematic_deg": (0.0, 89.0),
    "rig.refresh_every": (1, 100000),
    "roma_coarse_res": (0, 840),
    "roma_upsample_res": (0, 4096),
}
TRANSPORTS = ("raw", "compressed")
_CHOICES: dict[str, tuple[str, ...]] = {
    "model": ("auto", "xfeat", "sift", "matchanything_eloftr", "minima_splg", "minima_loftr", "matchanything_roma",
              "minima_roma"),
    "backend": ("auto", "torch", "onnxruntime", "openvino", "tensorrt"),
    "device": ("auto", "cpu", "cuda"),
    "precision": ("fp32", "fp16"),
    "match_rule": ("auto", "mtd", "mnn"),
    "geometry": ("homography", "affine", "fundamental", "essential", "none"),
    "polarity": ("normal", "inverted", "auto", "both"),
    "thermal.mode": ("percentile", "fixed", "minmax"),
    "qos.reliability": RELIABILITIES,
    "topics.visible_transport": TRANSPORTS,
    "topics.thermal_transport": TRANSPORTS,
    "rig.refresh_model": ("", "xfeat", "sift", "matchanything_eloftr", "minima_splg", "minima_loftr",
                          "matchanything_roma", "minima_roma"),
}
_DESCRIPTIONS: dict[str, str] = {
    "model": "matcher: auto (MatchAnything-ELoFTR if weights are local, else xfeat), xfeat, sift, matchanything_eloftr, minima_splg, minima_loftr, matchanything_roma, minima_roma (RoMa: GPU; on the CPU only with worker.allow_cpu_frame_drops)",
    "backend": "ELoFTR inference backend",
    "device": "inference device",
    "precision": "GPU backends: fp32 or fp16",
    "network_size": "MatchAnything-ELoFTR input: auto (keep the aspect ratio, long side `resolution`) or WxH, multiples of 32 (640x480: the authors' Space)",
    "weights": "weights: ELoFTR model.safetensors or the authors' tensor-only .ckpt, MINIMA minima_lightglue.pth / minima_loftr.ckpt, RoMa matchanything_roma.ckpt / minima_roma.pth with dinov2_vitl14_pretrain.pth beside it (or their folder); never an ONNX model or engine, pickled objects are refused; empty = local cache",
    "resolution": "long side (px) the matcher resizes to (not RoMa: it resizes to the authors' fixed sizes)",
    "max_matches": "matches kept by the matcher (best first); RoMa models: matches sampled from the dense warp (the authors: 5000 MatchAnything, 10000 MINIMA)",
    "match_threshold": "matcher confidence threshold (not RoMa)",
    "roma_coarse_res": "RoMa models: square side (px) of the coarse pass, a multiple of 14 and of 8; 0 = the authors' 560 (smaller: faster, less accurate)",
    "roma_upsample_res": "RoMa models: square side (px) of the upsampled pass, a multiple of 8, at least the coarse side; 0 = the authors' 864",
    "match_rule": "ELoFTR selection: auto (weights' config), mtd (every pair above the threshold, MatchAnything), mnn (mutual nearest neighbours, EfficientLoFTR)",
    "geometry": "robust model: homography/affine (registration), essential (pose, needs CameraInfo), fundamental, none",
    "ransac_threshold": "inlier threshold (px) of the robust fit",
    "ransac_confidence": "confidence of the robust fit",
    "min_matches": "fewer matches/inliers than this: geometry status TOO_FEW_MATCHES",
    "min_inlier_ratio": "inliers/matches below this (0 <= r < 1; 0 = off): geometry status LOW_INLIER_RATIO",
    "min_quality": "OK needs the fit's calibrated quality score (p(right), 0-1) >= this, else LOW_QUALITY; 0 = off",
    "polarity": "thermal polarity: normal, inverted, auto (fit each, keep the better), both (pool both into one fit)",
    "refine": "homography/affine: match again with the thermal image warped by the first fit, keep the refit when it scores higher (2x matching time)",
    "thermal.mode": "thermal to 8 bit: percentile stretch, fixed raw range, or min/max",
    "thermal.low_percentile": "percentile mode: raw percentile mapped to 0",
    "thermal.high_percentile": "percentile mode: raw percentile mapped to 255",
    "thermal.fixed_min": "fixed mode: raw value mapped to 0",
    "thermal.fixed_max": "fixed mode: raw value mapped to 255",
    "thermal.clahe": "CLAHE after the stretch (low-contrast scenes)",
    "thermal.clahe_clip_limit": "CLAHE clip limit",
    "thermal.clahe_tile_grid": "CLAHE tiles per side",
    "thermal.invert": "hot = dark instead of hot = bright",
    "topics.visible_image": "visible sensor_msgs/Image topic",
    "topics.thermal_image": "thermal sensor_msgs/Image topic",
    "topics.visible_info": "visible sensor_msgs/CameraInfo topic",
    "topics.thermal_info": "thermal sensor_msgs/CameraInfo topic",
    "topics.use_camera_info": "subscribe to CameraInfo (geometry 'essential' needs K of both cameras)",
    "topics.visible_transport": "raw (sensor_msgs/Image) or compressed (CompressedImage JPEG/PNG on <visible_image>/compressed)",
    "topics.thermal_transport": "raw (sensor_msgs/Image) or compressed (CompressedImage PNG/JPEG on <thermal_image>/compressed)",
    "sync.slop": "max stamp difference (s) of a visible/thermal pair (strictly below)",
    "sync.max_queue_mb": "and at most this much image data (MiB) per stream; the oldest go first (sync_unpaired)",
    "sync.queue_size": "messages kept per stream while waiting for a partner",
    "qos.reliability": "image subscriptions: best_effort (sensor data) or reliable",
    "qos.depth": "image subscription history depth",
    "publish.correspondences": "publish correspondences (sensor_msgs/PointCloud2)",
    "publish.pose": "publish relative_pose (geometry 'essential')",
    "publish.transform": "publish relative_transform (geometry_msgs/TransformStamped)",
    "publish.tf": "also broadcast the visible->thermal transform on /tf",
    "publish.homography": "publish homography (homography/affine modes)",
    "publish.registered": "publish the thermal image warped into the visible image (homography/affine)",
    "publish.debug_image": "publish the matches drawn side by side",
    "frames.visible": "frame of the outputs; empty = visible image header frame_id",
    "frames.thermal": "child frame of pose/transform; empty = thermal image header frame_id",
    "output.inliers_only": "correspondences: only geometric inliers (else all, with the inlier flag)",
    "output.registered_normalized": "registered image: mono8 normalized thermal (else the raw thermal encoding)",
    "output.publish_on_failure": "publish correspondences even when the geometry fit failed",
    "output.debug_outliers": "debug/matches: also draw the outlier matches (red); default inliers only (readable)",
    "worker.queue_size": "pairs waiting for inference; when full the oldest is dropped",
    "worker.threads": "CPU threads of inference (torch, OpenCV); 0 = $MATCHANYTHING_THREADS, else one per core",
    "worker.allow_cpu_frame_drops": "run a model too slow for frame rate on the CPU (matchanything_roma, minima_roma: tens of seconds per pair), accepting that the node matches one pair at a time and drops, and counts (dropped_overload), the frames in between; false: such a model on the CPU is refused at start-up and at run time",
    "diagnostics.period": "seconds between /diagnostics messages",
    "diagnostics.warn_inlier_ratio": "WARN below this inlier ratio",
    "diagnostics.warn_latency": "WARN when the median stamp-to-publish latency (s) exceeds this",
    "diagnostics.stale_timeout": "seconds without a processed pair before WARN (ERROR if none ever)",
    "stamps.max_future": "reject stamps more than this (s) ahead of the node's clock (0 = off; only while the clock runs)",
    "stamps.reset_threshold": "a jump back above this (s) is a time reset once a second message confirms it; smaller: dropped",
    "limits.max_pixels": "largest image accepted (width*height, and 8 bytes per pixel of data), checked before decoding",
    "limits.min_side": "smallest image side (px) accepted, checked before decoding",
    # rig mode (matchanything_ros/rig.py, docs/NODE.md "Rig mode")
    "rig.enabled": "rig mode: estimate the fixed visible/thermal geometry over frames, gate each frame against it",
    "rig.window": "frames whose inliers are pooled for the rig estimate (changing it restarts the estimate)",
    "rig.max_points": "inliers kept per frame in the pool (random subset; at most 12000 pooled over rig.window; changing it restarts the estimate)",
    "rig.min_frames": "frames of evidence before the rig estimate counts as converged",
    "rig.gate_px": "homography: max corner distance (px) of a frame's H from the rig's, plus 3 sigma; beyond: RIG_MISMATCH",
    "rig.gate_deg": "essential: max rotation angle (deg) of a frame from the rig, plus 3 sigma; beyond: RIG_MISMATCH",
    "rig.gate_translation_deg": "essential: max translation-direction angle (deg) from the rig, plus 3 sigma",
    "rig.recent": "frames of the candidate estimate that watches for a changed rig (drift alarm)",
    "rig.alarm_frames": "frames in a row the candidate must differ before the rig counts as changed (ERROR, restart)",
    "rig.alarm_hold": "frames the ERROR stays after a detected rig change",
    "rig.refresh_model": "two-rate rig: a slower, more accurate model (e.g. minima_roma) that matches every rig.refresh_every-th pair in the background and adds its fit to the rig estimate while `model` answers every frame; empty = off",
    "rig.refresh_weights": "weights of rig.refresh_model (as `weights`; empty = its local cache)",
    "rig.refresh_every": "two-rate rig: pairs between refreshes (a refresh still running skips its turn, counted in rig_refresh_skipped)",
    "rig.refresh_only": "two-rate rig: the estimate pools only the refresh model's frames (the frame model's are gated and watched by the drift alarm)",
    "rig.refresh_wait": "two-rate rig: run each refresh inline, delaying that frame (repeatable bag evaluation); false: in the background",
    "rig.systematic_px": "essential: shared match error (px) added to the rig rotation covariance (0 = bootstrap only)",
    "rig.systematic_deg": "essential: shared match error (deg) added to the rig translation-direction covariance (0 = bootstrap only)",
    "publish.rig": "rig mode: publish rig/pose and rig/homography (latched) once converged",
    "publish.rig_tf_static": "rig mode: also send the rig estimate on /tf_static (opt-in: it may fight a URDF)",
    "output.rig_calibration_file": "rig mode: write the estimate to this YAML file (atomic; empty = none); start-up only, its folder must exist, never a symlink, FIFO or other special file",
}
# Changing these needs a restart: they shape subscriptions and publishers; and the one file the
# node writes is fixed at start-up (anyone on the graph can set parameters at run time).
_READ_ONLY_GROUPS = ("topics.", "qos.", "output.rig_calibration_file")


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _spec(name: str, default: Any, doc: str = "") -> ParamSpec:
    lo, hi = _RANGES.get(name, (None, None))
    return ParamSpec(
        name=name,
        default=list(default) if isinstance(default, tuple) else default,
        description=_DESCRIPTIONS.get(name, doc),
        read_only=name.startswith(_READ_ONLY_GROUPS),
        min_value=lo,
        max_value=hi,
        choices=_CHOICES.get(name, ()),
    )


def _node_specs() -> list[ParamSpec]:
    return [_spec(k, v) for k, v in NodeConfig().to_flat().items()]


def _pipeline_specs() -> list[ParamSpec]:
    return [_spec(k, v) for k, v in _flatten(dataclasses.asdict(PipelineConfig())).items()]


def parameter_specs() -> list[ParamSpec]:
    """Every parameter of the node: pipeline parameters first, then node parameters."""
    return _pipeline_specs() + _node_specs()


def split_parameters(values: dict[str, Any]) -> tuple[NodeConfig, PipelineConfig]:
    """Dotted parameter values -> (NodeConfig, PipelineConfig); unknown names raise ValueError.

    Types are strict, as in ROS: a double parameter needs a decimal point (``slop: 1.0``)."""
    specs = {s.name: s for s in parameter_specs()}
    node_values: dict[str, Any] = {}
    pipe_values: dict[str, Any] = {}
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(specs))}"
        )
    node_names = {s.name for s in _node_specs()}
    for key, value in values.items():
        value = _coerce(specs[key], value)
        (node_values if key in node_names else pipe_values)[key] = value
    return NodeConfig.from_flat(node_values), PipelineConfig.from_dict(pipe_values)


def _coerce(spec: ParamSpec, value: Any) -> Any:
    kind = spec.kind
    if kind is list and isinstance(value, (list, tuple)):
        return tuple(value)
    wrong_type = not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))
    if kind in (bool, int, float, str) and wrong_type:
        hint = f" (write {float(value)!r})" if kind is float and isinstance(value, int) else ""
        raise ValueError(
            f"parameter {spec.name!r} must be of type {kind.__name__}, got {value!r} "
            f"({type(value).__name__}){hint}"
        )
    if spec.choices and value not in spec.choices:
        raise ValueError(f"parameter {spec.name!r} must be one of {spec.choices}, got {value!r}")
    if spec.min_value is not None and not spec.min_value <= value <= spec.max_value:
        raise ValueError(f"parameter {spec.name!r} must be in [{spec.min_value}, {spec.max_value}], got {value!r}")
    return value


def runtime_problem(pipe_cfg: PipelineConfig) -> str | None:
    """Why the node must refuse to switch to ``pipe_cfg`` at run time, or None.

    Beyond :func:`split_parameters` (types, ranges), a change must name a matcher that can be
    built now without a download. These are the fast checks with the clearest reasons (weights
    that are not local, a backend or device this machine does not have, a file that is not a
    safe checkpoint); the node then builds the new matcher before it answers, and refuses the
    change if that fails."""
    from ..engines.availability import backend_problems

    backends = () if pipe_cfg.backend in ("auto", "torch") else (pipe_cfg.backend,)
    if pipe_cfg.model not in ("matchanything_eloftr", "minima_splg", "minima_loftr", "auto"):
        backends = ()  # xfeat and sift take no backend; RoMa: checked below
    if pipe_cfg.model != "sift" and (problems := backend_problems(backends, pipe_cfg.device)):
        return "; ".join(problems)
    if pipe_cfg.model in ROMA_MODELS:  # RoMa files, never downloaded here
        if pipe_cfg.backend not in ("auto", "torch") or pipe_cfg.precision != "fp32":
            return (f"model {pipe_cfg.model!r} runs on the torch backend in fp32 only (got backend "
                    f"{pipe_cfg.backend!r}, precision {pipe_cfg.precision!r})")
        from ..models.roma.files import resolve_files as roma_files

        try:
            roma_files(pipe_cfg.model, pipe_cfg.weights or None, allow_download=False)
        except Exception as exc:  # WeightsError: what is missing and how to get it
            return str(exc)
        return None
    if pipe_cfg.model in ("minima_splg", "minima_loftr"):  # MINIMA files, never downloaded here
        try:
            from ..models.minima.weights import resolve_files

            resolve_files(pipe_cfg.model, pipe_cfg.weights or None, allow_download=False)
        except ImportError as exc:
            return f"model {pipe_cfg.model!r} is not installed ({exc}; pip install kornia)"
        except Exception as exc:  # WeightsError: what is missing and how to get it
            return str(exc)
        return None
    if pipe_cfg.model != "matchanything_eloftr" and not pipe_cfg.weights:
        return None
    try:
        from ..models.eloftr.weights import find_local_weights

        found = find_local_weights(pipe_cfg.weights or None)
    except ImportError:
        return "model 'matchanything_eloftr' is not installed"
    except Exception as exc:  # WeightsError: an explicit path that does not exist
        return str(exc)
    if found is None and pipe_cfg.model == "matchanything_eloftr":
        return ("model 'matchanything_eloftr' needs local weights (set 'weights' or run "
                "`matchanything-ros weights download`); the node does not download at run time")
    if found is not None and pipe_cfg.weights:
        # an explicit file is read and checked against the network now (safe loaders only,
        # ~0.5 s for the published 64 MB): a pickled payload, a corrupt file or another
        # network's tensors are refused before the answer, not after it
        try:
            from ..models.eloftr.weights import config_for, load_state_dict

            load_state_dict(found, config_for(found))
        except Exception as exc:  # WeightsError and whatever a damaged file raises: one line
            return " ".join(str(exc).split())[:400]
    return None


def frame_rate_problem(node_cfg: NodeConfig, pipe_cfg: PipelineConfig) -> str | None:
    """Why the node must refuse to run ``pipe_cfg`` (at start-up or as a run-time change), or None:
    a model that takes tens of seconds per pair on the CPU (the RoMa models) would match one pair
    while the cameras send hundreds, the rest dropped. That is refused unless
    ``worker.allow_cpu_frame_drops`` says it is accepted. ``device: auto`` counts as the CPU when
    PyTorch sees no GPU."""
    from ..matching import SLOW_ON_CPU

    if pipe_cfg.model not in SLOW_ON_CPU or node_cfg.worker.allow_cpu_frame_drops or not on_cpu(pipe_cfg.device):
        return None
    return (f"model {pipe_cfg.model!r} on the CPU takes tens of seconds per pair: the node would match one pair "
            "and drop the frames in between; use device 'cuda', or set worker.allow_cpu_frame_drops: true to accept "
            "that (docs/NODE.md, 'Models too slow for frame rate')")


def on_cpu(device: str) -> bool:
    """Whether ``device`` ("auto", "cpu", "cuda", "cuda:N") runs on the CPU here."""
    if device == "auto":
        from ..devices import auto_device

        device = auto_device()
    return not device.startswith("cuda")


WILDCARD = "/**"


def node_fqn(node_name: str = "matcher_node", namespace: str = "/") -> str:
    """The fully qualified node name params-file sections are matched against (``/ns/name``)."""
    if node_name.startswith("/"):
        return "/" + node_name.strip("/")
    ns = namespace.strip("/")
    return f"/{ns}/{node_name}" if ns else f"/{node_name}"


def _read_document(path: Path) -> dict:
    from ..yaml_input import load_yaml_file

    try:
        document = load_yaml_file(path, "params file")
    except FileNotFoundError:
        raise ValueError(f"params file not found: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"params file {path} is a folder") from None
    if document is None:  # an empty file: rcl accepts it, it sets nothing
        return {}
    if not isinstance(document, dict):
        raise ValueError(f"params file {path}: expected a mapping of node names at the top level")
    return document


def params_sections(path: str | Path) -> dict[str, dict]:
    """``{"/fully/qualified/name": ros__parameters}`` of a ROS 2 params YAML, in file order.

    Names are normalized as rcl does: a leading ``/`` is added, and nested namespace keys
    (``ns: {node: {ros__parameters: ...}}``) join into ``/ns/node``."""
    path = Path(path)
    sections: dict[str, dict] = {}

    def walk(mapping: dict, prefix: str) -> None:
        for key, value in mapping.items():
            name = f"{prefix}/{str(key).strip('/')}"
            if isinstance(value, dict) and "ros__parameters" in value:
                params = value["ros__parameters"]
                if not isinstance(params, dict):
                    raise ValueError(f"params file {path}: section {key!r} has no 'ros__parameters' mapping")
                sections.setdefault(name, {}).update(params)
            elif isinstance(value, dict) and value:
                walk(value, name)
            else:
                raise ValueError(f"params file {path}: section {key!r} has no 'ros__parameters' mapping")

    walk(_read_document(path), "")
    return sections


def sections_for_node(path: str | Path, fqn: str) -> list[str]:
    """The sections of ``path`` that rclpy applies to the node ``fqn``: ``/**``, then ``fqn``.

    rclpy (Humble to Kilted) matches exactly these two names; other wildcards (``/*``,
    ``/**/name``) are rclcpp-only, so a key such as ``matcher_node:`` applies only to a node
    named ``/matcher_node`` (no namespace, not renamed)."""
    names = params_sections(path)
    return [name for name in (WILDCARD, fqn) if name in names]


def load_params_file(path: str | Path, node_name: str = "matcher_node",
                     namespace: str = "/") -> tuple[NodeConfig, PipelineConfig]:
    """Read a ROS 2 params YAML into configs, exactly as the node ``/<namespace>/<node_name>`` gets it.

    Sections apply in rclpy's order: ``/**`` (the presets' key: any namespace, any node name)
    first, then the node's fully qualified name (``/matcher_node``; ``matcher_node`` means the
    same). ``node_name`` may itself be fully qualified (``/x/y``). Nested mappings are dotted
    (``sync: {slop: 0.05}`` == ``sync.slop: 0.05``). Unknown names raise ValueError, and so does
    a file with no section for this node (the node itself only warns: see ros/matcher_node.py).
    """
    fqn = node_fqn(node_name, namespace)
    sections = params_sections(path)
    matched = sections_for_node(path, fqn)
    if not matched:
        raise ValueError(
            f"params file {path}: no section for node {fqn!r} (sections: {', '.join(sections) or 'none'}); "
            f"key it '/**:' (any node) or '{fqn}:', with 'ros__parameters:'"
        )
    values: dict[str, Any] = {}
    for name in matched:
        values.update(_flatten(sections[name]))
    values.pop("use_sim_time", None)  # a standard rclpy parameter, not ours
    return split_parameters(values)


def params_files_in_args(argv: list[str]) -> list[str]:
    """The ``--params-file`` paths among the ``--ros-args`` of a command line (rcl's syntax:
    ``--ros-args ... [--]``, repeatable); what the node was started with."""
    files, in_ros, it = [], False, iter(argv)
    for arg in it:
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--" and in_ros:
            in_ros = False
        elif in_ros and arg == "--params-file":
            files.append(next(it, ""))
    return [f for f in files if f]
