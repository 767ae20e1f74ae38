"""ROS-free approximate-time synchronizer for two or more message streams.

Same pairing rule as ``message_filters.ApproximateTimeSynchronizer`` (the Python
implementation, ``allow_headerless=False``), so that the node without message_filters and bag
replay pair exactly what a ROS user would get:

* each stream keeps at most ``queue_size`` messages keyed by stamp (a message with a stamp
  already queued replaces it; overflow drops the oldest stamp);
* when a message arrives, the other streams' queued stamps within ``slop`` of it are the
  candidates, tried closest first (``itertools.product`` order); the first combination whose
  spread ``max - min`` is strictly below ``slop`` is emitted and removed from the queues.

One addition for live robots and looping bags: a stamp older than the newest one already seen
on its stream is dropped and counted (``stats.backwards``) -- message_filters would queue it
and possibly pair it out of order. A jump back larger than ``reset_threshold_ns`` (a bag
restarted with ``--loop``, a simulator reset) is a time reset instead: every queue is cleared,
``stats.resets`` is counted and the message is accepted.

Stamps are integer nanoseconds (``sec * 10**9 + nanosec``) so the class needs no ROS types.
"""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp: Any) -> int:
    """A ``builtin_interfaces/Time`` (rclpy or rosbags) -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


@dataclass
class SyncStats:
    """Counters for diagnostics."""

    received: int = 0  # messages passed to add()
    matched: int = 0  # tuples emitted
    backwards: int = 0  # messages dropped because their stamp went backwards
    resets: int = 0  # time resets (large backward jumps) that cleared the queues
    evicted: int = 0  # messages pushed out of a full queue without being matched


class ApproximateTimeSynchronizer:
    """Pair messages from ``num_streams`` streams whose stamps lie within ``slop``.

    ``add(stream_index, stamp_ns, msg)`` returns the list of matched tuples (one message per
    stream, in stream order); it is empty when the new message completed no set. Thread safe.
    """

    def __init__(
        self,
        num_streams: int,
        queue_size: int,
        slop: float,
        reset_threshold_ns: int | None = 3 * NS_PER_S,
    ):
        if num_streams < 2:
            raise ValueError(f"num_streams must be >= 2, got {num_streams}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if slop < 0:
            raise ValueError(f"slop must be >= 0 seconds, got {slop}")
        self.queue_size = int(queue_size)
        self.slop_ns = int(round(slop * NS_PER_S))
        self.reset_threshold_ns = reset_threshold_ns
        self.stats = SyncStats()
        self._queues: list[dict[int, Any]] = [{} for _ in range(num_streams)]
        self._newest: list[int | None] = [None] * num_streams
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
        self._newest = [None] * len(self._queues)

    def queued(self, stream_index: int) -> list[int]:
        """Stamps currently waiting on one stream, oldest first (for tests and diagnostics)."""
        with self._lock:
            return sorted(self._queues[stream_index])

    def add(self, stream_index: int, stamp_ns: int, msg: Any) -> list[tuple]:
        """Queue ``msg`` on ``stream_index`` and return the tuples it completed (0 or 1)."""
        if not 0 <= stream_index < len(self._queues):
            raise IndexError(f"stream_index {stream_index} out of range 0..{len(self._queues) - 1}")
        stamp_ns = int(stamp_ns)
        with self._lock:
            self.stats.received += 1
            newest = self._newest[stream_index]
            if newest is not None and stamp_ns < newest:
                if self.reset_threshold_ns is not None and newest - stamp_ns > self.reset_threshold_ns:
                    self.stats.resets += 1
                    self._clear()
                else:
                    self.stats.backwards += 1
                    return []
            self._newest[stream_index] = stamp_ns

            queue = self._queues[stream_index]
            queue[stamp_ns] = msg
            while len(queue) > self.queue_size:
                del queue[min(queue)]
                self.stats.evicted += 1
            match = self._find_match(stream_index, stamp_ns)
            if match is None:
                return []
            msgs = tuple(q.pop(t) for q, t in zip(self._queues, match))
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
