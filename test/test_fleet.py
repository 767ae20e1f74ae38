"""Fleet replay (issue 22): many bags, one task per bag, in this process or on a local Ray with
two workers; a corrupt bag reported while the rest go on; resumable; a worker killed mid-bag
retried; the aggregated result equal to running the bags one by one."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from matchanything_ros.bags.fleet import FleetOptions, find_bags, run_bag, run_fleet, summarise
from matchanything_ros.bags.make_bag import synthetic_frames, write_bag

OPTIONS = FleetOptions(overrides=["model=sift", "resolution=320"])


def _make(path: Path, seed: int, frames: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bag(synthetic_frames(frames, kind="planar", size=(320, 256), seed=seed), path)
    return path


@pytest.fixture(scope="module")
def drives(tmp_path_factory):
    """drives/day/{b1,b2}, drives/night/{n1, broken.mcap} (random bytes)."""
    root = tmp_path_factory.mktemp("fleet") / "drives"
    for name, seed in (("day/b1", 1), ("day/b2", 2), ("night/n1", 3)):
        _make(root / name, seed)
    (root / "night" / "broken.mcap").write_bytes(os.urandom(4096))
    return root


def _figures(rows):
    """What must not depend on where or how often a bag ran (no timings, hosts, pids)."""
    keep = ("id", "condition", "status", "pairs", "processed", "ok", "frames_scored", "sr10", "ground_truth")
    return [{k: r[k] for k in keep} for r in rows]


def _pooled(summary):
    drop = ("frame_ms_median_of_bags",)
    return {name: {k: v for k, v in p.items() if k not in drop}
            for name, p in [*summary["conditions"].items(), ("overall", summary["overall"])]}


def test_find_bags_folders_globs_and_list_files(drives, tmp_path):
    bags = find_bags([str(drives)])
    assert [(Path(b.path).name, b.condition) for b in bags] == [
        ("b1", "day"), ("b2", "day"), ("broken.mcap", "night"), ("n1", "night")]
    assert len({b.id for b in bags}) == 4
    assert [Path(b.path).name for b in find_bags([str(drives / "day" / "b*")])] == ["b1", "b2"]
    listing = tmp_path / "bags.txt"
    listing.write_text(f"# two drives\n{drives / 'day' / 'b2'}\n\n{drives / 'night' / 'n1'}  # the night one\n")
    assert [Path(b.path).name for b in find_bags([str(listing), str(drives / "day" / "b2")])] == ["b2", "n1"]
    for spec in (str(tmp_path / "nothing"), str(tmp_path / "*.mcap")):
        with pytest.raises(ValueError, match="no such|holds no bag"):
            find_bags([spec])
    listing.write_text(str(tmp_path / "gone"))
    with pytest.raises(ValueError, match="not a bag"):
        find_bags([str(listing)])


def test_in_process_fleet_equals_bags_one_by_one_and_resumes(drives, tmp_path):
    bags = find_bags([str(drives)])
    alone = [run_bag(b, str(tmp_path / "alone"), OPTIONS) for b in bags]
    seen = []
    results = run_fleet(bags, str(tmp_path / "fleet"), OPTIONS, progress=lambda r, n, t: seen.append((r["id"], n, t)))
    assert [r["status"] for r in results] == ["done", "done", "failed", "done"]
    assert "BagError" in results[2]["error"] and "broken.mcap" in results[2]["error"]
    assert [n for _, n, _ in seen] == [1, 2, 3, 4] and all(t == 4 for _, _, t in seen)
    assert _figures(summarise(results)["bags"]) == _figures(summarise(alone)["bags"])
    report = json.loads((tmp_path / "fleet" / "fleet.json").read_text())
    assert report["overall"]["done"] == 3 and report["overall"]["failed"] == 1 and report["overall"]["pairs"] == 9
    assert report["conditions"]["night"]["failed"] == 1 and "broken" in (tmp_path / "fleet" / "fleet.md").read_text()
    # resume: done bags are not run again; the failed one is, from a clean folder (a killed
    # run's leftovers included)
    leftover = tmp_path / "fleet" / bags[2].id / "half-written"
    leftover.write_text("x")
    again = run_fleet(bags, str(tmp_path / "fleet"), OPTIONS)
    assert [bool(r.get("resumed")) for r in again] == [True, True, False, True]
    assert not leftover.exists()
    assert _figures(summarise(again)["bags"]) == _figures(summarise(results)["bags"])


@pytest.mark.slow
def test_ray_two_workers_corrupt_bag_and_a_worker_killed_mid_bag(drives, tmp_path):
    """A local Ray with two workers: the aggregated result equals the bags run one by one
    (above), with the corrupt bag reported, and a worker SIGKILLed while it replays a longer bag
    (Ray retries the task; its folder is cleared first)."""
    pytest.importorskip("ray")
    long_bag = _make(tmp_path / "drives" / "long" / "l1", seed=4, frames=24)
    bags = find_bags([str(drives), str(long_bag)])
    out = tmp_path / "ray"
    long_id = next(b.id for b in bags if b.path == str(long_bag.resolve()))
    killed = {}

    def kill_once():
        started = out / long_id / "started.json"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not started.exists():
            time.sleep(0.05)
        if started.exists():
            pid = json.loads(started.read_text())["pid"]
            time.sleep(1.0)  # well into the bag (24 pairs at ~0.2 s)
            os.kill(pid, signal.SIGKILL)
            killed["pid"] = pid

    killer = threading.Thread(target=kill_once, daemon=True)
    killer.start()
    results = run_fleet(bags, str(out), OPTIONS, workers=2)
    killer.join(timeout=10)
    assert killed, "the long bag never started"
    by_id = {r["id"]: r for r in results}
    assert by_id[long_id]["status"] == "done" and by_id[long_id]["pid"] != killed["pid"]  # retried elsewhere
    assert by_id[long_id]["replay"]["pairs"] == 24
    alone = [run_bag(b, str(tmp_path / "alone"), OPTIONS) for b in bags]
    assert _figures(summarise(results)["bags"]) == _figures(summarise(alone)["bags"])
    assert _pooled(summarise(results)) == _pooled(summarise(alone))
    assert len({r["pid"] for r in results if r.get("pid")}) >= 2  # two workers did the work


def test_a_bag_run_here_leaves_the_callers_thread_counts(drives, tmp_path):
    """Found by the whole suite: run_bag in this process had left torch at one thread, and a
    later test's in-process reference then matched differently from the node it checked."""
    import cv2
    import torch

    before = torch.get_num_threads(), cv2.getNumThreads()
    run_bag(find_bags([str(drives / "day" / "b1")])[0], str(tmp_path), FleetOptions(overrides=OPTIONS.overrides, threads=1))
    assert (torch.get_num_threads(), cv2.getNumThreads()) == before
