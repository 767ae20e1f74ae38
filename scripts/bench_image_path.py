#!/usr/bin/env python3
"""Benchmark the node's image input path (not a test): decode cost and transport latency.

  .venv/bin/python scripts/bench_image_path.py [--count 60]

1. decode: one serialized 640x512 bgr8 sensor_msgs/Image, turned into a message by rclpy
   (`deserialize_message`, what a typed subscription does) and by `pair_io.image_from_cdr`
   (what matcher_node does with its raw subscriptions). Median of 50 calls each.
2. transport: --count images at 10 Hz between two processes over config/fastdds_shm.xml, the
   subscriber taking them raw like matcher_node; latency = receive time - stamp. Once with the
   subscriber's malloc left alone (MATCHANYTHING_MALLOC_TUNING=0), once tuned as the node does
   (`ros/malloc_tuning.py`), in alternating order.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from matchanything_ros.node.dds import profile_env  # noqa: E402

CHILD = r"""
import struct, sys, time, array, numpy as np
role, count = sys.argv[1], int(sys.argv[2])
if role == "sub":
    from matchanything_ros.node.malloc_tuning import tune_malloc
    print(tune_malloc(), file=sys.stderr)
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
rclpy.init(); node = rclpy.create_node("image_path_" + role)
if role == "pub":
    pub = node.create_publisher(Image, "image_path_check", qos_profile_sensor_data)
    t0 = time.time()
    while pub.get_subscription_count() == 0 and time.time() - t0 < 20: time.sleep(0.01)
    time.sleep(1.0)
    data = array.array("B"); data.frombytes(np.random.default_rng(0).integers(0, 255, 640 * 512 * 3, dtype=np.uint8).tobytes())
    msg = Image(height=512, width=640, encoding="bgr8", step=1920, data=data)
    for i in range(count):
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 10**9)
        pub.publish(msg); time.sleep(0.1)
    time.sleep(1.0)
else:
    lat = []
    def on_raw(raw):  # header stamp: after the 4-byte CDR encapsulation header
        sec, nsec = struct.unpack_from("<iI", raw, 4)
        lat.append((time.time_ns() - sec * 10**9 - nsec) / 1e6)
    node.create_subscription(Image, "image_path_check", on_raw, qos_profile_sensor_data, raw=True)
    end = time.time() + count * 0.1 + 8
    while time.time() < end: rclpy.spin_once(node, timeout_sec=0.05)
    print(len(lat), float(np.median(lat)) if lat else float("nan"))
"""


def bench_decode() -> dict:
    import array

    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    from matchanything_ros.node.pair_io import image_from_cdr

    data = array.array("B")
    data.frombytes(np.zeros(640 * 512 * 3, np.uint8).tobytes())
    raw = serialize_message(Image(height=512, width=640, encoding="bgr8", step=1920, data=data))
    result = {}
    for name, fn in (("rclpy_deserialize_ms", lambda: deserialize_message(raw, Image)),
                     ("image_from_cdr_ms", lambda: image_from_cdr(raw))):
        fn()
        times = []
        for _ in range(50):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        result[name] = 1000 * float(np.median(times))
    return result


def bench_transport(count: int, tuned: bool) -> tuple[int, float]:
    env = dict(os.environ)
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    env.update(ROS_DOMAIN_ID=str(10 + (os.getpid() + 97) % 190), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               **profile_env(str(REPO / "config" / "fastdds_shm.xml")),
               MATCHANYTHING_MALLOC_TUNING="1" if tuned else "0")
    sub = subprocess.Popen([sys.executable, "-c", CHILD, "sub", str(count)], env=env, cwd=str(REPO),
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(1.5)
    pub = subprocess.Popen([sys.executable, "-c", CHILD, "pub", str(count)], env=env, cwd=str(REPO))
    received, median = sub.communicate(timeout=count * 0.1 + 60)[0].split()
    pub.wait(timeout=30)
    return int(received), float(median)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=60, help="images per transport run (default 60)")
    args = parser.parse_args()
    print(f"load average (1 min) before: {os.getloadavg()[0]:.2f}")
    for key, value in bench_decode().items():
        print(f"decode 640x512 bgr8: {key} = {value:.3f}")
    for tuned in (False, True, False, True):
        received, median = bench_transport(args.count, tuned)
        print(f"transport 640x512 bgr8, subscriber malloc {'tuned' if tuned else 'default'}: "
              f"{received}/{args.count} received, median {median:.2f} ms")
    print(f"load average (1 min) after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
