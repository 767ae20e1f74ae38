"""The two-rate rig (rig_refresh.py): a second model refreshes the rig estimate every N pairs
while the pipeline's own model answers every frame. Real matchers (XFeat for both roles here: the
frame model and the refresh model, at 320 px) on a synthetic planar pair."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from matchanything_ros.pipeline import Pipeline, PipelineConfig
from matchanything_ros.rig import RigConfig
from matchanything_ros.synthetic import make_planar_pair




@pytest.fixture(scope="module")
def frames():
    # one rig: the same pair, six times (make_planar_pair draws a homography per seed)
    p = make_planar_pair(7, size=(320, 256))
    return [(p.visible, p.thermal)] * 6, p.H


def _config(**rig):
    return PipelineConfig(model="xfeat", resolution=320, geometry="homography", min_quality=0.0,
                          rig=RigConfig(enabled=True, min_frames=2, **rig))


def test_refresh_model_feeds_the_estimate_every_nth_pair_and_is_named_in_diagnostics(frames):
    pairs, _ = frames
    pipe = Pipeline(_config(refresh_model="xfeat", refresh_every=3, refresh_wait=True))
    assert pipe.refresher is not None and pipe.refresher.model == "xfeat"
    for vis, th in pairs:
        pipe.process(vis, th)
    status = pipe.refresher.status()
    assert status["rig_refreshes"] == 2 and status["rig_refresh_skipped"] == 0  # pairs 0 and 3
    level, message, values = pipe.rig_status()
    assert values["rig_refresh_model"] == "xfeat"
    assert "xfeat: 2" in values["rig_sources"] and "frame model" in values["rig_sources"]
    snap = pipe.rig.snapshot()
    assert snap.sources.get("xfeat") == 2


def test_refresh_only_pools_only_the_refresh_models_frames(frames):
    pairs, _ = frames
    pipe = Pipeline(_config(refresh_model="xfeat", refresh_every=2, refresh_only=True, refresh_wait=True))
    for vis, th in pairs:
        pipe.process(vis, th)
    snap = pipe.rig.snapshot()
    assert snap is not None and set(snap.sources) == {"xfeat"} and snap.sources["xfeat"] == 3
    assert snap.updates == len(pairs) + 3  # every frame was seen (gate, alarm), plus the refreshes


def test_a_busy_refresher_skips_its_turn_and_never_queues(frames):
    """In the background the frame model does not wait: turns that come while a refresh runs are
    skipped and counted."""
    pairs, _ = frames
    pipe = Pipeline(_config(refresh_model="xfeat", refresh_every=1))
    release = threading.Event()
    original = pipe.refresher.pipeline.process

    def slow(*args, **kwargs):  # hold the refresh until the frames went past
        release.wait(60)
        return original(*args, **kwargs)

    pipe.refresher.pipeline.process = slow
    for vis, th in pairs[:4]:
        pipe.process(vis, th)
    assert pipe.refresher.status()["rig_refresh_skipped"] == 3 and pipe.refresher.status()["rig_refresh_busy"]
    release.set()
    pipe.refresher.join(60)
    assert pipe.refresher.status()["rig_refreshes"] == 1 and not pipe.refresher.status()["rig_refresh_busy"]


def test_refresh_settings_are_validated_and_a_failing_refresh_is_counted(frames):
    with pytest.raises(ValueError, match="refresh_only needs rig.refresh_model"):
        RigConfig(enabled=True, refresh_only=True).validate()
    with pytest.raises(ValueError, match="refresh_every"):
        RigConfig(enabled=True, refresh_model="xfeat", refresh_every=0).validate()
    pairs, _ = frames
    pipe = Pipeline(_config(refresh_model="xfeat", refresh_every=1, refresh_wait=True))

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    pipe.refresher.pipeline.process = broken
    result = pipe.process(*pairs[0])  # the frame itself is answered
    assert result.geometry is not None
    values = pipe.refresher.status()
    assert values["rig_refresh_errors"] == 1 and "out of memory" in values["rig_refresh_last_error"]


def test_the_refresher_survives_a_change_that_keeps_it_and_goes_with_one_that_drops_it(frames):
    pipe = Pipeline(_config(refresh_model="xfeat", refresh_every=3, refresh_wait=True))
    first = pipe.refresher
    rebuilt = Pipeline(_config(refresh_model="xfeat", refresh_every=3, refresh_wait=True, gate_px=5.0))
    rebuilt.adopt_rig(pipe)
    assert rebuilt.refresher is first and rebuilt.refresher.rig is rebuilt.rig is pipe.rig
    pipe.reconfigure(_config())
    assert pipe.refresher is None
