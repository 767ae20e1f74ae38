"""Write throughput of the bag writer (make-bag / replay output) and what its commits cost.

    python scripts/bench_bag_writer.py [--messages 300] [--size 640x512]

Writes ``--messages`` bgr8 images of ``--size`` through ``matchanything_ros.bags.storage.BagWriter``
for each storage, with the default commit policy (1 s / 100 messages / 8 MiB: crash-safe) and
with commits only at close (what a writer without crash safety does), and prints messages/s and
MB/s. Run on an idle machine; the figures depend on the disk (fsync) as much as on the CPU.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from matchanything_ros.bags.storage import BagWriter, make_header


def run(storage: str, messages: int, size: tuple[int, int], crash_safe: bool, root: Path) -> tuple[float, float]:
    w, h = size
    out = root / f"{storage}-{crash_safe}"
    kwargs = {} if crash_safe else {"flush_seconds": float("inf"), "flush_messages": 1 << 30}
    writer = BagWriter(out, storage=storage, **kwargs).open()
    writer.add_topic("/image", "sensor_msgs/msg/Image")
    Image = writer.typestore.types["sensor_msgs/msg/Image"]
    data = np.random.default_rng(0).integers(0, 255, w * h * 3, dtype=np.uint8)
    msg = Image(header=make_header(writer.typestore, 0, "f"), height=h, width=w, encoding="bgr8", is_bigendian=0,
                step=3 * w, data=data)
    t0 = time.perf_counter()
    for i in range(messages):
        writer.write("/image", 10**9 + i * 10**8, msg)
    writer.close()
    dt = time.perf_counter() - t0
    shutil.rmtree(out)
    return messages / dt, messages * data.nbytes / dt / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--size", default="640x512")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        for storage in ("mcap", "sqlite3"):
            for crash_safe in (True, False):
                rate, mbps = run(storage, args.messages, size, crash_safe, Path(tmp))
                label = "commits 1 s/100 msgs/8 MiB" if crash_safe else "commit at close only"
                print(f"{storage:8s} {label:28s} {rate:8.1f} msgs/s {mbps:8.1f} MB/s")


if __name__ == "__main__":
    main()
