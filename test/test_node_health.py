"""ROS-free parts of the node: the bounded worker queue and the diagnostics verdict."""
import threading
import time

import numpy as np
import pytest

from matchanything_ros.geometry import GeometryResult, GeometryStatus
from matchanything_ros.matching import Matches
from matchanything_ros.node.outputs import ERROR, OK, WARN
from matchanything_ros.pipeline import PipelineResult
from matchanything_ros.node.health import NodeHealth, Thresholds
from matchanything_ros.node.worker import LatestWorker


def test_worker_drops_oldest_and_never_blocks_the_caller():
    release = threading.Event()
    seen = []

    def handler(item):
        release.wait(5)
        seen.append(item)

    worker = LatestWorker(handler, queue_size=1)
    try:
        worker.submit(0)  # taken by the worker, blocked in the handler
        time.sleep(0.1)
        t0 = time.perf_counter()
        for i in range(1, 6):
            worker.submit(i)
        assert time.perf_counter() - t0 < 0.05  # submit returns at once
        assert worker.dropped == 4  # 1..4 replaced by newer pairs
        release.set()
        deadline = time.monotonic() + 5
        while not worker.idle() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == [0, 5]  # the newest pending pair is processed
    finally:
        worker.stop()


def test_worker_survives_handler_errors():
    seen = []

    def handler(item):
        if item == "bad":
            raise RuntimeError("boom")
        seen.append(item)

    worker = LatestWorker(handler, queue_size=4)
    try:
        for item in ("bad", "good"):
            worker.submit(item)
        deadline = time.monotonic() + 5
        while seen != ["good"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == ["good"] and worker.processed == 2
    finally:
        worker.stop()


def _result(status=GeometryStatus.OK, n=100, inliers=80) -> PipelineResult:
    mask = np.arange(n) < inliers
    return PipelineResult(
        matches=Matches(np.zeros((n, 2)), np.zeros((n, 2)), np.ones(n)),
        geometry=GeometryResult("homography", status, "" if status == GeometryStatus.OK else "too few", np.eye(3), mask),
        polarity="normal", model="xfeat", timings={"total": 0.1},
        visible_shape=(10, 10), thermal_shape=(10, 10),
    )


def test_health_levels_and_reasons():
    th = Thresholds(warn_inlier_ratio=0.2, warn_latency=0.5, stale_timeout=3.0)
    h = NodeHealth("matcher_node: test", start_time=0.0)
    # nothing received after the stale timeout: ERROR naming the silent streams
    r = h.report(5.0, th)
    assert r.level == ERROR and "visible, thermal" in r.message

    for t in np.arange(5.0, 6.0, 0.1):
        h.on_input("visible", t)
        h.on_input("thermal", t)
    h.on_pair(6.0)
    h.on_result(6.0, 0.12, _result(), internal=0.002)
    r = h.report(6.1, th)
    assert r.level == OK and r.message == "OK"
    assert r.values["input_rate_visible_hz"] == pytest.approx(10.0, rel=0.05)
    assert r.values["latency_median_ms"] == pytest.approx(120.0)
    assert r.values["overhead_median_ms"] == pytest.approx(20.0)
    assert r.values["internal_overhead_median_ms"] == pytest.approx(2.0)

    # malformed input and overload drops in this period: WARN, counted once
    h.on_bad_input("visible_size_mismatch")
    h.set_count("dropped_overload", 3)
    r = h.report(6.2, th)
    assert r.level == WARN and "1 malformed" in r.message and "3 pair(s) dropped" in r.message
    assert r.values["bad_input.visible_size_mismatch"] == 1
    assert h.report(6.3, th).level == OK  # deltas: nothing new since the last report

    # a failed fit and a low inlier ratio: WARN with both reasons
    h.on_result(6.4, 0.1, _result(GeometryStatus.TOO_FEW_MATCHES, n=20, inliers=2))
    r = h.report(6.5, th)
    assert r.level == WARN and "TOO_FEW_MATCHES" in r.message and "inlier ratio" in r.message

    # a matcher error is ERROR until a pair succeeds again
    h.on_error("matcher_errors", "matcher error: out of memory")
    assert h.report(6.6, th).level == ERROR
    h.on_result(6.7, 0.1, _result())
    assert h.report(6.8, th).level == OK

    # no pair for longer than the stale timeout
    r = h.report(20.0, th)
    assert r.level == WARN and "no pair processed" in r.message


def test_low_inlier_ratio_fit_is_a_warning_that_says_why():
    """A fit rejected by min_inlier_ratio reaches /diagnostics as WARN with the geometry's own
    message, also when the inlier ratio is above diagnostics.warn_inlier_ratio."""
    import cv2

    from matchanything_ros.geometry import estimate_geometry

    rng = np.random.default_rng(3)
    x0 = rng.uniform([0, 0], [640, 512], (200, 2))
    x1 = cv2.perspectiveTransform(x0.reshape(-1, 1, 2), np.diag([1.1, 0.9, 1.0])).reshape(-1, 2)
    x1[60:] = rng.uniform([0, 0], [640, 512], (140, 2))  # 60 of 200 consistent: ratio ~0.3
    g = estimate_geometry(x0, x1, "homography", min_inlier_ratio=0.5)
    assert g.status == GeometryStatus.LOW_INLIER_RATIO
    result = PipelineResult(
        matches=Matches(x0, x1, np.ones(200)), geometry=g, polarity="normal", model="xfeat",
        timings={"total": 0.1}, visible_shape=(512, 640), thermal_shape=(512, 640),
    )
    h = NodeHealth("matcher_node: test", start_time=0.0)
    h.on_input("visible", 1.0)
    h.on_input("thermal", 1.0)
    h.on_pair(1.0)
    h.on_result(1.0, 0.1, result)
    r = h.report(1.1, Thresholds(warn_inlier_ratio=0.2, warn_latency=0.5, stale_timeout=3.0))
    assert r.level == WARN and r.values["geometry_status"] == "LOW_INLIER_RATIO"
    assert f"geometry LOW_INLIER_RATIO: {g.message}" in r.message and "< min_inlier_ratio 50 %" in r.message
    assert "inlier ratio 0." not in r.message  # ~0.3 is above warn_inlier_ratio


def test_hostile_stamps_do_not_reach_latency_and_losses_warn():
    """issue 9: far-past stamps pushed latency_max_ms to 1.8e12; lost messages were counted nowhere."""
    health = NodeHealth("matcher_node: test", start_time=0.0)
    health.on_result(1.0, 0.050, _result())
    health.on_result(1.1, 1.8e9, _result())  # a stamp from 1970
    health.on_result(1.2, -2.0, _result())  # a stamp ahead of our clock
    health.on_result(1.3, None, _result())  # no trusted clock
    health.count("messages_lost", 3)
    health.on_bad_input("thermal_camera_info_invalid", "thermal camera_info: K is not 9 finite numbers")
    report = health.report(1.4, Thresholds(stale_timeout=30.0))
    assert report.values["latency_max_ms"] == pytest.approx(50.0)
    assert report.values["latency_untrusted"] == 3 and report.values["processed"] == 4
    assert report.values["messages_lost"] == 3 and "3 message(s) lost" in report.message
    assert report.values["bad_input.thermal_camera_info_invalid"] == 1
    assert "K is not 9 finite" in report.values["last_bad_input"]
