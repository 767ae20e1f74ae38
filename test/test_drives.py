"""Drives of RoadScene-style names, the split by drive, and the cluster bootstrap."""
import numpy as np

from matchanything_ros.evaluation.drives import cluster_bootstrap, drives, split_by_drive

NAMES = ["FLIR_00006", "FLIR_00018", "FLIR_00211", "FLIR_00233", "FLIR_00311", "FLIR_04071", "FLIR_04208",
         "FLIR_video_00069", "FLIR_video_00248", "FLIR_video_00843", "FLIR_video_00939", "odd"]


def test_drives_are_runs_of_close_frame_numbers_per_source():
    d = drives(NAMES)
    assert d["FLIR_00018"] == d["FLIR_00006"] == "FLIR_00006"
    assert d["FLIR_00311"] == d["FLIR_00233"] == "FLIR_00211"  # 211 -> 233 -> 311: gaps <= 150
    assert d["FLIR_04208"] == "FLIR_04071"
    # another source is another drive, even at close numbers
    assert d["FLIR_video_00069"] == "FLIR_video_00069" and d["FLIR_video_00248"] == "FLIR_video_00248"
    assert d["FLIR_video_00939"] == "FLIR_video_00843"
    assert d["odd"] == "odd"
    assert len(set(d.values())) == 7


def test_split_keeps_drives_whole_and_halves_the_pairs():
    fit, check = split_by_drive(NAMES)
    assert fit | check == set(NAMES) and not fit & check
    d = drives(NAMES)
    assert not {d[n] for n in fit} & {d[n] for n in check}
    assert abs(len(fit) - len(check)) <= 2
    assert split_by_drive(list(reversed(NAMES))) == (fit, check)  # deterministic


def test_cluster_bootstrap_resamples_whole_drives():
    # two drives: all right in one, all wrong in the other -> the mean over resamples spans 0..1
    items = [("a", 1.0)] * 10 + [("b", 0.0)] * 10
    lo, hi = cluster_bootstrap(items, lambda it: it[0], lambda its: float(np.mean([v for _, v in its])), reps=500)
    assert lo == 0.0 and hi == 1.0
    # one value everywhere: a zero-width interval; an undefined statistic: nan
    lo, hi = cluster_bootstrap(items[:10], lambda it: it[0], lambda its: 1.0, reps=50)
    assert lo == hi == 1.0
    assert np.isnan(cluster_bootstrap([], lambda it: it, len)[0])
