"""Bag replay: run the matcher node's pipeline over a recorded bag and write its outputs to a bag.

What is the same as the live node (``matchanything_ros.ros.matcher_node``): parameters (a ROS 2
params file read by ``node.config.load_params_file``), input topics (resolved in ``namespace``
like the node's relative names), the input checks, the approximate-time pairing
(``matchanything_ros.node.sync``, message_filters' rule), image decoding, CameraInfo handling, the
pipeline, and every output message (``matchanything_ros.node.outputs`` with rosbags types): topics
``correspondences``, ``relative_pose``, ``relative_transform``, ``homography``,
``registered/image``, ``debug/matches``, ``/tf`` and ``/diagnostics`` (from the node's
``NodeHealth``, one report per ``diagnostics.period`` of bag time).

What differs, on purpose: every pair is processed (the node drops the oldest pending pair when
inference is slower than the cameras); all outputs of one pair are written at one bag time,
``t_pair`` (``log_time="input"``, the default) or ``t_pair + processing time``
(``log_time="processing"``), where ``t_pair`` is the receive time of the message that completed
the pair. A topic is declared when its first message is written (no empty topics).

Replay adds two topics (``diagnostic_msgs/DiagnosticArray``): ``replay/timings``, one message
per processed pair (stamp = the visible stamp, key/values = :data:`TIMING_KEYS`), which
``evaluate`` reads for the latency statistics; and ``replay/summary``, one message when replay
starts and one when it ends (:data:`SUMMARY_STATUS`), from which ``evaluate`` knows which
outputs were enabled and how much of the input was replayed (no end message: the replay was
killed).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..node.config import NodeConfig
from ..node.pair_io import (
    COMPRESSED_TYPE, STREAMS, THERMAL, VISIBLE, CameraInfoHistory, camera_matrix, decode_image, image_topic,
    output_messages, receive_image,
)
from ..pipeline import Pipeline, PipelineConfig
from ..imaging.limits import SizeLimits
from ..node.sync import NS_PER_S, ApproximateTimeSynchronizer
from .storage import BagError, BagReader, BagWriter, stamp_ns

log = logging.getLogger(__name__)

IMAGE_TYPE = "sensor_msgs/msg/Image"
INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TIMINGS_TOPIC = "replay/timings"
TIMINGS_STATUS = "matchanything_ros replay"
SUMMARY_TOPIC = "replay/summary"
SUMMARY_STATUS = "matchanything_ros replay summary"
LOG_TIMES = ("input", "processing")
#: key/values of each ``replay/timings`` message (ms unless noted)
TIMING_KEYS = (
    "decode_ms",  # sensor_msgs/Image -> numpy, both images
    "preprocess_ms",  # pipeline: thermal normalisation
    "match_ms",  # pipeline: matcher (both polarities with polarity auto)
    "geometry_ms",  # pipeline: robust fit
    "pipeline_ms",  # pipeline total
    "outputs_ms",  # building + serialising + writing the output messages
    "frame_ms",  # decode + pipeline + outputs: the node's per-pair cost
    "sync_wait_ms",  # receive time of the pair's completing message - visible stamp
    "latency_ms",  # sync_wait_ms + frame_ms: stamp -> publish for a node that is never behind
    "num_matches",
    "num_inliers",
    "status",  # geometry status (OK, TOO_FEW_MATCHES, LOW_INLIER_RATIO, LOW_QUALITY, ...) or RIG_MISMATCH
    "quality",  # the verdict's calibrated score (empty when none), geometry/quality.py
    "rig_state",  # rig mode: CONVERGING, TRACKING, DISPUTED, CHANGED (absent without rig mode)
    "rig_level",  # rig mode: 0 OK, 1 WARN, 2 ERROR (the rig diagnostics level after this frame)
    "rig_ms",  # rig mode: pool, refit and bootstrap of the rig estimate (part of pipeline_ms)
    "polarity",
    "thermal_stamp_ns",
)

# Output topics (relative names resolve in the node's namespace, as in the node).
OUTPUT_TOPICS = {
    "correspondences": ("correspondences", "sensor_msgs/msg/PointCloud2"),
    "pose": ("relative_pose", "geometry_msgs/msg/PoseWithCovarianceStamped"),
    "transform": ("relative_transform", "geometry_msgs/msg/TransformStamped"),
    "tf": ("/tf", "tf2_msgs/msg/TFMessage"),
    "homography": ("homography", "std_msgs/msg/Float64MultiArray"),
    "registered": ("registered/image", IMAGE_TYPE),
    "debug_image": ("debug/matches", IMAGE_TYPE),
    "diagnostics": ("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray"),
    "timings": (TIMINGS_TOPIC, "diagnostic_msgs/msg/DiagnosticArray"),
    "summary": (SUMMARY_TOPIC, "diagnostic_msgs/msg/DiagnosticArray"),
    # rig mode (node/rig_outputs.py)
    "rig_pose": ("rig/pose", "geometry_msgs/msg/PoseWithCovarianceStamped"),
    "rig_homography": ("rig/homography", "std_msgs/msg/Float64MultiArray"),
    "rig_tf_static": ("/tf_static", "tf2_msgs/msg/TFMessage"),
}
RIG_TOPIC_KEYS = {"rig_pose": "rig", "rig_homography": "rig", "rig_tf_static": "rig_tf_static"}


def resolve(name: str, namespace: str = "/") -> str:
    """A ROS name resolved like a node's relative topic name in ``namespace``."""
    if name.startswith("/"):
        return name
    ns = "/" + namespace.strip("/")
    return (ns.rstrip("/") + "/" + name) if ns != "/" else "/" + name


@dataclass
class ReplayOptions:
    """Where replay reads from and how it writes."""

    namespace: str = "/"  # the node's namespace: resolves its relative topic names
    storage: str = "mcap"  # output storage: mcap or sqlite3
    version: int = 5  # output rosbag2 metadata version: 5 (Humble+), 8 (Jazzy+), 9 (Kilted+)
    distro: str = "humble"  # message definitions written into the output bag
    copy_inputs: bool = False  # also copy the input images and CameraInfo into the output
    max_pairs: int | None = None  # stop after this many pairs
    # output log (bag) time of a pair's outputs: "input" = receive time of the message that
    # completed the pair (reproducible; the output plays in step with the input), or
    # "processing" = that + this machine's processing time (when a never-behind node publishes)
    log_time: str = "input"
    progress: bool = True  # tqdm progress bar on stderr


@dataclass
class ReplaySummary:
    """What a replay did; ``error`` is set when the input bag was damaged."""

    input_bag: str
    output_bag: str
    messages_read: int = 0
    images: dict[str, int] = field(default_factory=lambda: {"visible": 0, "thermal": 0})
    pairs: int = 0
    processed: int = 0
    ok: int = 0
    bad_input: int = 0
    matcher_errors: int = 0
    unpaired_visible: int = 0
    # why images went unpaired (both streams): refused by the stamp gate as going backwards,
    # pushed out of a full sync queue (or dropped at a time reset)
    stamp_backwards: int = 0
    evicted: int = 0
    skipped_chunks: int = 0  # damaged MCAP chunks left out (their messages lost), the rest read
    missing_visible: int = 0  # visible images the bag's metadata lists that were not read
    wall_s: float = 0.0
    frame_ms: list[float] = field(default_factory=list)
    interrupted: bool = False
    error: str | None = None
    model: str = ""

    def text(self) -> str:
        """Multi-line human summary."""
        lines = [
            f"replayed {self.input_bag} -> {self.output_bag}",
            f"  images: {self.images['visible']} visible, {self.images['thermal']} thermal; "
            f"{self.pairs} pairs, {self.processed} processed, {self.ok} with geometry OK",
        ]
        if self.frame_ms:
            ms = np.asarray(self.frame_ms)
            lines.append(
                f"  per pair: median {np.median(ms):.1f} ms, p90 {np.percentile(ms, 90):.1f} ms; "
                f"{self.processed / max(self.wall_s, 1e-9):.2f} pairs/s ({self.model})"
            )
        if self.unpaired_visible:
            causes = []
            if self.stamp_backwards:
                causes.append(f"{self.stamp_backwards} image(s) refused as stamped before their stream's recent "
                              "stamps (stamps.*: a publisher whose clock jumps)")
            if self.evicted:
                causes.append(f"{self.evicted} image(s) pushed out of a full sync queue before a partner came "
                              "(sync.queue_size, sync.max_queue_mb) or dropped at a time reset")
            lines.append(f"  {self.unpaired_visible} visible image(s) unpaired: "
                         + ("; ".join(causes) + "; the rest found no partner within sync.slop" if causes
                            else "no thermal partner within sync.slop"))
        if self.skipped_chunks:
            lines.append(f"  skipped {self.skipped_chunks} damaged chunk(s) of the input bag (CRC): their messages "
                         f"({self.missing_visible} visible image(s)) are lost, the chunks after them were replayed")
        if self.bad_input or self.matcher_errors:
            lines.append(f"  dropped: {self.bad_input} malformed image(s), {self.matcher_errors} matcher error(s)")
        if self.interrupted:
            lines.append(f"  interrupted: the output bag holds the {self.processed} pairs processed so far")
        return "\n".join(lines)


class BagReplay:
    """Replays one bag; see :func:`replay`."""

    def __init__(
        self,
        node_cfg: NodeConfig,
        pipe_cfg: PipelineConfig | None,
        options: ReplayOptions,
        pipeline: Pipeline | None = None,
        on_result: Callable[[int, Any], None] | None = None,
    ):
        self.cfg = node_cfg
        self.options = options
        self.on_result = on_result
        self._pipe_cfg = pipe_cfg
        self.pipeline = pipeline
        if pipeline is not None and pipe_cfg is not None:
            self.pipeline.reconfigure(pipe_cfg)

    def input_topics(self) -> dict[str, str]:
        t, ns = self.cfg.topics, self.options.namespace
        return {  # a compressed stream is read from <image>/compressed, as the node subscribes
            "visible_image": resolve(image_topic(t.visible_image, t.visible_transport), ns),
            "thermal_image": resolve(image_topic(t.thermal_image, t.thermal_transport), ns),
            "visible_info": resolve(t.visible_info, ns),
            "thermal_info": resolve(t.thermal_info, ns),
        }

    def output_topic(self, key: str) -> str:
        return resolve(OUTPUT_TOPICS[key][0], self.options.namespace)

    def run(self, bag: str | Path, out: str | Path) -> ReplaySummary:
        from ..node.outputs import OutputBuilder, rosbags_types
        from ..node.health import NodeHealth

        opts, cfg = self.options, self.cfg
        if opts.log_time not in LOG_TIMES:
            raise BagError(f"unknown log time {opts.log_time!r}; choose one of {', '.join(LOG_TIMES)}")
        summary = ReplaySummary(str(bag), str(out))
        reader = BagReader(bag, opts.distro, salvage=True).open()
        try:
            topics = self.input_topics()
            compressed = (cfg.topics.visible_transport == "compressed", cfg.topics.thermal_transport == "compressed")
            image_type = [COMPRESSED_TYPE if c else IMAGE_TYPE for c in compressed]
            for index, key in ((VISIBLE, "visible_image"), (THERMAL, "thermal_image")):
                stream = STREAMS[index]
                if topics[key] not in reader.topics and not compressed[index] \
                        and topics[key].rstrip("/") + "/compressed" in reader.topics:
                    raise BagError(f"bag {bag} has the {stream} images compressed on {topics[key]}/compressed; "
                                   f"replay with -p topics.{stream}_transport=compressed")
            vis_info = reader.require_topic(topics["visible_image"], (image_type[VISIBLE],))
            reader.require_topic(topics["thermal_image"], (image_type[THERMAL],))
            wanted = [topics["visible_image"], topics["thermal_image"]]
            if cfg.topics.use_camera_info:
                wanted += [t for t in (topics["visible_info"], topics["thermal_info"]) if t in reader.topics]
            if reader.damage:
                log.warning("%s; replaying the readable part", reader.damage)
            if Path(out).exists():
                raise BagError(f"output bag {out} exists already; remove it or choose another path")
            if self.pipeline is None:  # built after the cheap checks: a wrong bag fails at once
                self.pipeline = Pipeline(self._pipe_cfg or PipelineConfig())
            writer = BagWriter(out, storage=opts.storage, version=opts.version, distro=opts.distro).open()
        except BaseException:
            reader.close()
            raise

        self.out = OutputBuilder(rosbags_types(writer.typestore))
        self.writer = writer
        self._last_out_ns: int | None = None
        self._registered_topics: set[str] = set()
        # Topics are declared by their first message (a bag lists no empty topic); which
        # outputs were enabled goes into the start record of replay/summary, so evaluate knows
        # that a missing homography is a miss.
        enabled = {key for key in ("correspondences", "pose", "transform", "tf", "homography", "registered", "debug_image")
                   if getattr(cfg.publish, key)}
        if self.pipeline.rig is not None:
            from ..node.rig_outputs import RigOutputs

            self.rig_out = RigOutputs(self.out)
            enabled |= {key for key, flag in RIG_TOPIC_KEYS.items() if getattr(cfg.publish, flag)}
        self._enabled = sorted(self.output_topic(key) for key in enabled)
        last_t_ns: int | None = None
        last_visible_stamp: int | None = None
        last_pair_stamp: int | None = None
        stream_of = {topics["visible_image"]: VISIBLE, topics["thermal_image"]: THERMAL}
        info_of = {topics["visible_info"]: VISIBLE, topics["thermal_info"]: THERMAL}
        sync = ApproximateTimeSynchronizer(2, cfg.sync.queue_size, cfg.sync.slop,
                                           reset_threshold_ns=int(cfg.stamps.reset_threshold * NS_PER_S),
                                           max_bytes=int(cfg.sync.max_queue_mb * 2**20))
        self.health = NodeHealth(name="matcher_node: visible/thermal matching", hardware_id="/matcher_node (replay)")
        camera_info = [CameraInfoHistory(), CameraInfoHistory()]
        next_diag_ns: int | None = None
        started = time.perf_counter()
        bar = None
        if opts.progress:
            from tqdm import tqdm

            bar = tqdm(total=vis_info.count, desc="replay", unit="img", dynamic_ncols=True)
        try:
            for topic, t_ns, msg in reader.messages(wanted):
                summary.messages_read += 1
                last_t_ns = t_ns if last_t_ns is None else max(last_t_ns, t_ns)
                if next_diag_ns is None:
                    self._write_summary(t_ns, {"state": "started", "input_bag": str(bag)})
                    writer.flush()  # committed at once: a replay killed later is known as one
                    next_diag_ns = t_ns + int(cfg.diagnostics.period * NS_PER_S)
                    self.health.start_time = t_ns / NS_PER_S
                period_ns = int(cfg.diagnostics.period * NS_PER_S)
                if t_ns - next_diag_ns > 10 * period_ns:  # a gap in the recording: one report, not thousands
                    next_diag_ns = t_ns
                while t_ns >= next_diag_ns:  # the node's diagnostics timer, on bag time
                    self._write_diagnostics(next_diag_ns)
                    next_diag_ns += period_ns
                if opts.copy_inputs:
                    self._write(topic, image_type[stream_of[topic]] if topic in stream_of else INFO_TYPE, t_ns, msg)
                if topic in info_of:
                    camera_info[info_of[topic]].add(msg)
                    continue
                index = stream_of[topic]
                stream = STREAMS[index]
                summary.images[stream] += 1
                if index == VISIBLE:
                    last_visible_stamp = stamp_ns(msg.header)
                self.health.on_input(stream, t_ns / NS_PER_S)
                if bar is not None and index == VISIBLE:
                    bar.update(1)
                msg, problem = receive_image(msg, compressed[index], SizeLimits(cfg.limits.max_pixels, cfg.limits.min_side))
                if problem is not None:
                    summary.bad_input += 1
                    self.health.on_bad_input(f"{stream}_{problem[0]}", f"{stream} {problem[1]}")
                    continue
                pairs, rejected = sync.offer(index, stamp_ns(msg.header), msg)
                for reason in rejected:  # the node's stamp rules; bag time has no "now" to check against
                    if reason != "stamp_backwards":
                        summary.bad_input += 1
                        self.health.on_bad_input(f"{stream}_{reason}")
                for vis_msg, th_msg in pairs:
                    summary.pairs += 1
                    last_pair_stamp = max(last_pair_stamp or 0, stamp_ns(vis_msg.header))
                    self.health.on_pair(t_ns / NS_PER_S)
                    self._process(vis_msg, th_msg, camera_info[VISIBLE].for_image(vis_msg),
                                  camera_info[THERMAL].for_image(th_msg), t_ns, summary)
                    if bar is not None:
                        bar.set_postfix(pairs=summary.pairs, ok=summary.ok, refresh=False)
                self.health.set_count("sync_unpaired", sync.stats.evicted)
                self.health.set_count("stamp_backwards", sync.stats.backwards)
                self.health.set_count("time_resets", sync.stats.resets)
                if opts.max_pairs is not None and summary.pairs >= opts.max_pairs:
                    break
        except KeyboardInterrupt:
            summary.interrupted = True
        except BagError as exc:
            summary.error = f"{exc}; the output bag {out} keeps the {summary.processed} pairs replayed before it"
        finally:
            if bar is not None:
                bar.close()
            summary.wall_s = time.perf_counter() - started
            summary.messages_read = reader.messages_read
            summary.skipped_chunks = reader.skipped_chunks
            summary.unpaired_visible = max(0, summary.images["visible"] - summary.pairs - _bad(self.health, "visible"))
            summary.stamp_backwards, summary.evicted = sync.stats.backwards, sync.stats.evicted
            stopped_by_max = opts.max_pairs is not None and summary.pairs >= opts.max_pairs
            summary.missing_visible = max(0, vis_info.count - summary.images["visible"])
            if summary.error is None and not summary.interrupted and not stopped_by_max \
                    and summary.images["visible"] < vis_info.count and not summary.skipped_chunks:
                summary.error = (
                    f"bag {bag} ended early: its metadata lists {vis_info.count} visible images, "
                    f"only {summary.images['visible']} could be read; the output bag keeps what was replayed"
                )
            try:
                if last_t_ns is not None:
                    state = ("interrupted" if summary.interrupted else "input_damaged" if summary.error
                             else "max_pairs" if stopped_by_max else "complete")
                    self._write_summary(max(last_t_ns, self._last_out_ns or 0), {
                        "state": state,
                        "visible_images_read": str(summary.images["visible"]),
                        "last_visible_stamp_ns": str(last_visible_stamp if last_visible_stamp is not None else ""),
                        "last_pair_stamp_ns": str(last_pair_stamp if last_pair_stamp is not None else ""),
                        "pairs": str(summary.pairs),
                        "processed": str(summary.processed),
                    })
                self._final_calibration()
                writer.close()
            finally:
                reader.close()
        return summary

    # -- per pair -------------------------------------------------------------------------
    def _process(self, vis_msg, th_msg, vis_info, th_info, t_pair_ns: int, summary: ReplaySummary) -> None:
        from ..imaging.encodings import ImageFormatError

        cfg, pipeline = self.cfg, self.pipeline
        t0 = time.perf_counter()
        try:
            visible, thermal = decode_image(vis_msg, "visible"), decode_image(th_msg, "thermal")
        except ImageFormatError as exc:
            summary.bad_input += 1
            self.health.on_bad_input("unsupported")
            log.warning("dropping pair: %s", exc)
            return
        t1 = time.perf_counter()
        K0 = K1 = None
        if cfg.topics.use_camera_info:
            K0, K1 = camera_matrix(vis_info, vis_msg), camera_matrix(th_info, th_msg)
        if pipeline.config.geometry == "essential" and (K0 is None or K1 is None):
            self.health.count("missing_camera_info")
        try:
            result = pipeline.process(visible, thermal, K0, K1)
        except Exception as exc:  # as the node: whatever the matcher raises is counted, not fatal
            summary.matcher_errors += 1
            self.health.on_error("matcher_errors", f"matcher error: {exc}")
            log.error("matching failed: %s", exc)
            return
        t2 = time.perf_counter()
        # Output time: the pair's completion (input), or when a node that is never behind
        # would publish (pair complete + work: processing); see ReplayOptions.log_time.
        t_out = t_pair_ns + (int((t2 - t0) * NS_PER_S) if self.options.log_time == "processing" else 0)
        self._last_out_ns = max(self._last_out_ns or 0, t_out)
        with self.writer.group():  # a pair's outputs and timings are committed together
            self._publish(result, vis_msg, th_msg, visible, thermal, t_out)
            t3 = time.perf_counter()
            stamp = stamp_ns(vis_msg.header)
            sync_wait_ms = (t_pair_ns - stamp) / 1e6
            frame_ms = 1000 * (t3 - t0)
            timings = {
                "decode_ms": 1000 * (t1 - t0),
                "preprocess_ms": 1000 * result.timings.get("preprocess", 0.0),
                "match_ms": 1000 * result.timings.get("match", 0.0),
                "geometry_ms": 1000 * result.timings.get("geometry", 0.0),
                "pipeline_ms": 1000 * result.timings.get("total", 0.0),
                "outputs_ms": 1000 * (t3 - t2),
                "frame_ms": frame_ms,
                "sync_wait_ms": sync_wait_ms,
                "latency_ms": sync_wait_ms + frame_ms,
                "num_matches": result.num_matches,
                "num_inliers": result.num_inliers,
                "status": result.status,
                "quality": "" if result.quality.score is None else round(result.quality.score, 4),
                "polarity": result.polarity,
                "thermal_stamp_ns": stamp_ns(th_msg.header),
            }
            if result.rig is not None:
                timings.update(rig_state=result.rig.state, rig_level=result.rig.level,
                               rig_ms=1000 * result.timings.get("rig", 0.0))
            self._write_timings(stamp, t_out, timings)
        if self.on_result is not None:
            self.on_result(stamp, result)
        # health sees when a never-behind node would have published, whatever the log time
        t_done = t_pair_ns + int((t3 - t0) * NS_PER_S)
        self.health.on_result(
            t_done / NS_PER_S, (t_done - stamp) / NS_PER_S, result, internal=(t3 - t0) - result.timings.get("total", 0.0)
        )
        summary.processed += 1
        summary.ok += int(result.ok)
        summary.frame_ms.append(frame_ms)
        summary.model = result.model

    def _write_summary(self, t_ns: int, values: dict[str, str]) -> None:
        """A replay/summary record: the start one says what runs, the end one how far it got."""
        from ..node.outputs import OK, DiagnosticReport

        values = {**values, "log_time": self.options.log_time, "outputs": ",".join(self._enabled)}
        report = DiagnosticReport(OK, SUMMARY_STATUS, f"replay {values['state']}", "", values)
        self._emit("summary", t_ns, self.out.diagnostics(t_ns, [report]))
    def _final_calibration(self) -> None:
        """Rig mode: the newest converged estimate into the calibration file, as the node does
        on shutdown."""
        last = getattr(self, "_rig_last", None)
        if last is not None and self.cfg.output.rig_calibration_file:
            self._write_calibration(*last)

    def _write_calibration(self, *state) -> bool:
        """As the node: a calibration file that cannot be written is counted
        (``calibration_write_errors``), never the end of the replay."""
        from ..node.rig_outputs import write_calibration

        try:
            write_calibration(self.cfg.output.rig_calibration_file, *state)
            return True
        except (OSError, ValueError) as exc:
            self.health.on_error("calibration_write_errors", f"cannot write the rig calibration file: {exc}")
            return False

    def _register(self, topic: str, msgtype: str) -> None:
        if topic not in self._registered_topics:
            self.writer.add_topic(topic, msgtype)
            self._registered_topics.add(topic)

    def _write(self, topic: str, msgtype: str, t_ns: int, msg: Any) -> None:
        self._register(topic, msgtype)
        self.writer.write(topic, t_ns, msg)

    def _emit(self, key: str, t_ns: int, msg: Any) -> None:
        if msg is not None:
            self._write(self.output_topic(key), OUTPUT_TOPICS[key][1], t_ns, msg)

    def _publish(self, result, vis_msg, th_msg, visible, thermal, t_out: int) -> None:
        """What the node publishes for this pair (pair_io.output_messages), written to the bag."""
        stamp = stamp_ns(vis_msg.header)
        for key, msg in output_messages(result, self.cfg, self.out, vis_msg, th_msg, visible, thermal,
                                        self.pipeline.config.thermal, stamp):
            self._emit(key, t_out, self.out.tf_message([msg]) if key == "tf" else msg)
        if self.pipeline.rig is not None:
            from ..node.config import valid_frame_id
            from ..node.pair_io import output_frames

            frame, child = output_frames(self.cfg, vis_msg, th_msg)
            estimate = self.pipeline.rig.snapshot()
            for key, msg in self.rig_out.messages(estimate, self.cfg, stamp, frame, child):
                if key == "rig_calibration":
                    self.rig_out.file_written(self._write_calibration(msg, frame, child, stamp))
                else:
                    self._emit(key, t_out, self.out.tf_message([msg]) if key == "rig_tf_static" else msg)
            if estimate is not None and estimate.converged and valid_frame_id(frame) and valid_frame_id(child):
                self._rig_last = (estimate, frame, child, stamp)  # for the file at the end

    def _write_timings(self, stamp: int, t_out: int, timings: dict[str, Any]) -> None:
        from ..node.outputs import OK, DiagnosticReport

        values = {k: (f"{v:.6g}" if isinstance(v, float) else str(v)) for k, v in timings.items()}
        report = DiagnosticReport(OK, TIMINGS_STATUS, "per-frame replay timings", "", values)
        self._emit("timings", t_out, self.out.diagnostics(stamp, [report]))

    def _write_diagnostics(self, t_ns: int) -> None:
        reports = [self.health.node_report(
            t_ns / NS_PER_S, self.cfg, self.pipeline.config, "matchanything_ros.node.sync (replay)"
        )]
        if self.pipeline.rig is not None:
            from ..node.rig_outputs import rig_report

            reports.append(rig_report(self.pipeline, "matcher_node: rig calibration", "/matcher_node (replay)"))
        self._emit("diagnostics", t_ns, self.out.diagnostics(t_ns, reports))


def _bad(health: Any, stream: str) -> int:
    return sum(n for reason, n in health.bad_input.items() if reason.startswith(stream))


def replay(
    bag: str | Path,
    out: str | Path,
    node_cfg: NodeConfig | None = None,
    pipe_cfg: PipelineConfig | None = None,
    options: ReplayOptions | None = None,
    pipeline: Pipeline | None = None,
    on_result: Callable[[int, Any], None] | None = None,
) -> ReplaySummary:
    """Replay ``bag`` through the node's pipeline and write the node's outputs to ``out``.

    ``pipeline``: an already built pipeline to reuse (reconfigured to ``pipe_cfg``);
    ``on_result(visible_stamp_ns, PipelineResult)`` is called for every processed pair.

    The output bag is always closed properly (Ctrl-C, damaged input): ``summary.interrupted``
    / ``summary.error`` say why it stopped early. Errors before anything is written (missing
    topics, unreadable bag, existing output) raise BagError."""
    replayer = BagReplay(node_cfg or NodeConfig(), pipe_cfg, options or ReplayOptions(), pipeline, on_result)
    return replayer.run(bag, out)
