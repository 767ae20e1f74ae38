"""A single inference thread fed by a small bounded queue (ROS-free).

Callbacks ``submit()`` work and return at once; when the queue is full the OLDEST pending item
is dropped and counted, so under overload the node always works on recent data and latency
stays bounded by (queue_size + 1) processing times.
"""
from __future__ import annotations

import collections
import logging
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)


class LatestWorker:
    """Run ``handler(item)`` on one daemon thread for items submitted from other threads."""

    def __init__(self, handler: Callable[[Any], None], queue_size: int = 1, name: str = "matcher-worker"):
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self._handler = handler
        self._pending: collections.deque = collections.deque()
        self._queue_size = int(queue_size)
        self._cond = threading.Condition()
        self._stop = False
        self._busy = False
        self.submitted = 0
        self.dropped = 0
        self.processed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def set_queue_size(self, queue_size: int) -> None:
        with self._cond:
            self._queue_size = max(1, int(queue_size))
            while len(self._pending) > self._queue_size:
                self._pending.popleft()
                self.dropped += 1

    def submit(self, item: Any) -> None:
        """Queue ``item``; never blocks on the handler."""
        with self._cond:
            self.submitted += 1
            self._pending.append(item)
            while len(self._pending) > self._queue_size:
                self._pending.popleft()
                self.dropped += 1
            self._cond.notify()

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._busy

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._pending.clear()
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                item = self._pending.popleft()
                self._busy = True
            try:
                self._handler(item)
            except Exception:  # the handler reports its own errors; never let the thread die
                log.exception("worker handler raised")
            finally:
                with self._cond:
                    self._busy = False
                    self.processed += 1
