"""Keep freed large buffers in the heap, so that image messages do not page-fault (Linux glibc).

Every 1 MB image a node receives passes through a few fresh buffers (DDS sample, serialized
copy, Python bytes). With glibc's defaults, freed memory above 2x the adaptive mmap threshold is
handed back to the kernel (trimmed) and the next image faults every page in again: 256 faults per
MB, each costly in a VM. Measured here (``scripts/bench_image_path.py``): a 640x512 bgr8 image
between two processes over the shared-memory profile took 3.3 ms median with default malloc
settings in the subscriber and 1.8-2.0 ms with these. ROS 2 real-time guides give the same
advice (fixed mmap threshold, no trimming). The cost is memory: up to ``trim_mib`` of freed heap stays mapped.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

#: environment variable that turns the tuning off (``0``)
ENV_SWITCH = "MATCHANYTHING_MALLOC_TUNING"


def tune_malloc(mmap_mib: int = 32, trim_mib: int = 128, top_pad_mib: int = 16) -> str:
    """Set glibc's mmap threshold, trim threshold and top pad for this process.

    Allocations below ``mmap_mib`` come from the heap and freed heap memory up to ``trim_mib``
    is kept for reuse. Returns what was done, one line for the log: tuned, switched off by
    ``MATCHANYTHING_MALLOC_TUNING=0``, or not applicable (not Linux/glibc).
    """
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"malloc tuning off ({ENV_SWITCH}=0)"
    if not sys.platform.startswith("linux"):
        return "malloc tuning not applicable (not Linux)"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "malloc tuning not applicable (no glibc mallopt)"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(
        mallopt(param, value * 2**20) == 1
        for param, value in ((M_MMAP_THRESHOLD, mmap_mib), (M_TRIM_THRESHOLD, trim_mib), (M_TOP_PAD, top_pad_mib))
    )
    if not ok:
        return "malloc tuning rejected by mallopt"
    return f"malloc tuned for large messages (mmap threshold {mmap_mib} MiB, trim threshold {trim_mib} MiB)"
