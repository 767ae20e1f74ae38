"""matcher_node: synchronized visible + thermal images in; correspondences, relative pose,
homography and the registered thermal image out.

A thin rclpy shell over the ROS-free core: :class:`~matchanything_ros.pipeline.Pipeline` does
the work, :mod:`matchanything_ros.node.sync` pairs images (or message_filters when installed),
:mod:`matchanything_ros.node.outputs` builds every message and :mod:`.health` the diagnostics.
Images are taken serialized and decoded by :func:`~matchanything_ros.node.pair_io.image_from_cdr`
(zero-copy pixels; the same message type bag replay reads), so node and replay share one input
path. Subscription callbacks only check and
pair messages; inference runs on one worker thread fed by a bounded queue that drops the oldest
pending pair under overload (see docs/NODE.md).

Run: ``ros2 run matchanything_ros matcher_node --ros-args --params-file config/uav_nadir.yaml``
or ``ros2 launch matchanything_ros matcher.launch.py``.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rcl_interfaces.msg import SetParametersResult

from ..imaging.encodings import ImageFormatError
from ..matching import MatcherError
from ..imaging.limits import SizeLimits
from ..node.config import (
    NodeConfig, frame_rate_problem, on_cpu, params_files_in_args, params_sections, runtime_problem,
    sections_for_node, split_parameters, valid_frame_id,
)
from ..node.health import NodeHealth, SequenceGaps
from ..node.outputs import OutputBuilder, rclpy_types
from ..node.pair_io import (
    STREAMS, THERMAL, VISIBLE, CameraInfoHistory, camera_info_from_cdr, compressed_from_cdr, image_topic,
    receive_image, camera_info_problem, camera_matrix, decode_image,
    image_from_cdr, output_frames, output_messages,
)
from ..node.rig_outputs import RigOutputs, rig_report, write_calibration
from ..node.sync import NS_PER_S, ApproximateTimeSynchronizer, stamp_to_ns
from ..node.threads import WAIT_POLICY_ENV, apply_threads, prepare_openmp
from ..node.worker import LatestWorker
from ..pipeline import Pipeline, PipelineConfig
from .params import current_values, declare_all

THROTTLE_S = 5.0
#: how long the worker waits for an image's own CameraInfo once the camera has shown infos
#: stamped like its images (a separate topic can arrive after the image); then the newest
#: one is used and counted in camera_info_late
CAMERA_INFO_WAIT_S = 0.5


class MatcherNode(Node):
    """The node; see the module docstring and docs/NODE.md for topics and parameters."""

    def __init__(self, argv: list[str] | None = None, *, start: bool = True, **kwargs: Any):
        """``start=False`` (the managed node, lifecycle_node.py): parameters are declared and
        checked, nothing is loaded or subscribed until :meth:`configure_stage` and
        :meth:`activate_stage`."""
        super().__init__("matcher_node", **kwargs)
        self._warn_unmatched_params_files(sys.argv if argv is None else argv)
        self._specs = declare_all(self)
        self.cfg, _ = split_parameters(current_values(self, self._specs))  # bad values: a clear error now

        self.out = OutputBuilder(rclpy_types())
        self.health = NodeHealth(
            name=f"{self.get_name()}: visible/thermal matching",
            hardware_id=self.get_fully_qualified_name(),
            start_time=time.monotonic(),
        )
        self._camera_info = [CameraInfoHistory(), CameraInfoHistory()]
        self._gate_lock = threading.Lock()  # stamp gate + message_filters input, per message
        self._loss, self._loss_lock = SequenceGaps(), threading.Lock()
        # The worker holds _pipeline_lock while matching; reconfiguration swaps under it.
        self._pipeline_lock = threading.Lock()
        self._sync_base = {"sync_unpaired": 0, "time_resets": 0}  # counts of synchronizers replaced
        self._threads_applied: int | None = None  # worker.threads as set in the worker thread
        self.pipeline: Pipeline | None = None
        self.worker: LatestWorker | None = None
        self._diag_timer = None
        self._subscriptions_made: list = []
        self._publishers_made: list = []
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if start:
            self.configure_stage()
            self.activate_stage()

    # -- stages (all at once for the plain node; one per transition for the managed one) ----
    def configure_stage(self) -> None:
        """Build the pipeline (model loading: a bad model or weights raises a clear error) and
        the publishers."""
        self.cfg, pipe_cfg = split_parameters(current_values(self, self._specs))
        problem = frame_rate_problem(self.cfg, pipe_cfg)
        if problem:  # before the model loads: a RoMa model on the CPU without the opt-in
            raise ValueError(problem)
        self.pipeline = Pipeline(pipe_cfg)
        self.get_logger().info(f"matcher ready: {self.pipeline.matcher.describe()}, geometry {pipe_cfg.geometry}")
        self._warn_slow_cpu(pipe_cfg)
        self._make_publishers()

    def _warn_slow_cpu(self, pipe_cfg: PipelineConfig) -> None:
        """One line when a model too slow for frame rate runs on the CPU by the user's choice."""
        from ..matching import SLOW_ON_CPU

        if pipe_cfg.model in SLOW_ON_CPU and on_cpu(pipe_cfg.device):
            self.get_logger().warning(
                f"{pipe_cfg.model} on the CPU (worker.allow_cpu_frame_drops): tens of seconds per pair; the frames "
                "in between are dropped and counted (dropped_overload)")

    def activate_stage(self) -> None:
        """Subscribe and start matching and reporting."""
        self._make_sync()
        self._make_subscriptions()
        self.worker = LatestWorker(self._process, self.cfg.worker.queue_size)
        self._diag_timer = self._diagnostics_timer(self.cfg.diagnostics.period)

    def deactivate_stage(self) -> None:
        """Stop subscribing, matching and reporting; the pipeline stays loaded."""
        for sub in self._subscriptions_made:
            self.destroy_subscription(sub)
        self._subscriptions_made = []
        if self._diag_timer is not None:
            self._diag_timer.cancel()
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def cleanup_stage(self) -> None:
        """Free the pipeline (the model) and the publishers."""
        for pub in self._publishers_made:
            self.destroy_publisher(pub)
        self._publishers_made = []
        with self._pipeline_lock:
            self.pipeline = None

    def _diagnostics_timer(self, period: float):
        """/diagnostics on a steady clock: a simulated clock that stops (or never starts) must
        not silence the node's health reports."""
        return self.create_timer(period, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))

    # -- setup ------------------------------------------------------------------------------
    def _warn_unmatched_params_files(self, argv: list[str]) -> None:
        """rclpy silently ignores a params file with no section for this node (e.g. keyed
        'matcher_node:' while the node runs as /payload/matcher_node): say so at start-up."""
        fqn = self.get_fully_qualified_name()
        for path in params_files_in_args(argv):
            try:
                if sections_for_node(path, fqn):
                    continue
                keys = ", ".join(params_sections(path)) or "none"
            except ValueError as exc:
                keys = f"unreadable: {exc}"
            self.get_logger().warning(
                f"params file {path} holds no entry for this node {fqn} (sections: {keys}): none of its "
                f"values apply; key it '/**:' (any node) or '{fqn}:'")

    def _make_publishers(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped, TransformStamped
        from sensor_msgs.msg import Image, PointCloud2
        from std_msgs.msg import Float64MultiArray

        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self.pub_corr = self.create_publisher(PointCloud2, "correspondences", qos)
        self.pub_pose = self.create_publisher(PoseWithCovarianceStamped, "relative_pose", qos)
        self.pub_transform = self.create_publisher(TransformStamped, "relative_transform", qos)
        self.pub_homography = self.create_publisher(Float64MultiArray, "homography", qos)
        self.pub_registered = self.create_publisher(Image, "registered/image", qos)
        self.pub_debug = self.create_publisher(Image, "debug/matches", qos)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._tf = None  # created on first use: tf2_ros broadcaster, else a TFMessage publisher
        # rig mode: latched (transient_local), so a late subscriber gets the current estimate
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_rig_pose = self.create_publisher(PoseWithCovarianceStamped, "rig/pose", latched)
        self.pub_rig_homography = self.create_publisher(Float64MultiArray, "rig/homography", latched)
        self._publishers_made = [self.pub_corr, self.pub_pose, self.pub_transform, self.pub_homography,
                                 self.pub_registered, self.pub_debug, self.pub_diag, self.pub_rig_pose,
                                 self.pub_rig_homography]
        self.rig_out = RigOutputs(self.out)
        self._tf_static = None
        self._rig_calibration: tuple | None = None  # the last (estimate, frame, child, stamp) for the file

    def _tf_static_send(self, transform: Any) -> None:
        """/tf_static: tf2_ros' StaticTransformBroadcaster, else a latched TFMessage publisher."""
        if self._tf_static is None:
            try:
                from tf2_ros import StaticTransformBroadcaster

                self._tf_static = StaticTransformBroadcaster(self).sendTransform
            except ImportError:
                msg = self.out.tf_message([])
                if msg is None:
                    self.get_logger().warning(
                        "publish.rig_tf_static is on but neither tf2_ros nor tf2_msgs is installed: /tf_static "
                        "skipped (the estimate is still on 'rig/pose')", once=True)
                    return
                latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
                pub = self.create_publisher(type(msg), "/tf_static", latched)
                self._tf_static = lambda t: pub.publish(self.out.tf_message([t]))
        self._tf_static(transform)

    def _tf_send(self, transform: Any) -> None:
        if self._tf is None:
            try:
                from tf2_ros import TransformBroadcaster

                broadcaster = TransformBroadcaster(self)
                self._tf = broadcaster.sendTransform
            except ImportError:
                msg = self.out.tf_message([])
                if msg is None:
                    self.get_logger().warning(
                        "publish.tf is on but neither tf2_ros nor tf2_msgs is installed: /tf skipped "
                        "(the transform is still on 'relative_transform')", once=True)
                    return
                pub = self.create_publisher(type(msg), "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
                self._tf = lambda t: pub.publish(self.out.tf_message([t]))
        self._tf(transform)

    def _make_sync(self) -> None:
        """message_filters' ApproximateTimeSynchronizer when installed, else the in-package
        one (same pairing rule). Both are fed by our own callbacks after input checks and the
        stamp gate (node.sync.StampGate: the in-package synchronizer's own)."""
        c, st = self.cfg.sync, self.cfg.stamps
        old = getattr(self, "_sync", None)
        if old is not None:  # a rebuild (sync.* / stamps.* changed): counters go on, nothing lost uncounted
            dropped = sum(len(old.queued(i)) for i in range(2))  # queued, never to pair now
            self._sync_base["sync_unpaired"] += old.stats.evicted + dropped
            self._sync_base["time_resets"] += old.gate.resets
        self._sync = ApproximateTimeSynchronizer(
            2, c.queue_size, c.slop, reset_threshold_ns=int(st.reset_threshold * NS_PER_S),
            max_future_ns=int(st.max_future * NS_PER_S) if st.max_future > 0 else None,
            max_bytes=int(c.max_queue_mb * 2**20))
        self._mf_inputs = None
        try:
            import message_filters

            inputs = [message_filters.SimpleFilter(), message_filters.SimpleFilter()]
            mf = message_filters.ApproximateTimeSynchronizer(inputs, c.queue_size, c.slop)
            mf.registerCallback(lambda v, t: self._on_pair(v, t))
            from builtin_interfaces.msg import Time

            self._mf_inputs, self._mf_sync, self._mf_time = inputs, mf, Time
        except Exception:  # not installed (PyPI wheels) or an incompatible version
            pass
        self.sync_backend = "message_filters" if self._mf_inputs else "matchanything_ros.node.sync"

    def _report_sync_counts(self) -> None:
        """sync_unpaired and time_resets into diagnostics: the replaced synchronizers' and this one's."""
        self.health.set_count("sync_unpaired", self._sync_base["sync_unpaired"] + self._sync.stats.evicted)
        self.health.set_count("time_resets", self._sync_base["time_resets"] + self._sync.gate.resets)

    def _make_subscriptions(self) -> None:
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        t, q = self.cfg.topics, self.cfg.qos
        reliability = ReliabilityPolicy.RELIABLE if q.reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(depth=q.depth, reliability=reliability, history=HistoryPolicy.KEEP_LAST)
        # raw=True: the callback gets the serialized message (see image_from_cdr for why)
        # raw CameraInfo too: an undecodable one is counted here instead of vanishing in rclpy
        self._compressed = (t.visible_transport == "compressed", t.thermal_transport == "compressed")
        subs = [(CompressedImage if self._compressed[i] else Image, image_topic(topic, transport), self._on_image, i)
                for i, topic, transport in ((VISIBLE, t.visible_image, t.visible_transport),
                                            (THERMAL, t.thermal_image, t.thermal_transport))]
        if t.use_camera_info:
            subs += [(CameraInfo, t.visible_info, self._on_info, VISIBLE),
                     (CameraInfo, t.thermal_info, self._on_info, THERMAL)]
        for kind, topic, handler, index in subs:
            # two arguments: rclpy passes the MessageInfo too (publication sequence numbers)
            self._subscriptions_made.append(self.create_subscription(
                kind, topic, lambda m, info, h=handler, i=index, t=topic: self._received(t, info) or h(i, m), qos,
                raw=True, event_callbacks=self._event_callbacks(topic)))

    def _received(self, topic: str, info: Any) -> None:
        """Count the messages a publisher sent that never reached this callback."""
        try:
            gid = info["publisher_gid"]
            key = (topic, bytes(gid["data"]) if isinstance(gid, dict) else gid)
            with self._loss_lock:
                lost = self._loss.observe(key, info["publication_sequence_number"])
        except Exception:  # an RMW without the info: nothing to count
            return
        if lost:
            self.health.count("messages_lost", lost)
            self.get_logger().warning(f"{lost} message(s) lost on {topic} before reaching the node",
                                      throttle_duration_sec=THROTTLE_S)

    def _event_callbacks(self, topic: str) -> Any:
        """QoS events of one subscription: messages the middleware lost (never delivered to a
        callback) and publishers with incompatible QoS, counted in diagnostics."""
        from rclpy.event_handler import SubscriptionEventCallbacks

        def lost(info: Any) -> None:  # the middleware's own report (also in messages_lost)
            self.health.count("middleware_lost", int(info.total_count_change))

        def incompatible(info: Any) -> None:
            self.health.count("qos_incompatible", int(info.total_count_change))
            self.get_logger().warning(f"a publisher on {topic} has incompatible QoS", throttle_duration_sec=THROTTLE_S)

        return SubscriptionEventCallbacks(message_lost=lost, incompatible_qos=incompatible)

    # -- callbacks (executor thread; never block) -----------------------------------------
    def _on_info(self, index: int, raw: bytes) -> None:
        stream = STREAMS[index]
        try:
            msg = camera_info_from_cdr(raw)
            problem = camera_info_problem(msg)
        except ImageFormatError as exc:
            problem = ("camera_info_malformed", str(exc))
        except Exception as exc:  # never end rclpy.spin
            problem = ("camera_info_malformed", f"{type(exc).__name__}: {exc}")
        if problem is not None:
            self.health.on_bad_input(f"{stream}_{problem[0]}", f"{stream} camera_info: {problem[1]}")
            self.get_logger().warning(f"ignoring {stream} camera_info: {problem[1]}", throttle_duration_sec=THROTTLE_S)
            return
        self._camera_info[index].add(msg)

    def _on_image(self, index: int, raw: bytes) -> None:
        try:
            try:
                msg = compressed_from_cdr(raw) if self._compressed[index] else image_from_cdr(raw)
            except ImageFormatError as exc:
                self.health.on_bad_input(f"{STREAMS[index]}_malformed", f"{STREAMS[index]}: {exc}")
                self.get_logger().warning(f"dropping {STREAMS[index]} image: {exc}", throttle_duration_sec=THROTTLE_S)
                return
            self._handle_image(index, msg)
        except Exception as exc:  # an exception here would end rclpy.spin: count it instead
            self.health.on_error("callback_errors", f"image callback failed: {exc}")
            self.get_logger().error(f"image callback failed: {exc}", throttle_duration_sec=THROTTLE_S)

    def _handle_image(self, index: int, msg: Any) -> None:
        stream = STREAMS[index]
        self.health.on_input(stream, time.monotonic())
        lim = self.cfg.limits
        msg, problem = receive_image(msg, self._compressed[index], SizeLimits(lim.max_pixels, lim.min_side))
        if problem is not None:
            reason, text = problem
            self.health.on_bad_input(f"{stream}_{reason}", f"{stream} {text}")
            self.get_logger().warning(f"dropping {stream} image: {text}", throttle_duration_sec=THROTTLE_S)
            return
        stamp = stamp_to_ns(msg.header.stamp)
        now_ns = self.get_clock().now().nanoseconds  # 0 while a simulated clock has not started
        with self._gate_lock:
            if self._mf_inputs is None:
                pairs, rejected = self._sync.offer(index, stamp, msg, now_ns)
                admission = None
            else:
                admission = self._sync.gate.admit(index, stamp, msg, now_ns)
                pairs, rejected = [], admission.rejected
            for reason in rejected:
                if reason == "stamp_backwards":
                    self.health.count("stamp_backwards")
                else:
                    self.health.on_bad_input(f"{stream}_{reason}", f"{stream} stamp {stamp / NS_PER_S:.9f}: {reason}")
                self.get_logger().warning(f"dropping {stream} image stamped {stamp / NS_PER_S:.3f} s: {reason}",
                                          throttle_duration_sec=THROTTLE_S)
            self._report_sync_counts()
            if admission is not None:
                self._signal_message_filters(index, admission)
        for visible, thermal in pairs:
            self._on_pair(visible, thermal)
        with self._gate_lock:  # a parameter change may be replacing the synchronizer
            self._report_sync_counts()

    def _signal_message_filters(self, index: int, admission: Any) -> None:
        if admission.reset:
            queues = getattr(self._mf_sync, "queues", [])
            if index < len(queues):
                queues[index].clear()
        for _, msg in admission.accepted:
            # message_filters reads stamps with rclpy's Time.from_msg, which accepts only
            # builtin_interfaces/Time: give the (rosbags) message one
            msg.header.stamp = self._mf_time(sec=int(msg.header.stamp.sec), nanosec=int(msg.header.stamp.nanosec))
            self._mf_inputs[index].signalMessage(msg)

    def _on_pair(self, visible: Any, thermal: Any) -> None:
        now = time.monotonic()
        self.health.on_pair(now)
        worker = self.worker
        if worker is None:  # deactivated while this pair was in flight (managed node)
            return
        worker.submit((visible, thermal, now))  # CameraInfo: looked up by the worker (its own stamp)
        self.health.set_count("dropped_overload", worker.dropped)
        # Hand the GIL to the woken worker now: otherwise it waits until this executor thread
        # blocks in rcl_wait again (docs/NODE.md: the node's own overhead went 2.0 -> 0.9 ms).
        time.sleep(0)

    # -- worker thread ----------------------------------------------------------------------
    def _decode(self, msg: Any, stream: str) -> np.ndarray | None:
        try:
            return decode_image(msg, stream)
        except ImageFormatError as exc:
            self.health.on_bad_input(f"{stream}_unsupported", f"{stream}: {exc}")
            self.get_logger().warning(f"dropping {stream} image: {exc}", throttle_duration_sec=THROTTLE_S)
            return None

    def _process(self, item: tuple) -> None:
        if self.cfg.worker.threads != self._threads_applied:  # here: torch counts threads per thread
            self._threads_applied = self.cfg.worker.threads
            used = apply_threads(self._threads_applied)
            self.get_logger().info(f"inference threads: {used} (worker.threads {self._threads_applied}, "
                                   f"{WAIT_POLICY_ENV}={os.environ.get(WAIT_POLICY_ENV, 'unset')})")
        vis_msg, th_msg, paired_at = item
        infos = (None, None)
        if self.cfg.topics.use_camera_info:
            # each image's own CameraInfo, waited for briefly when it is still in flight; before
            # the pipeline lock, so a parameter change's swap never waits on it
            infos = tuple(self._camera_info[i].for_image(msg, CAMERA_INFO_WAIT_S)
                          for i, msg in ((VISIBLE, vis_msg), (THERMAL, th_msg)))
            self.health.set_count("camera_info_late", sum(h.late for h in self._camera_info))
        with self._pipeline_lock:
            self._process_locked((vis_msg, th_msg, *infos, paired_at), self.pipeline)

    def _process_locked(self, item: tuple, pipeline: Pipeline) -> None:
        vis_msg, th_msg, vis_info, th_info, paired_at = item
        cfg = self.cfg
        visible, thermal = self._decode(vis_msg, "visible"), self._decode(th_msg, "thermal")
        if visible is None or thermal is None:
            return
        K0 = K1 = None
        if cfg.topics.use_camera_info:
            K0, K1 = camera_matrix(vis_info, vis_msg), camera_matrix(th_info, th_msg)
        if pipeline.config.geometry == "essential" and (K0 is None or K1 is None):
            self.health.count("missing_camera_info")
            self.get_logger().warning(
                "geometry 'essential' needs CameraInfo (K) for both cameras, matching the image size; "
                f"have visible={K0 is not None}, thermal={K1 is not None}: no pose published",
                throttle_duration_sec=THROTTLE_S)
        try:
            result = pipeline.process(visible, thermal, K0, K1)
        except Exception as exc:  # whatever the matcher raises, the node keeps serving
            self.health.on_error("matcher_errors", f"matcher error: {exc}")
            self.get_logger().error(f"matching failed: {exc}", throttle_duration_sec=THROTTLE_S)
            return
        try:
            self._publish(result, cfg, pipeline, vis_msg, th_msg, visible, thermal, paired_at)
        except Exception as exc:
            if not self.context.ok():  # shutting down: publishers are gone
                return
            self.health.on_error("publish_errors", f"publishing failed: {exc}")
            self.get_logger().error(f"publishing failed: {exc}", throttle_duration_sec=THROTTLE_S)

    def _publish(self, result, cfg: NodeConfig, pipeline: Pipeline, vis_msg, th_msg, visible, thermal,
                 paired_at: float) -> None:
        stamp = stamp_to_ns(vis_msg.header.stamp)
        publishers = {
            "correspondences": self.pub_corr.publish,
            "pose": self.pub_pose.publish,
            "transform": self.pub_transform.publish,
            "tf": self._tf_send,
            "homography": self.pub_homography.publish,
            "registered": self.pub_registered.publish,
            "debug_image": self.pub_debug.publish,
        }
        for key, msg in output_messages(result, cfg, self.out, vis_msg, th_msg, visible, thermal,
                                        pipeline.config.thermal, stamp):
            publishers[key](msg)
        if pipeline.rig is not None:
            self._publish_rig(pipeline, cfg, vis_msg, th_msg, stamp)
        # NodeHealth keeps only latencies it can trust (0..60 s): hostile stamps cannot skew them
        latency = (self.get_clock().now().nanoseconds - stamp) / NS_PER_S
        now = time.monotonic()
        self.health.on_result(now, latency, result, internal=now - paired_at - result.timings.get("total", 0.0))

    def _publish_rig(self, pipeline: Pipeline, cfg: NodeConfig, vis_msg, th_msg, stamp: int) -> None:
        frame, child = output_frames(cfg, vis_msg, th_msg)
        estimate = pipeline.rig.snapshot()
        publishers = {"rig_pose": self.pub_rig_pose.publish, "rig_homography": self.pub_rig_homography.publish,
                      "rig_tf_static": self._tf_static_send}
        for key, msg in self.rig_out.messages(estimate, cfg, stamp, frame, child):
            if key == "rig_calibration":
                self.rig_out.file_written(self._write_calibration(cfg, (msg, frame, child, stamp)))
            else:
                publishers[key](msg)
        if estimate is not None and estimate.converged and valid_frame_id(frame) and valid_frame_id(child):
            self._rig_calibration = (estimate, frame, child, stamp)  # for the file on shutdown

    def _write_calibration(self, cfg: NodeConfig, state: tuple) -> bool:
        try:
            write_calibration(cfg.output.rig_calibration_file, *state)
            return True
        except (OSError, ValueError) as exc:  # a full disk, a bad path or frame must not stop matching
            self.health.on_error("calibration_write_errors", f"cannot write the rig calibration file: {exc}")
            self.get_logger().error(f"cannot write the rig calibration file: {exc}", throttle_duration_sec=THROTTLE_S)
            return False

    # -- diagnostics and parameters -------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        self.health.set_count("dropped_overload", self.worker.dropped)
        reports = [self.health.node_report(time.monotonic(), self.cfg, self.pipeline.config, self.sync_backend)]
        rig = self.pipeline.rig
        if rig is not None:
            reports.append(rig_report(self.pipeline, f"{self.get_name()}: rig calibration", self.get_fully_qualified_name()))
        self.pub_diag.publish(self.out.diagnostics(self.get_clock().now().nanoseconds, reports))

    def set_parameters_atomically(self, parameter_list: list) -> SetParametersResult:
        """rclpy's, with a clear reason for names this node does not declare (rclpy's own
        reason lists no name). The parameter services call this for every request."""
        known = {spec.name for spec in self._specs}
        unknown = [p.name for p in parameter_list if p.name not in known and not self.has_parameter(p.name)]
        if unknown:
            import difflib

            hints = [f"{n!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(n, known, 1)) else repr(n)
                     for n in unknown]
            return SetParametersResult(successful=False, reason=(
                f"undeclared parameter(s) {', '.join(hints)}: matcher_node declares the {len(known)} "
                "parameters listed in docs/NODE.md"))
        return super().set_parameters_atomically(parameter_list)

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        """Validate a change with the start-up rules (types, ranges, a buildable matcher)
        before accepting it; the reason of a refusal is in the result."""
        values = current_values(self, self._specs)
        for param in params:
            if param.name in values:
                values[param.name] = param.value
            elif param.name == "use_sim_time" and param.value != self.get_parameter("use_sim_time").value:
                # the clock behind the stamp rules: a switch at run time (one /clock message
                # away from a frozen clock) would reject every pair that follows
                return SetParametersResult(successful=False, reason=(
                    "use_sim_time is start-up only: start the node with -p use_sim_time:=true"))
        try:
            node_cfg, pipe_cfg = split_parameters(values)
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if (problem := frame_rate_problem(node_cfg, pipe_cfg)) is not None:
            return SetParametersResult(successful=False, reason=problem)  # before anything loads
        if self.pipeline is None:  # not configured (managed node): configure builds from these
            self.cfg = node_cfg
            return SetParametersResult(successful=True)
        matcher_fields = ("model", "weights", "backend", "device", "precision")
        if any(getattr(pipe_cfg, f) != getattr(self.pipeline.config, f) for f in matcher_fields) \
                and (problem := runtime_problem(pipe_cfg)) is not None:
            return SetParametersResult(successful=False, reason=problem)  # fast, clear, no download
        if pipe_cfg != self.pipeline.config:
            try:
                self._apply_pipeline(pipe_cfg)
            except Exception as exc:  # whatever the build raises: refused, nothing changed
                self.health.on_error("reconfigure_errors", f"reconfigure refused: {exc}")
                return SetParametersResult(successful=False, reason=(
                    "cannot build the new pipeline, nothing changed: " + " ".join(str(exc).split())[:400]))
        old = self.cfg
        self.cfg = node_cfg
        if (node_cfg.sync != old.sync or node_cfg.stamps != old.stamps) and getattr(self, "_sync", None) is not None:
            with self._gate_lock:
                self._make_sync()
                self._report_sync_counts()
        if node_cfg.worker != old.worker and self.worker is not None:
            self.worker.set_queue_size(node_cfg.worker.queue_size)
        if node_cfg.diagnostics.period != old.diagnostics.period and self._diag_timer is not None:
            self._diag_timer.cancel()
            self._diag_timer = self._diagnostics_timer(node_cfg.diagnostics.period)
        return SetParametersResult(successful=True)

    def _apply_pipeline(self, cfg: PipelineConfig) -> None:
        """Build what ``cfg`` needs and swap it in, before the parameter change is answered
        (issue 18, item 4): an accepted change is a running one, a failed build is a refusal.
        A new matcher (model loading: about a second; an ONNX export or TensorRT build that is
        not cached yet: much longer) is built outside the pipeline lock, so the worker keeps
        matching with the old one, but the executor waits: images arriving meanwhile wait in
        the subscriptions' queues (``qos.depth``) and what overflows them is counted in
        ``messages_lost``. (A second executor thread for the parameter service would keep them
        flowing, but with rclpy's MultiThreadedExecutor the fuzz test's messages waited
        more than 1.5 s on two cores: stamps 2.5 s ahead arrived no longer in the future.) The swap waits for the pair being matched."""
        rebuilt = Pipeline(cfg) if cfg.matcher_key() != self.pipeline.config.matcher_key() else None
        with self._pipeline_lock:
            if rebuilt is not None:
                rebuilt.adopt_rig(self.pipeline)  # the rig estimate outlives a new matcher
                self.pipeline = rebuilt
            else:
                self.pipeline.reconfigure(cfg)
        self.get_logger().info(f"pipeline reconfigured: {self.pipeline.matcher.describe()}, geometry {cfg.geometry}")
        if rebuilt is not None:
            self._warn_slow_cpu(cfg)

    def destroy_node(self) -> None:
        worker = getattr(self, "worker", None)  # absent when __init__ failed or not active
        if worker is not None:
            worker.stop()
        last = getattr(self, "_rig_calibration", None)
        if last is not None and self.cfg.output.rig_calibration_file:
            self._write_calibration(self.cfg, last)  # keep the newest estimate on shutdown
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``matcher_node``. SIGINT and SIGTERM end it cleanly (exit 0) at any
    moment, start-up included: rclpy's signal handler shuts the context down, and whatever
    rclpy call the start-up was in then fails; that failure is the shutdown, not an error."""
    from rclpy.exceptions import ParameterException
    from rclpy.executors import ExternalShutdownException

    from ..node.malloc_tuning import tune_malloc

    argv = sys.argv if args is None else args
    problem = _params_files_problem(argv)
    if problem:  # before rcl parses them: its parser expands aliases and has no depth limit
        print(f"[FATAL] [matcher_node]: cannot start: {problem}", file=sys.stderr)
        return 1
    openmp_line = prepare_openmp()  # before torch loads libgomp (docs/NODE.md, Threads)
    malloc_line = tune_malloc()  # before DDS allocates its first sample buffers
    try:
        rclpy.init(args=args)
    except Exception as exc:  # rcl's own argument or params-file errors (RCLError): one line
        print(f"[FATAL] [matcher_node]: cannot start: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    node = None
    try:
        # from here on SIGINT/SIGTERM shut down cleanly (rclpy's handlers are installed)
        rclpy.logging.get_logger("matcher_node").info("starting: reading parameters, loading the model")
        node = MatcherNode(argv=argv)
        node.get_logger().info(f"{malloc_line}; {openmp_line}")
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, MatcherError, ParameterException) as exc:  # configuration errors at startup
        if not rclpy.ok():
            return 0
        hint = " (a double parameter needs a decimal point, e.g. 1.0)" if "DOUBLE" in str(exc) else ""
        rclpy.logging.get_logger("matcher_node").fatal(f"cannot start: {exc}{hint}")
        return 1
    except Exception:
        if rclpy.ok():
            raise
        # shut down by a signal while starting (RCLError "context is invalid" and the like)
    finally:
        _shutdown(node)
    return 0


def _params_files_problem(argv: list[str]) -> str | None:
    """Why a ``--params-file`` of the command line cannot be read (yaml_input's bounds), or None."""
    from ..yaml_input import load_yaml_file

    for path in params_files_in_args(argv):
        try:
            load_yaml_file(path, "params file")
        except FileNotFoundError:
            return f"params file not found: {path}"
        except (OSError, ValueError) as exc:
            return str(exc)
    return None


def _shutdown(node: MatcherNode | None) -> None:
    """Destroy the node and shut rclpy down, whatever state a signal left them in."""
    try:
        if node is not None:
            node.destroy_node()
    except Exception:  # the context is already gone: nothing left to release
        if rclpy.ok():
            raise
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
