"""Drive a live ``matcher_node`` with :mod:`.fuzz` traffic over DDS and account for every
message (rclpy; used by test/test_fuzz_node.py and scripts/fuzz_node.py).

The node runs as a subprocess with :func:`fuzz_params`; publishers and subscriptions are
reliable with deep queues, so every message reaches the node and none may vanish: each hostile
one must be counted under its expected diagnostics key, each valid pair must be answered on
``correspondences`` (``messages_lost`` reports anything the middleware dropped).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .fuzz import FUZZ_LIMITS, FUZZ_MAX_FUTURE_S, FUZZ_RESET_THRESHOLD_S, TOPICS, FuzzMessage

REPO = Path(__file__).resolve().parents[2]


def fuzz_params(calibration_file: Path | None = None) -> str:
    """Params YAML for the node under fuzz: SIFT on small images, only correspondences out,
    reliable deep input queues, the limits and stamp rules the generator assumes. With a
    ``calibration_file`` (fitting pairs, HostileStream(fitting=True)): 160 px, homography and
    registered image out, rig mode on, its calibration written there, a short worker queue
    (pairs sent faster than matched are dropped and counted)."""
    if calibration_file is None:
        fitting = """    resolution: 64
    worker: {queue_size: 100}
    publish: {registered: false, debug_image: false, transform: false, homography: false, pose: false}
"""
    else:
        fitting = f"""    resolution: 160
    worker: {{queue_size: 4}}
    publish: {{registered: true, debug_image: false, transform: false, homography: true, pose: false}}
    rig: {{enabled: true, min_frames: 3}}
    output: {{rig_calibration_file: {json.dumps(str(calibration_file))}}}
"""
    return f"""
matcher_node:
  ros__parameters:
    model: sift
    geometry: homography
    polarity: normal
    sync: {{queue_size: 10, slop: 0.02}}
    qos: {{reliability: reliable, depth: 1000}}
{fitting}    diagnostics: {{period: 0.5, stale_timeout: 3600.0}}
    limits: {{max_pixels: {FUZZ_LIMITS['max_pixels']}, min_side: {FUZZ_LIMITS['min_side']}}}
    stamps: {{max_future: {FUZZ_MAX_FUTURE_S}, reset_threshold: {FUZZ_RESET_THRESHOLD_S}}}
"""


def node_env(domain_id: int) -> dict[str, str]:
    profile = str(REPO / "config" / "fastdds_shm.xml")
    env = dict(os.environ)
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    env.update({
        "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_LOCALHOST_ONLY": "1",
        "FASTDDS_DEFAULT_PROFILES_FILE": profile, "FASTRTPS_DEFAULT_PROFILES_FILE": profile,
        "PYTHONUNBUFFERED": "1",
    })
    return env


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class FuzzRun:
    """What one run sent and saw."""

    sent: int = 0
    pairs_sent: list = field(default_factory=list)  # visible stamps of the valid pairs
    expected: dict = field(default_factory=dict)  # diagnostics key -> count
    memory: list = field(default_factory=list)  # (messages sent, node RSS MB)


class FuzzDriver:
    """Start the node under fuzz and a driver node; ``run()`` publishes, ``diagnostics()``
    reads the node's counters, ``answered()`` the stamps it answered. Use as a context manager."""

    def __init__(self, workdir: Path, domain_id: int | None = None, calibration_file: Path | None = None):
        self.workdir = Path(workdir)
        self.calibration_file = calibration_file
        self.domain_id = domain_id if domain_id is not None else 10 + os.getpid() % 190
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "FuzzDriver":
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from std_msgs.msg import Float64MultiArray

        env = node_env(self.domain_id)
        params = self.workdir / "fuzz_params.yaml"
        params.write_text(fuzz_params(self.calibration_file))
        self.log_path = self.workdir / "fuzz_node.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "matchanything_ros.ros.matcher_node", "--ros-args", "--params-file", str(params)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=str(REPO))
        self._saved_env = {k: os.environ.get(k) for k in env if k.startswith(("ROS_", "FAST"))}
        os.environ.update({k: env[k] for k in self._saved_env})
        self.ctx = rclpy.context.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("fuzz_driver", context=self.ctx)
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self.pubs = {topic: self.node.create_publisher(CameraInfo if "info" in key else Image, topic, qos)
                     for key, topic in TOPICS.items()}
        self._lock = threading.Lock()
        self._answered: set[int] = set()
        self._diag: dict[str, str] = {}
        self._rig_diag: dict[str, str] = {}
        self.homographies: list = []  # the data of every `homography` message (3x3, row-major)

        def on_cloud(msg):
            with self._lock:
                self._answered.add(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)

        def on_diag(arr):
            for status in arr.status:
                with self._lock:
                    if status.name.endswith("rig calibration"):
                        self._rig_diag = {kv.key: kv.value for kv in status.values}
                    elif status.name.startswith("matcher_node"):
                        self._diag = {kv.key: kv.value for kv in status.values}

        def on_homography(msg):
            with self._lock:
                self.homographies.append(list(msg.data))

        self.subs = [self.node.create_subscription(PointCloud2, "correspondences", on_cloud, qos),
                     self.node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10),
                     self.node.create_subscription(Float64MultiArray, "homography", on_homography, qos)]
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()
        self.wait(lambda: self.proc.poll() is not None or (
            all(p.get_subscription_count() > 0 for p in self.pubs.values()) and self.subs[0].get_publisher_count() > 0
            and self._diag), 120.0, "matcher_node discovery")
        if self.proc.poll() is not None:
            raise RuntimeError(f"matcher_node exited: {self.log_path.read_text()[-2000:]}")
        return self

    def __exit__(self, *exc) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    # -- use --------------------------------------------------------------------------------
    def wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def diagnostics(self) -> dict[str, str]:
        with self._lock:
            return dict(self._diag)

    def rig_diagnostics(self) -> dict[str, str]:
        with self._lock:
            return dict(self._rig_diag)

    def answered(self) -> set[int]:
        with self._lock:
            return set(self._answered)

    def run(self, messages, memory_every: int = 0, answer_timeout: float = 60.0, pace_s: float | None = None) -> FuzzRun:
        """Publish ``messages`` (FuzzMessage); after each valid pair wait until the node has
        answered it (bounded pace: the node is never overloaded, so every pair must come back),
        or with ``pace_s`` only that long (the node may fall behind: a pair is then answered or
        counted in ``dropped_overload``, never lost silently)."""
        run = FuzzRun()
        for m in messages:
            self.pubs[m.topic].publish(m.data)  # bytes: published as a serialized message
            run.sent += 1
            if m.expect:
                run.expected[m.expect] = run.expected.get(m.expect, 0) + 1
            if m.stamp_ns is not None and m.topic == TOPICS["thermal"]:
                run.pairs_sent.append(m.stamp_ns)
                stamp = m.stamp_ns
                if pace_s is not None:
                    time.sleep(pace_s)
                else:
                    self.wait(lambda: stamp in self.answered() or not self.alive(), answer_timeout,
                              f"the answer to pair {len(run.pairs_sent)}")
                if not self.alive():
                    break
            if memory_every and run.sent % memory_every == 0 and self.alive():
                run.memory.append((run.sent, rss_mb(self.proc.pid)))
        return run

    def settle(self, run: FuzzRun, timeout: float = 60.0) -> dict[str, str]:
        """Diagnostics once every expected counter has reached its count (or the timeout)."""
        def done():
            d = self.diagnostics()
            return d if all(int(d.get(k, 0)) >= n for k, n in run.expected.items()) else None

        try:
            return self.wait(done, timeout, "the node's counters")
        except TimeoutError:
            return self.diagnostics()


def account(run: FuzzRun, diag: dict[str, str], answered: set[int]) -> dict:
    """The figures the fuzz test asserts and the script prints."""
    counted = {k: int(diag.get(k, 0)) for k in run.expected}
    missing = {k: n - counted[k] for k, n in run.expected.items() if counted[k] != n}
    unexpected = {k: int(v) for k, v in diag.items() if k.startswith("bad_input.") and k not in run.expected}
    hostile = sum(run.expected.values())
    return {
        "sent": run.sent,
        "hostile": hostile,
        "hostile_counted": hostile - sum(abs(v) for v in missing.values()),
        "count_mismatch": missing,
        "unexpected_counters": unexpected,
        "valid_pairs": len(run.pairs_sent),
        "valid_pairs_answered": sum(1 for s in run.pairs_sent if s in answered),
        "messages_lost": int(diag.get("messages_lost", 0)),
        "callback_errors": int(diag.get("callback_errors", 0)),
        "matcher_errors": int(diag.get("matcher_errors", 0)),
        "latency_max_ms": float(diag.get("latency_max_ms", 0.0)),
        "latency_untrusted": int(diag.get("latency_untrusted", 0)),
    }
