#!/usr/bin/env python3
"""Benchmark matcher_node over real DDS (not a test): node overhead and latency under overload.

  .venv/bin/python scripts/bench_node.py [--model xfeat] [--pairs 40] [--overload-seconds 12]

Starts matcher_node as a subprocess (params file in a temp dir, the package's Fast DDS SHM
profile, a private ROS_DOMAIN_ID, localhost discovery) and publishes synthetic 640x512 pairs
(bgr8 visible, mono16 thermal) from this process with header stamps = publish time.

1. sequential: one pair at a time, waiting for its correspondences. Latency = receive time -
   stamp. The node reports its pipeline time per pair; overhead = latency - pipeline time
   (decode, queueing, message building, DDS both ways). Medians over --pairs pairs.
2. overload: pairs at twice the measured processing rate for --overload-seconds; latency must
   stay bounded (the worker keeps only the newest pair), drops are counted.
3. transport: 120 best-effort 640x512 bgr8 images at 30 Hz between two processes, with the
   environment's Fast DDS settings (optionally) and with config/fastdds_shm.xml.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from matchanything_ros.node.dds import FASTDDS_VAR, FASTRTPS_VAR, profile_env, profile_variable  # noqa: E402

PROFILE = str(REPO / "config" / "fastdds_shm.xml")


def ros_env(profile: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    env.update(ROS_DOMAIN_ID=str(10 + os.getpid() % 190), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOCALHOST_ONLY="1", PYTHONUNBUFFERED="1")
    for key in (FASTDDS_VAR, FASTRTPS_VAR):
        env.pop(key, None)
    if profile:
        env.update(profile_env(profile))  # the one variable this Fast DDS reads
    return env


class Driver:
    """Publishes pairs, records correspondences arrival times and the node's diagnostics."""

    def __init__(self, qos_reliable: bool):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, PointCloud2

        rclpy.init()
        self.node = rclpy.create_node("bench_driver")
        rel = ReliabilityPolicy.RELIABLE if qos_reliable else ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(depth=5, reliability=rel)
        self.pub_vis = self.node.create_publisher(Image, "visible/image_raw", qos)
        self.pub_th = self.node.create_publisher(Image, "thermal/image_raw", qos)
        self.arrivals: dict[int, float] = {}
        self.diag: dict[str, str] = {}
        self.lock = threading.Lock()
        self.sub = self.node.create_subscription(PointCloud2, "correspondences", self._on_cloud, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def _on_cloud(self, msg) -> None:
        now = time.time_ns()
        with self.lock:
            self.arrivals[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = now

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith("matcher_node"):
                with self.lock:
                    self.diag = {kv.key: kv.value for kv in status.values}

    def publish(self, vis, th) -> int:
        stamp = time.time_ns()
        for msg in (vis, th):
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
        self.pub_vis.publish(vis)
        self.pub_th.publish(th)
        return stamp

    def wait_for(self, stamp: int, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if stamp in self.arrivals:
                    return (self.arrivals[stamp] - stamp) / 1e9
            time.sleep(0.0005)
        return None


def _settings(items: list[str]) -> list[tuple[str, object]]:
    """``["backend=tensorrt"]`` -> [("backend", "tensorrt")] (YAML values)."""
    import yaml

    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected NAME=VALUE")
        out.append((name.strip(), yaml.safe_load(value)))
    return out


def bench_node(args) -> dict:
    from matchanything_ros.node.outputs import OutputBuilder, rclpy_types
    from matchanything_ros.synthetic import make_planar_pair

    tmp = Path(tempfile.mkdtemp(prefix="bench_node_"))
    (tmp / "params.yaml").write_text(
        f"matcher_node:\n  ros__parameters:\n    model: {args.model}\n    resolution: 640\n"
        f"    geometry: homography\n    polarity: normal\n    qos: {{reliability: {args.qos}}}\n"
        "    publish: {registered: false, debug_image: false}\n    diagnostics: {period: 0.5}\n"
        + "".join(f"    {name}: {json.dumps(value)}\n" for name, value in _settings(args.set))
    )
    env = ros_env(PROFILE)
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", profile_variable()) if k in env})
    proc = subprocess.Popen([sys.executable, "-m", "matchanything_ros.ros.matcher_node", "--ros-args",
                             "--params-file", str(tmp / "params.yaml")], env=env, cwd=str(REPO),
                            stdout=open(tmp / "node.log", "w"), stderr=subprocess.STDOUT)
    driver = Driver(args.qos == "reliable")
    try:
        deadline = time.monotonic() + 60
        while driver.pub_vis.get_subscription_count() == 0 or driver.sub.get_publisher_count() == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"matcher_node did not come up:\n{(tmp / 'node.log').read_text()}")
            time.sleep(0.05)
        pair = make_planar_pair(7, size=(640, 512), rotation_deg=8.0)
        out = OutputBuilder(rclpy_types())
        vis = out.image(pair.visible, "bgr8", 0, "visible")
        th = out.image(pair.thermal, "mono16", 0, "thermal")
        for _ in range(3):  # warm-up (first inference allocates)
            driver.wait_for(driver.publish(vis, th), 30)

        latencies = []
        for _ in range(args.pairs):
            lat = driver.wait_for(driver.publish(vis, th), 30)
            if lat is not None:
                latencies.append(lat)
            time.sleep(0.02)
        time.sleep(1.2)  # one more diagnostics period
        with driver.lock:
            diag = dict(driver.diag)
        inference = float(diag.get("inference_median_ms", "nan"))
        seq = {
            "pairs": args.pairs,
            "received": len(latencies),
            "latency_median_ms": 1000 * float(np.median(latencies)),
            "inference_median_ms": inference,
            # per pair, measured by the node: stamp -> outputs published, minus pipeline time
            # (input transport, pairing, queueing, decoding, message building)
            "overhead_median_ms": float(diag.get("overhead_median_ms", "nan")),
            # the node's own part of it: pair complete -> published, minus pipeline time
            "internal_overhead_median_ms": float(diag.get("internal_overhead_median_ms", "nan")),
            # the same plus the output hop back to this process; difference of two medians
            "end_to_end_overhead_ms": 1000 * float(np.median(latencies)) - inference,
        }

        # 2x the processing rate, or the rate asked for (--rate)
        period = 1.0 / args.rate if args.rate else 1000 * float(np.median(latencies)) / 2.0 / 1000
        stamps = []
        t_end = time.monotonic() + args.overload_seconds
        while time.monotonic() < t_end:
            stamps.append(driver.publish(vis, th))
            time.sleep(period)
        time.sleep(3 * float(np.median(latencies)) + 1.0)
        with driver.lock:
            got = [(s, (driver.arrivals[s] - s) / 1e6) for s in stamps if s in driver.arrivals]
            diag = dict(driver.diag)
        lat = np.array([v for _, v in got])
        third = max(1, len(lat) // 3)
        over = {
            "input_rate_hz": 1.0 / period,
            "published_pairs": len(stamps),
            "processed_pairs": len(got),
            "latency_median_ms": float(np.median(lat)),
            "latency_p95_ms": float(np.percentile(lat, 95)),
            "latency_max_ms": float(lat.max()),
            "latency_first_third_median_ms": float(np.median(lat[:third])),
            "latency_last_third_median_ms": float(np.median(lat[-third:])),
            "dropped_overload": int(diag.get("dropped_overload", -1)),
            "inference_median_ms": float(diag.get("inference_median_ms", "nan")),
        }
        over["latency_p95_over_inference"] = over["latency_p95_ms"] / over["inference_median_ms"]
        return {"model": diag.get("model", args.model), "qos": args.qos, "sequential": seq, "overload": over}
    finally:
        driver.executor.shutdown()
        driver.node.destroy_node()
        proc.terminate()
        proc.wait(10)


TRANSPORT_CHILD = r"""
import sys, time, array, numpy as np, rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
role, count, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rclpy.init(); node = rclpy.create_node("transport_" + role)
if role == "pub":
    pub = node.create_publisher(Image, "transport_check", qos_profile_sensor_data)
    t0 = time.time()
    while pub.get_subscription_count() == 0 and time.time() - t0 < 20: time.sleep(0.01)
    time.sleep(0.5)
    data = array.array("B"); data.frombytes(np.random.default_rng(0).integers(0, 255, 640 * 512 * 3, dtype=np.uint8).tobytes())
    for i in range(count):
        msg = Image(height=512, width=640, encoding="bgr8", step=1920, data=data)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 10**9)
        pub.publish(msg); time.sleep(1.0 / rate)
    time.sleep(1.0)
else:
    lat = []
    node.create_subscription(Image, "transport_check",
        lambda m: lat.append((time.time_ns() - m.header.stamp.sec * 10**9 - m.header.stamp.nanosec) / 1e6), qos_profile_sensor_data)
    t_end = time.time() + count / rate + 8
    while time.time() < t_end: rclpy.spin_once(node, timeout_sec=0.05)
    print(len(lat), float(np.median(lat)) if lat else float("nan"))
"""


def bench_transport(count: int = 120, rate: float = 30.0) -> dict:
    results = {}
    for label, profile in (("default", None), ("fastdds_shm.xml", PROFILE)):
        env = ros_env(profile)
        sub = subprocess.Popen([sys.executable, "-c", TRANSPORT_CHILD, "sub", str(count), str(rate)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(1.0)
        subprocess.run([sys.executable, "-c", TRANSPORT_CHILD, "pub", str(count), str(rate)], env=env,
                       stderr=subprocess.DEVNULL, check=True)
        received, p50 = sub.communicate(timeout=60)[0].split()
        results[label] = {"sent": count, "received": int(received), "latency_median_ms": float(p50)}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="xfeat", help="matcher model (default: xfeat, the offline default)")
    parser.add_argument("--qos", default="best_effort", choices=("best_effort", "reliable"))
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--overload-seconds", type=float, default=12.0)
    parser.add_argument("--skip-transport", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="one more node parameter (dotted name, YAML value; repeatable), e.g. --set backend=tensorrt")
    parser.add_argument("--rate", type=float, help="phase 2 at this input rate (Hz) instead of twice the processing rate")
    args = parser.parse_args()
    # the machine may be shared: record its load next to the figures
    results = {"load_average_1min_before": os.getloadavg()[0], "node": bench_node(args)}
    if not args.skip_transport:
        results["transport"] = bench_transport()
    results["load_average_1min_after"] = os.getloadavg()[0]
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
