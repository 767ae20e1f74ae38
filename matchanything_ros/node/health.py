"""Counters, rates and the OK/WARN/ERROR verdict behind the node's /diagnostics (ROS-free).

The node calls the ``on_*`` methods from its callbacks and worker thread; :meth:`NodeHealth.report`
turns the state into one :class:`~matchanything_ros.node.outputs.DiagnosticReport` per period.
Times are in seconds on one monotonic clock chosen by the caller.
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

import numpy as np

from .outputs import ERROR, OK, WARN, DiagnosticReport

STREAMS = ("visible", "thermal")
#: a stamp -> publish latency outside [0, this] s is not trusted (a hostile or unsynchronised
#: stamp) and is counted as ``latency_untrusted`` instead of entering the latency figures
LATENCY_TRUST_S = 60.0


class SequenceGaps:
    """Messages lost between a publisher and our callback, from the publication sequence
    numbers rclpy's MessageInfo carries: a jump from n to n+k means k-1 messages never reached
    the callback (DDS queue overflow, network loss, reader history overwritten). Messages sent
    before the first one received from a publisher are not counted (a late-joining subscriber
    never had them). Keyed by (topic, publisher gid); at most ``max_publishers`` remembered."""

    def __init__(self, max_publishers: int = 64):
        self.max_publishers = max_publishers
        self._last: collections.OrderedDict = collections.OrderedDict()

    def observe(self, key, sequence: int | None) -> int:
        """Record one received message; returns how many were lost just before it."""
        if sequence is None:  # the RMW does not report sequence numbers
            return 0
        last = self._last.pop(key, None)
        self._last[key] = sequence
        while len(self._last) > self.max_publishers:
            self._last.popitem(last=False)
        return max(0, sequence - last - 1) if last is not None and sequence > last else 0


class RateMeter:
    """Events per second over a sliding window."""

    def __init__(self, window: float = 5.0):
        self.window = window
        self._times: collections.deque = collections.deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()


@dataclass
class Thresholds:
    warn_inlier_ratio: float = 0.2
    warn_latency: float = 0.5
    stale_timeout: float = 3.0


class NodeHealth:
    """Thread-safe bookkeeping of everything /diagnostics reports."""

    def __init__(self, name: str, hardware_id: str = "", start_time: float = 0.0, window: int = 50):
        self.name = name
        self.hardware_id = hardware_id
        self.start_time = start_time
        self._lock = threading.Lock()
        self.input_rate = {s: RateMeter() for s in STREAMS}
        self.pair_rate = RateMeter()
        self.output_rate = RateMeter()
        self.received = collections.Counter()
        self.bad_input: collections.Counter = collections.Counter()  # reason -> count
        self.counts = collections.Counter()  # pairs, processed, matcher_errors, ...
        self.last_truncated = 0
        self.latency = collections.deque(maxlen=window)  # s, stamp -> publish
        self.inference = collections.deque(maxlen=window)  # s, pipeline total
        self.overhead = collections.deque(maxlen=window)  # s, latency minus pipeline time
        self.internal = collections.deque(maxlen=window)  # s, pair complete -> published, minus pipeline
        self.last_processed: float | None = None
        self.last_matches = 0
        self.last_inliers = 0
        self.last_status = ""
        self.last_quality: float | None = None
        self.last_message = ""
        self.last_error = ""  # sticky until a pair succeeds
        self.last_bad_input = ""  # stream, size/stamp and reason of the newest bad message
        self.model = ""
        self._reported = collections.Counter()  # counter snapshot at the previous report

    # -- events ---------------------------------------------------------------------------
    def on_input(self, stream: str, now: float) -> None:
        with self._lock:
            self.received[stream] += 1
            if stream in self.input_rate:
                self.input_rate[stream].tick(now)

    def on_bad_input(self, reason: str, detail: str = "") -> None:
        """A dropped input message: ``reason`` is the counter key (``<stream>_<why>``),
        ``detail`` the human line (stream, size or stamp) shown as ``last_bad_input``."""
        with self._lock:
            self.bad_input[reason] += 1
            self.last_bad_input = detail or reason

    def on_pair(self, now: float) -> None:
        with self._lock:
            self.counts["pairs"] += 1
            self.pair_rate.tick(now)

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def set_count(self, key: str, value: int) -> None:
        """Mirror a counter owned elsewhere (synchronizer, worker)."""
        with self._lock:
            self.counts[key] = int(value)

    def on_error(self, key: str, message: str) -> None:
        with self._lock:
            self.counts[key] += 1
            self.last_error = message

    def on_result(self, now: float, latency: float | None, result, internal: float | None = None) -> None:
        """A processed pair: ``latency`` stamp -> published (s; None or outside [0,
        LATENCY_TRUST_S]: untrusted, counted, left out of the figures); ``internal`` (optional)
        pair complete -> published minus pipeline time: the node's own code and queueing."""
        with self._lock:
            if internal is not None:
                self.internal.append(internal)
            self.counts["processed"] += 1
            self.output_rate.tick(now)
            self.last_processed = now
            if latency is not None and 0.0 <= latency <= LATENCY_TRUST_S:
                self.latency.append(latency)
                self.overhead.append(latency - result.timings.get("total", 0.0))
            else:
                self.counts["latency_untrusted"] += 1
            self.inference.append(result.timings.get("total", 0.0))
            self.last_matches = result.num_matches
            # ELoFTR: more pairs passed the threshold than its K output slots hold (weakest dropped)
            self.last_truncated = int(getattr(result.matches, "info", {}).get("truncated", 0))
            self.counts["matches_truncated"] += self.last_truncated > 0
            self.last_inliers = result.num_inliers
            self.last_status = result.status
            self.last_quality = result.quality.score
            self.last_message = result.status_message
            self.model = result.model
            self.last_error = ""

    # -- report ---------------------------------------------------------------------------
    def node_report(self, now: float, node_cfg, pipeline_config, sync_name: str) -> DiagnosticReport:
        """:meth:`report` with the node's thresholds and the "what is running" values; the node
        and bag replay publish exactly this."""
        d = node_cfg.diagnostics
        return self.report(
            now,
            Thresholds(d.warn_inlier_ratio, d.warn_latency, d.stale_timeout),
            extra={
                "geometry_mode": pipeline_config.geometry,
                "resolution": pipeline_config.resolution,
                "max_matches": pipeline_config.max_matches,
                "backend": pipeline_config.backend,
                "sync": sync_name,
                "sync_slop_s": node_cfg.sync.slop,
                "min_quality": pipeline_config.min_quality,
            },
        )

    def report(self, now: float, thresholds: Thresholds, extra: dict | None = None) -> DiagnosticReport:
        with self._lock:
            level, reasons = OK, []

            def flag(lvl: int, reason: str) -> None:
                nonlocal level
                level = max(level, lvl)
                reasons.append(reason)

            totals = collections.Counter(self.counts)
            totals["bad_input"] = sum(self.bad_input.values())
            delta = {k: totals[k] - self._reported[k] for k in totals}
            self._reported = totals

            if self.last_error:
                flag(ERROR, self.last_error)
            if self.last_processed is None:
                if now - self.start_time > thresholds.stale_timeout:
                    waiting = [s for s in STREAMS if self.received[s] == 0]
                    flag(ERROR if waiting else WARN,
                         f"no image received on {', '.join(waiting)}" if waiting else "no pair processed yet")
            elif now - self.last_processed > thresholds.stale_timeout:
                flag(WARN, f"no pair processed for {now - self.last_processed:.1f} s")
            if self.last_status and self.last_status != "OK":
                flag(WARN, f"geometry {self.last_status}: {self.last_message}".rstrip(": "))
            ratio = self.last_inliers / max(1, self.last_matches)
            if self.last_processed is not None and ratio < thresholds.warn_inlier_ratio:
                flag(WARN, f"inlier ratio {ratio:.2f} < {thresholds.warn_inlier_ratio:.2f}")
            lat = float(np.median(self.latency)) if self.latency else 0.0
            if lat > thresholds.warn_latency:
                flag(WARN, f"latency {lat * 1000:.0f} ms > {thresholds.warn_latency * 1000:.0f} ms")
            for key, what in (
                ("bad_input", "malformed input message(s)"),
                ("dropped_overload", "pair(s) dropped (processing slower than input)"),
                ("stamp_backwards", "message(s) with stamps going backwards"),
                ("missing_camera_info", "pair(s) without the CameraInfo the pose needs"),
                ("camera_info_late", "image(s) fitted with an older CameraInfo (theirs came too late)"),
                ("matcher_errors", "matcher error(s)"),
                ("messages_lost", "message(s) lost before the callback (publication sequence gaps)"),
                ("qos_incompatible", "publisher(s) with incompatible QoS"),
                ("calibration_write_errors", "rig calibration file write(s) failed"),
            ):
                if delta.get(key, 0) > 0:
                    flag(WARN, f"{delta[key]} {what}")

            values: dict[str, object] = {
                "model": self.model,
                "input_rate_visible_hz": self.input_rate["visible"].rate(now),
                "input_rate_thermal_hz": self.input_rate["thermal"].rate(now),
                "pair_rate_hz": self.pair_rate.rate(now),
                "output_rate_hz": self.output_rate.rate(now),
                "latency_median_ms": lat * 1000,
                "latency_max_ms": (max(self.latency) * 1000) if self.latency else 0.0,
                "inference_median_ms": (float(np.median(self.inference)) * 1000) if self.inference else 0.0,
                # stamp -> publish minus pipeline time: decoding, queueing, message building
                "overhead_median_ms": (float(np.median(self.overhead)) * 1000) if self.overhead else 0.0,
                # pair complete -> publish minus pipeline time: worker hand-off, decoding, messages
                "internal_overhead_median_ms": (float(np.median(self.internal)) * 1000) if self.internal else 0.0,
                "matches": self.last_matches,
                "matches_dropped_by_top_k": self.last_truncated,
                "pairs_truncated_by_top_k": totals["matches_truncated"],
                "inliers": self.last_inliers,
                "inlier_ratio": float(ratio),
                "geometry_status": self.last_status,
                "quality_score": "" if self.last_quality is None else float(self.last_quality),
                "received_visible": self.received["visible"],
                "received_thermal": self.received["thermal"],
                "pairs": totals["pairs"],
                "processed": totals["processed"],
                "dropped_overload": totals["dropped_overload"],
                "sync_unpaired": totals["sync_unpaired"],
                "stamp_backwards": totals["stamp_backwards"],
                "time_resets": totals["time_resets"],
                "bad_input": totals["bad_input"],
                "missing_camera_info": totals["missing_camera_info"],
                "camera_info_late": totals["camera_info_late"],
                "matcher_errors": totals["matcher_errors"],
                "reconfigure_errors": totals["reconfigure_errors"],
                "calibration_write_errors": totals["calibration_write_errors"],
                "publish_errors": totals["publish_errors"],
                "callback_errors": totals["callback_errors"],
                "messages_lost": totals["messages_lost"],
                "middleware_lost": totals["middleware_lost"],
                "qos_incompatible": totals["qos_incompatible"],
                "latency_untrusted": totals["latency_untrusted"],
                "last_bad_input": self.last_bad_input,
            }
            for reason, n in sorted(self.bad_input.items()):
                values[f"bad_input.{reason}"] = n
            values.update(extra or {})
            message = "; ".join(reasons) if reasons else "OK"
            return DiagnosticReport(level, self.name, message, self.hardware_id, values)
