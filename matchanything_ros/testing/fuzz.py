"""Seeded generator of hostile inputs for the node and the CLI (ROS-free).

:class:`HostileStream` yields serialized sensor_msgs/Image and CameraInfo messages (CDR bytes,
what a raw subscription receives) in blocks: a few hostile messages, then one valid
visible/thermal pair. Every hostile message carries the diagnostics counter that must count it
(``expect``), so a test can account for each one; every valid pair must be answered. The
hostile kinds: unknown/empty encodings, zero and lying sizes, short steps, truncated data and
truncated CDR, garbage bytes, images above/below the size limits, invalid, zero, far-future,
far-past and backwards stamps; CameraInfo with NaN/inf/zero K, NaN D and truncated bytes.
Valid pairs vary too: big-endian 16-bit thermal, row padding, hostile frame ids (long,
unicode, empty, shell and YAML syntax). They are noise by default (every fit fails: the input
paths alone); with ``fitting=True`` they are textured scenes whose thermal image is the visible
one seen through the fixed homography :data:`RIG_H`, so the fits succeed and the output, rig
and calibration-file paths run under the same hostile traffic.

:func:`hostile_image_files` writes hostile image files (decompression-bomb header, truncated
PNG, slivers, non-images) for the CLI.
"""
from __future__ import annotations

import collections
import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..node.sync import RECENT

NS_PER_S = 1_000_000_000
TOPICS = {
    "visible": "visible/image_raw",
    "thermal": "thermal/image_raw",
    "visible_info": "visible/camera_info",
    "thermal_info": "thermal/camera_info",
}
#: parameters the generator's expectations assume (the node under test must use them)
FUZZ_LIMITS = {"max_pixels": 100_000, "min_side": 16}
FUZZ_RESET_THRESHOLD_S = 3.0
FUZZ_MAX_FUTURE_S = 1.0

IMAGE_KINDS = (
    "unknown_encoding", "empty_size", "empty_data", "short_step", "truncated_data", "lying_height",
    "truncated_cdr", "garbage", "too_large", "too_small", "stamp_invalid", "stamp_zero", "stamp_future",
    "stamp_far_past", "stamp_backwards",
)
#: the fixed "rig" of fitting valid pairs: visible pixels -> thermal pixels
RIG_H = np.array([[0.97, -0.05, 9.0], [0.04, 0.98, -6.0], [1e-5, 2e-5, 1.0]])
#: frame ids of valid pairs: legal in a message, most of them not frame ids (the node must
#: treat them as data: never a path, never unquoted in a file)
FRAME_IDS = ("vis", "", "x" * 4096, "кадр/камера", "a b\tc", "/", "x ; touch PWNED", "a: b\n- {c: d}", "../../etc")
INFO_KINDS = ("k_nan", "k_inf", "k_zero", "d_nan", "info_truncated", "info_valid")


@dataclass
class FuzzMessage:
    """One message to publish: ``topic`` (relative), ``data`` (serialized CDR), ``expect`` (the
    diagnostics key that must count it, e.g. ``bad_input.visible_stamp_future``; empty for a
    valid message), ``kind`` and, for images of a valid pair, the pair's ``stamp_ns``."""

    topic: str
    data: bytes
    expect: str
    kind: str
    stamp_ns: int | None = None


def _typestore():
    from ..bags.storage import get_typestore

    return get_typestore("humble")


class HostileStream:
    """Blocks of hostile messages, each followed by one valid pair (see the module docstring).

    ``now_ns``: the receiving node's clock at the start (wall time): valid stamps start there
    and advance ``period_ns`` per pair, so they stay within the node's future tolerance when
    published at least that fast... and far-future/far-past hostile stamps are placed against
    it. ``size``: (width, height) of valid images."""

    def __init__(self, seed: int, now_ns: int, size: tuple[int, int] = (64, 48), period_ns: int = 20_000_000,
                 clock=None, fitting: bool = False):
        self.clock = clock  # e.g. time.time_ns: valid stamps never fall behind it (nor run ahead)
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.ts = _typestore()
        self.size = size
        self.period_ns = period_ns
        self.stamp_ns = int(now_ns)
        # the last valid stamps (every stream gets each): the node's "backwards" bar is their
        # lower median (node.sync.StampGate.reference)
        # (the start time is no stamp of a message: the node's bar is over sent stamps only, and
        # with seconds between pairs a phantom entry moved the generator's bar off the node's)
        self._recent = collections.deque(maxlen=RECENT)
        self.pairs = 0
        self._last_far_past = [0, 0]
        self._scenes = _fitting_scenes(size) if fitting else None

    # -- message building ---------------------------------------------------------------------
    def _header(self, stamp_ns: int, frame: str, nanosec: int | None = None):
        T = self.ts.types
        sec, ns = divmod(int(stamp_ns), NS_PER_S)
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=ns if nanosec is None else nanosec),
                                         frame_id=frame)

    def image_cdr(self, stamp_ns: int, encoding: str, width: int, height: int, step: int, data: bytes,
                  frame: str = "cam", bigendian: bool = False, nanosec: int | None = None) -> bytes:
        msg = self.ts.types["sensor_msgs/msg/Image"](
            header=self._header(stamp_ns, frame, nanosec), height=height, width=width, encoding=encoding,
            is_bigendian=int(bigendian), step=step, data=np.frombuffer(bytes(data), np.uint8))
        return bytes(self.ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))

    def info_cdr(self, stamp_ns: int, k: list[float], d: list[float], width: int, height: int) -> bytes:
        msg = self.ts.types["sensor_msgs/msg/CameraInfo"](
            header=self._header(stamp_ns, "cam"), height=height, width=width, distortion_model="plumb_bob",
            d=np.asarray(d, np.float64), k=np.asarray(k, np.float64), r=np.eye(3).reshape(9),
            p=np.zeros(12), binning_x=0, binning_y=0,
            roi=self.ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                                   do_rectify=False))
        return bytes(self.ts.serialize_cdr(msg, "sensor_msgs/msg/CameraInfo"))

    def _mono8(self, width: int, height: int) -> bytes:
        return self.np_rng.integers(0, 255, (height, width), dtype=np.uint8).tobytes()

    # -- the stream ---------------------------------------------------------------------------
    def valid_pair(self) -> list[FuzzMessage]:
        """A valid visible (bgr8) + thermal (mono16, sometimes big-endian or padded) pair at the
        next stamp, with an occasionally hostile (but legal) frame id."""
        self.stamp_ns = max(self.stamp_ns + self.period_ns, self.clock() if self.clock else 0)
        self._recent.append(self.stamp_ns)
        self.pairs += 1
        w, h = self.size
        frame = self.rng.choice(FRAME_IDS)
        if self._scenes is not None:
            vis, th = self._scenes[self.pairs % len(self._scenes)]
        else:
            vis = self.np_rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            th = self.np_rng.integers(0, 65535, (h, w), dtype=np.uint16)
        big = self.rng.random() < 0.3
        pad = self.rng.choice([0, 0, 6])
        rows = th.astype(">u2" if big else "<u2").tobytes()
        row = w * 2
        data = b"".join(rows[r * row:(r + 1) * row] + bytes(pad) for r in range(h))
        return [
            FuzzMessage(TOPICS["visible"], self.image_cdr(self.stamp_ns, "bgr8", w, h, w * 3, vis.tobytes(), frame),
                        "", "valid", self.stamp_ns),
            FuzzMessage(TOPICS["thermal"], self.image_cdr(self.stamp_ns + 1_000_000, "mono16", w, h, row + pad, data,
                                                          frame, bigendian=big), "", "valid", self.stamp_ns),
        ]

    def hostile_image(self, stream: str, kind: str) -> FuzzMessage:
        w, h = self.size
        t = self.stamp_ns + 2_000_000  # after the newest valid pair
        topic = TOPICS[stream]
        if kind == "stamp_backwards" and len(self._recent) < 2:
            kind = "garbage"  # the node has no backwards bar before two accepted stamps

        def make(expect_reason: str, **kw) -> FuzzMessage:
            args = dict(stamp_ns=t, encoding="mono8", width=w, height=h, step=w, data=self._mono8(w, h))
            args.update(kw)
            return FuzzMessage(topic, self.image_cdr(**args), f"bad_input.{stream}_{expect_reason}", kind)

        if kind == "unknown_encoding":
            enc = self.rng.choice(["yuv9000", "", "MONO8", "rgb8\x00x", "16UC9", "é" * 40])
            return make("unknown_encoding", encoding=enc)
        if kind == "empty_size":
            return make("empty", width=self.rng.choice([0, w]), height=0, step=0, data=b"")
        if kind == "empty_data":
            return make("empty", data=b"")
        if kind == "short_step":
            return make("size_mismatch", step=w - 1)
        if kind == "truncated_data":
            return make("size_mismatch", data=self._mono8(w, h)[: self.rng.randrange(1, w * h)])
        if kind == "lying_height":  # a header claiming a huge image over a few bytes
            return make("size_mismatch", width=60000, height=60000, step=60000)
        if kind == "truncated_cdr":
            whole = self.image_cdr(t, "mono8", w, h, w, self._mono8(w, h))
            return FuzzMessage(topic, whole[: self.rng.randrange(4, 40)], f"bad_input.{stream}_malformed", kind)
        if kind == "garbage":
            n = self.rng.randrange(1, 32)
            return FuzzMessage(topic, self.rng.randbytes(n), f"bad_input.{stream}_malformed", kind)
        if kind == "too_large":
            side = int(FUZZ_LIMITS["max_pixels"] ** 0.5) + 8
            return make("too_large", width=side, height=side, step=side, data=bytes(side * side))
        if kind == "too_small":
            return make("too_small", width=4000, height=2, step=4000, data=bytes(8000))
        if kind == "stamp_invalid":
            return make("stamp_invalid", nanosec=self.rng.choice([NS_PER_S, 4294967295, 2 * NS_PER_S]))
        if kind == "stamp_zero":
            return make("stamp_zero", stamp_ns=0)
        if kind == "stamp_future":
            # well beyond the 1 s allowance: on a loaded machine the node may take it seconds
            # after it was stamped, and a message that is no longer "future" when it arrives is
            # accepted (and moves the stream's backwards bar the generator assumes)
            ahead = self.rng.choice([15.0, 60.0, 86400.0 * 365])
            return make("stamp_future", stamp_ns=t + int(ahead * NS_PER_S))
        if kind == "stamp_far_past":  # dropped as an outlier when the next message contradicts it
            index = 0 if stream == "visible" else 1
            past = self.rng.randrange(1, max(2, t // NS_PER_S - 100))
            if abs(past - self._last_far_past[index]) <= 10:  # two in a row could confirm a reset
                past = past + 100 if past + 100 < t // NS_PER_S - 50 else past // 2
            self._last_far_past[index] = past
            return make("stamp_outlier", stamp_ns=past * NS_PER_S + self.rng.randrange(NS_PER_S))
        if kind == "stamp_backwards":  # behind the stream's backwards bar, by < 3 s
            back = self.rng.randrange(1_000_000, int(FUZZ_RESET_THRESHOLD_S * NS_PER_S) // 2)
            recent = sorted(self._recent)
            m = make("x", stamp_ns=recent[(len(recent) - 1) // 2] - back)
            m.expect = "stamp_backwards"
            return m
        raise ValueError(f"unknown kind {kind!r}")

    def camera_info(self, stream: str, kind: str) -> FuzzMessage:
        w, h = self.size
        topic = TOPICS[f"{stream}_info"]
        k = [100.0, 0.0, w / 2, 0.0, 100.0, h / 2, 0.0, 0.0, 1.0]
        d = [0.0] * 5
        expect = f"bad_input.{stream}_camera_info_invalid"
        if kind == "k_nan":
            k[self.rng.randrange(9)] = float("nan")
        elif kind == "k_inf":
            k[self.rng.choice([0, 2, 4])] = self.rng.choice([float("inf"), float("-inf")])
        elif kind == "k_zero":
            k = [0.0] * 9
        elif kind == "d_nan":
            d[self.rng.randrange(5)] = float("nan")
        elif kind == "info_truncated":
            whole = self.info_cdr(self.stamp_ns, k, d, w, h)
            return FuzzMessage(topic, whole[: self.rng.randrange(4, len(whole) - 1)],
                               f"bad_input.{stream}_camera_info_malformed", kind)
        elif kind == "info_valid":
            expect = ""
        return FuzzMessage(topic, self.info_cdr(self.stamp_ns, k, d, w, h), expect, kind)

    def messages(self, count: int, warmup_pairs: int = 2) -> Iterator[FuzzMessage]:
        """About ``count`` messages: ``warmup_pairs`` valid pairs (the stamp rules compare with
        the median of the last stamps), then blocks of 1-4 hostile messages and one valid pair."""
        sent = 0
        for _ in range(warmup_pairs):
            for m in self.valid_pair():
                sent += 1
                yield m
        while sent < count:
            stamp_streams = set()
            for _ in range(self.rng.randint(1, 4)):
                stream = self.rng.choice(["visible", "thermal"])
                if self.rng.random() < 0.2:
                    m = self.camera_info(stream, self.rng.choice(INFO_KINDS))
                else:
                    kind = self.rng.choice(IMAGE_KINDS)
                    if kind.startswith("stamp_far_past") and stream in stamp_streams:
                        kind = "garbage"  # one held far-past stamp per stream and block
                    if kind == "stamp_far_past":
                        stamp_streams.add(stream)
                    m = self.hostile_image(stream, kind)
                sent += 1
                yield m
            for m in self.valid_pair():
                sent += 1
                yield m


def _fitting_scenes(size: tuple[int, int], count: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """(visible bgr8, thermal uint16) scenes: textured planes (synthetic.make_planar_pair's
    visible image), the thermal image their grey values through :data:`RIG_H`. Same modality
    on purpose: the point is that fits succeed (SIFT at this size), not cross-modal matching."""
    import cv2

    from ..synthetic import make_planar_pair

    scenes = []
    for seed in range(count):
        visible = make_planar_pair(seed, size=size, rotation_deg=5.0).visible
        grey = cv2.warpPerspective(cv2.cvtColor(visible, cv2.COLOR_BGR2GRAY), RIG_H, size)
        scenes.append((visible, grey.astype(np.uint16) * 257))
    return scenes


def expected_counts(messages: list[FuzzMessage]) -> dict[str, int]:
    """The diagnostics counters the hostile messages must produce (key -> count)."""
    counts: dict[str, int] = {}
    for m in messages:
        if m.expect:
            counts[m.expect] = counts.get(m.expect, 0) + 1
    return counts


# -- hostile image files (CLI) -------------------------------------------------------------------
def _png(width: int, height: int, rows: int = 16) -> bytes:
    """An 8-bit gray PNG of ``width`` x ``height`` whose first ``rows`` rows are stored (all
    zero, compressed row by row: a whole 20000x20000 bomb costs ~20 KB and no big buffer)."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    packer, row = zlib.compressobj(9), b"\x00" * (width + 1)
    idat = b"".join(packer.compress(row) for _ in range(min(rows, height))) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def hostile_image_files(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write hostile image files into ``folder``; name -> path. Each must be refused by the
    CLI with one line and exit code 2 (default limits)."""
    import cv2

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    files: dict[str, bytes] = {
        "bomb_header_60000.png": _png(60000, 60000),  # header only: 3.6 Gpx claimed
        "bomb_20000.png": _png(20000, 20000, rows=20000),  # a real bomb (~20 KB)
        "empty.png": b"",
        "text.png": b"this is not an image\n",
        "truncated.png": cv2.imencode(".png", rng.integers(0, 255, (64, 64), dtype=np.uint8))[1].tobytes()[:60],
        "sliver_1x4000.png": cv2.imencode(".png", np.zeros((1, 4000), np.uint8))[1].tobytes(),
        "sliver_8x20000.png": cv2.imencode(".png", np.zeros((8, 20000), np.uint8))[1].tobytes(),
        "tiny_1x1.png": cv2.imencode(".png", np.zeros((1, 1), np.uint8))[1].tobytes(),
        "jpeg_header_only.jpg": cv2.imencode(".jpg", np.zeros((64, 64), np.uint8))[1].tobytes()[:200],
        # other decoders OpenCV would run (issue 18, item 8): headers claiming huge images
        "radiance_named.png": b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 20000 +X 20000\n" + bytes(1000),
        "bomb_60000.pgm": b"P5\n60000 60000\n255\n" + bytes(1000),
        "bomb_60000.bmp": b"BM" + struct.pack("<IHHI", 1054, 0, 0, 54)
        + struct.pack("<IiiHHIIiiII", 40, 60000, 60000, 1, 8, 0, 0, 2835, 2835, 0, 0) + bytes(1000),
    }
    out = {}
    for name, data in files.items():
        path = folder / name
        path.write_bytes(data)
        out[name] = path
    return out
