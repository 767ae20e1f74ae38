"""ROS-free approximate-time synchronizer for two or more message streams.

Same pairing rule as ``message_filters.ApproximateTimeSynchronizer`` (the Python
implementation, ``allow_headerless=False``), so that the node without message_filters and bag
replay pair exactly what a ROS user would get:

* each stream keeps at most ``queue_size`` messages (and, with ``max_bytes``, at most that
  much image data) keyed by stamp (a message with a stamp
  already queued replaces it; overflow drops the oldest stamp);
* when a message arrives, the other streams' queued stamps within ``slop`` of it are the
  candidates, tried closest first (``itertools.product`` order); the first combination whose
  spread ``max - min`` is strictly below ``slop`` is emitted and removed from the queues.

In front of the pairing sits a :class:`StampGate` (the node also puts it in front of
message_filters), so that one hostile or broken message cannot blind a stream. Its rules, per
stream (docs/NODE.md, "Stamps"):

* invalid stamps are rejected before (:func:`stamp_problem`: ``nanosec`` outside [0, 1e9), a
  negative ``sec``, the zero stamp);
* with a meaningful clock (``now_ns`` given and > 0), a stamp more than ``max_future_ns`` ahead
  of it is rejected (``stamp_future``);
* a message is compared with the MEDIAN of the stream's last ``RECENT`` accepted stamps (the
  lower middle one; the older of two), so that outliers among them (far-future stamps, a
  second publisher whose clock runs ahead) cannot make every later message "backwards": a few
  of them cost their own pairs only. Older by at most ``reset_threshold_ns``: dropped
  (``stamp_backwards``) -- message_filters would queue it and pair it out of order;
* older by more (a bag restarted with ``--loop``, a simulator reset): held; if the next message
  on the stream confirms it (within ``reset_threshold_ns`` after it) the stream's time is reset
  (its queue cleared, both messages queued, ``resets`` counted), else the held message is
  dropped as ``stamp_outlier``.

Stamps are integer nanoseconds (``sec * 10**9 + nanosec``) so the classes need no ROS types.
"""
from __future__ import annotations

import collections
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

NS_PER_S = 1_000_000_000
#: accepted stamps per stream the "backwards" rule takes its median from: two outliers among
#: five leave it on the stream's own time
RECENT = 5


def stamp_to_ns(stamp: Any) -> int:
    """A ``builtin_interfaces/Time`` (rclpy or rosbags) -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def stamp_problem(stamp: Any) -> tuple[str, str] | None:
    """``(reason key, message)`` for a stamp no sensor can produce, else None.

    ``stamp_invalid``: ``nanosec`` not in [0, 1e9) (not normalised) or ``sec`` < 0;
    ``stamp_zero``: 0.0, what an unset header carries."""
    sec, nanosec = int(stamp.sec), int(stamp.nanosec)
    if not 0 <= nanosec < NS_PER_S or sec < 0:
        return "stamp_invalid", f"invalid stamp sec={sec} nanosec={nanosec} (nanosec must be < 1e9)"
    if sec == 0 and nanosec == 0:
        return "stamp_zero", "zero stamp (header never set)"
    return None


@dataclass
class Admission:
    """What :meth:`StampGate.admit` decided for one message."""

    accepted: list = field(default_factory=list)  # (stamp_ns, msg) to queue for pairing, in order
    rejected: list = field(default_factory=list)  # reason keys of dropped messages (this or a held one)
    reset: bool = False  # a confirmed time reset: clear this stream's queue before queueing


class StampGate:
    """Per-stream stamp rules in front of a synchronizer (see the module docstring).

    Not thread safe on its own: the synchronizer (or the node's callback) serialises calls."""

    def __init__(self, num_streams: int, reset_threshold_ns: int = 3 * NS_PER_S, max_future_ns: int | None = None):
        self.reset_threshold_ns = int(reset_threshold_ns)
        self.max_future_ns = max_future_ns
        self.rejected: collections.Counter = collections.Counter()  # reason -> count
        self.resets = 0
        # the last RECENT accepted stamps, in arrival order
        self._recent: list[collections.deque] = [collections.deque(maxlen=RECENT) for _ in range(num_streams)]
        self._held: list[tuple[int, Any] | None] = [None] * num_streams  # reset candidate

    def clear(self) -> None:
        """Forget the stamps seen and the held messages (counters stay)."""
        for recent in self._recent:
            recent.clear()
        self._held = [None] * len(self._held)

    def reference(self, stream: int) -> int | None:
        """The stamp a new message is compared with: the lower median of the last RECENT
        accepted ones (None before two). Up to (RECENT - 1) // 2 outliers among them leave it
        on the stream's own time."""
        recent = sorted(self._recent[stream])
        return recent[(len(recent) - 1) // 2] if len(recent) >= 2 else None

    def admit(self, stream: int, stamp_ns: int, msg: Any, now_ns: int | None = None) -> Admission:
        out = Admission()
        stamp_ns = int(stamp_ns)
        if self.max_future_ns is not None and now_ns is not None and now_ns > 0 \
                and stamp_ns - now_ns > self.max_future_ns:
            return self._reject(out, "stamp_future")
        ref, held = self.reference(stream), self._held[stream]
        if ref is None or stamp_ns >= ref:
            if held is not None:  # time went on as before: the held message was an outlier
                self._held[stream] = None
                self._reject(out, "stamp_outlier")
            self._remember(stream, stamp_ns)
            out.accepted.append((stamp_ns, msg))
        elif ref - stamp_ns <= self.reset_threshold_ns:
            self._reject(out, "stamp_backwards")
        elif held is not None and 0 <= stamp_ns - held[0] <= self.reset_threshold_ns:
            self._held[stream] = None  # a second message confirms the jump back: time reset
            self._recent[stream].clear()
            self._remember(stream, held[0])
            self._remember(stream, stamp_ns)
            self.resets += 1
            out.reset = True
            out.accepted += [held, (stamp_ns, msg)]
        else:  # far back: hold it until the next message confirms or contradicts it
            if held is not None:
                self._reject(out, "stamp_outlier")
            self._held[stream] = (stamp_ns, msg)
        return out

    def _remember(self, stream: int, stamp_ns: int) -> None:
        self._recent[stream].append(stamp_ns)

    def _reject(self, out: Admission, reason: str) -> Admission:
        self.rejected[reason] += 1
        out.rejected.append(reason)
        return out


@dataclass
class SyncStats:
    """Counters for diagnostics."""

    received: int = 0  # messages passed to add()
    matched: int = 0  # tuples emitted
    backwards: int = 0  # messages dropped because their stamp went backwards
    resets: int = 0  # confirmed time resets (large backward jumps) that cleared a stream's queue
    evicted: int = 0  # messages pushed out of a full queue without being matched


def message_bytes(msg: Any) -> int:
    """Bytes of image data a message holds (its ``data`` field; 0 without one)."""
    data = getattr(msg, "data", None)
    if data is None:
        return 0
    nbytes = getattr(data, "nbytes", None)  # NumPy (rosbags); rclpy gives array.array / bytes
    if nbytes is not None:
        return int(nbytes)
    try:
        return len(data) * getattr(data, "itemsize", 1)
    except TypeError:
        return 0


class ApproximateTimeSynchronizer:
    """Pair messages from ``num_streams`` streams whose stamps lie within ``slop``.

    ``add(stream_index, stamp_ns, msg)`` returns the list of matched tuples (one message per
    stream, in stream order); it is empty when the new message completed no set.
    :meth:`offer` also returns the reasons of the messages the stamp gate dropped. Thread safe.
    """

    def __init__(
        self,
        num_streams: int,
        queue_size: int,
        slop: float,
        reset_threshold_ns: int = 3 * NS_PER_S,
        max_future_ns: int | None = None,
        max_bytes: int | None = None,
    ):
        if num_streams < 2:
            raise ValueError(f"num_streams must be >= 2, got {num_streams}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if slop < 0:
            raise ValueError(f"slop must be >= 0 seconds, got {slop}")
        self.queue_size = int(queue_size)
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self.slop_ns = int(round(slop * NS_PER_S))
        self.gate = StampGate(num_streams, reset_threshold_ns, max_future_ns)
        self.stats = SyncStats()
        self._queues: list[dict[int, Any]] = [{} for _ in range(num_streams)]
        self._bytes = [0] * num_streams  # image data queued per stream
        self._lock = threading.Lock()

    @property
    def num_streams(self) -> int:
        return len(self._queues)

    def reset(self) -> None:
        """Forget every queued message and the newest stamps (e.g. after a parameter change)."""
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        for q in self._queues:
            q.clear()
        self._bytes = [0] * len(self._queues)
        self.gate.clear()

    def queued(self, stream_index: int) -> list[int]:
        """Stamps currently waiting on one stream, oldest first (for tests and diagnostics)."""
        with self._lock:
            return sorted(self._queues[stream_index])

    def add(self, stream_index: int, stamp_ns: int, msg: Any, now_ns: int | None = None) -> list[tuple]:
        """Queue ``msg`` on ``stream_index`` and return the tuples it completed."""
        return self.offer(stream_index, stamp_ns, msg, now_ns)[0]

    def offer(self, stream_index: int, stamp_ns: int, msg: Any, now_ns: int | None = None) -> tuple[list[tuple], list[str]]:
        """:meth:`add`, plus the reason keys of every message the stamp gate dropped on the way
        (``now_ns``: the receiver's clock, for the ``stamp_future`` rule; None when it means
        nothing, e.g. in bag replay)."""
        if not 0 <= stream_index < len(self._queues):
            raise IndexError(f"stream_index {stream_index} out of range 0..{len(self._queues) - 1}")
        with self._lock:
            self.stats.received += 1
            admission = self.gate.admit(stream_index, int(stamp_ns), msg, now_ns)
            self.stats.backwards = self.gate.rejected["stamp_backwards"]
            self.stats.resets = self.gate.resets
            if admission.reset:  # what waited from before the reset can no longer pair
                self.stats.evicted += len(self._queues[stream_index])
                self._queues[stream_index].clear()
                self._bytes[stream_index] = 0
            matched = []
            for stamp, item in admission.accepted:
                matched += self._queue_and_match(stream_index, stamp, item)
            return matched, admission.rejected

    def _queue_and_match(self, stream_index: int, stamp_ns: int, msg: Any) -> list[tuple]:
        queue = self._queues[stream_index]
        if stamp_ns in queue:  # the same stamp again replaces the queued message
            self._bytes[stream_index] -= message_bytes(queue[stamp_ns])
        queue[stamp_ns] = msg
        self._bytes[stream_index] += message_bytes(msg)
        # the count bound, then the byte bound (the newest message always stays)
        while len(queue) > self.queue_size or (
                self.max_bytes is not None and self._bytes[stream_index] > self.max_bytes and len(queue) > 1):
            self._bytes[stream_index] -= message_bytes(queue.pop(min(queue)))
            self.stats.evicted += 1
        match = self._find_match(stream_index, stamp_ns)
        if match is None:
            return []
        msgs = tuple(q.pop(t) for q, t in zip(self._queues, match))
        for i, m in enumerate(msgs):
            self._bytes[i] -= message_bytes(m)
        self.stats.matched += 1
        return [msgs]

    def _find_match(self, index: int, stamp_ns: int) -> list[int] | None:
        if stamp_ns not in self._queues[index]:  # evicted at once (it was the oldest)
            return None
        candidates = []
        for i, queue in enumerate(self._queues):
            if i == index:
                continue
            near = [s for s in queue if abs(s - stamp_ns) <= self.slop_ns]
            if not near:
                return None
            # closest first; ties keep insertion order as message_filters' stable sort does
            candidates.append(sorted(near, key=lambda s: abs(s - stamp_ns)))
        for combo in itertools.product(*candidates):
            stamps = list(combo)
            stamps.insert(index, stamp_ns)
            if max(stamps) - min(stamps) < self.slop_ns:
                return stamps
        return None
