"""The two-rate rig: a slow, accurate model refreshes the rig estimate now and then, while the
pipeline's own (fast) model answers every frame and is gated against that estimate.

A fixed visible/thermal rig does not need the slow model on every frame. Every ``rig.refresh_every``
pairs the :class:`RigRefresher` hands the pair to a second :class:`~matchanything_ros.pipeline.Pipeline`
built for ``rig.refresh_model`` (same geometry, thermal and verdict settings, no rig of its own) on
a background thread; its fit enters the shared :class:`~matchanything_ros.rig.RigEstimator` like any
frame, tagged with the model's name (``rig_sources`` in diagnostics). While a refresh runs, later
turns are skipped and counted (``rig_refresh_skipped``), never queued: the refresh model sets its
own rate. ``rig.refresh_wait`` runs each refresh inline instead, so that a bag evaluation gives the
same result every time. ``rig.refresh_only`` pools only the refresh model's frames into the estimate;
the fast frames are then gated and watched by the drift alarm only.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class RigRefresher:
    """Runs ``rig.refresh_model`` on every ``refresh_every``-th offered pair and feeds the rig."""

    def __init__(self, config, rig):
        from .pipeline import Pipeline

        c = config.rig
        refresh_config = dataclasses.replace(
            config, model=c.refresh_model, weights=c.refresh_weights, refine=False,
            rig=dataclasses.replace(c, enabled=False, refresh_model="", refresh_only=False),
        )
        self.model = c.refresh_model
        self.every = int(c.refresh_every)
        self.wait = bool(c.refresh_wait)
        self.rig = rig
        self.pipeline = Pipeline(refresh_config)  # raises MatcherError / WeightsError: refused like the main model
        self._lock = threading.Lock()
        self._busy = False
        self._offered = 0
        self._thread: threading.Thread | None = None
        self.refreshes = 0
        self.skipped = 0
        self.errors = 0
        self.last_seconds: float | None = None
        self.last_error = ""
        self.last_status = ""

    def offer(self, visible: np.ndarray, thermal: np.ndarray, K0=None, K1=None) -> bool:
        """A pair the frame model just processed; True when it starts a refresh."""
        with self._lock:
            turn = self._offered % self.every == 0
            self._offered += 1
            if not turn:
                return False
            if self._busy:
                self.skipped += 1
                return False
            self._busy = True
        args = (np.array(visible, copy=True), np.array(thermal, copy=True), K0, K1)
        if self.wait:
            self._run(*args)
        else:
            self._thread = threading.Thread(target=self._run, args=args, name="rig-refresh", daemon=True)
            self._thread.start()
        return True

    def _run(self, visible, thermal, K0, K1) -> None:
        start = time.perf_counter()
        try:
            result = self.pipeline.process(visible, thermal, K0, K1)
            # evidence like any frame's (the rig's own gate keeps a fit that disagrees out)
            self.rig.update(result, K0, K1, source=self.model)
            self.last_status = result.status
            with self._lock:
                self.refreshes += 1
        except Exception as exc:  # noqa: BLE001 -- a failed refresh must not take the node down
            with self._lock:
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            log.warning("rig refresh with %s failed: %s", self.model, self.last_error)
        finally:
            self.last_seconds = time.perf_counter() - start
            with self._lock:
                self._busy = False

    def join(self, timeout: float | None = None) -> None:
        """Wait for a running refresh (tests, shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def status(self) -> dict[str, Any]:
        """Diagnostics values."""
        with self._lock:
            values: dict[str, Any] = {
                "rig_refresh_model": self.model, "rig_refresh_every": self.every,
                "rig_refreshes": self.refreshes, "rig_refresh_skipped": self.skipped,
                "rig_refresh_errors": self.errors, "rig_refresh_busy": self._busy,
            }
        if self.last_seconds is not None:
            values["rig_refresh_seconds"] = round(self.last_seconds, 3)
        if self.last_status:
            values["rig_refresh_last_status"] = self.last_status
        if self.last_error:
            values["rig_refresh_last_error"] = self.last_error
        return values
