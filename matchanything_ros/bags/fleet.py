"""Replay and evaluate many bags: a fleet's recordings, one task per bag (ROS-free).

Each bag goes through exactly what ``replay`` and ``evaluate`` do for one bag (the node's code
path), into its own folder under the output folder::

    OUT/<bag id>/out/          the output bag (replay)
    OUT/<bag id>/started.json  host and process running it (written first)
    OUT/<bag id>/result.json   status, the replay summary, the evaluation summary
    OUT/fleet.json, fleet.md   every bag, per condition, overall

* **Resumable**: a bag whose ``result.json`` says ``done`` is skipped; anything else (failed,
  or a folder left by a killed run) is cleared and run again.
* **A bag that fails** (damaged, no pairs, the matcher raised) is reported in its row and the
  rest go on.
* **Where it runs**: in this process (``workers=1``, or Ray not installed), or as Ray tasks
  (``pip install -e '.[fleet]'``): a local Ray with ``workers`` CPUs, or the cluster at
  ``address``. Each task builds its own pipeline: nothing but the paths and the configuration
  crosses between tasks, and a task that dies with its worker is retried by Ray (its folder is
  cleared first, so a retry starts clean).
* **Condition** of a bag: the name of the folder it was found in, relative to the folder given
  (``drives/night/b3`` -> ``night``); bags given one by one, by a glob or a list file: the name of
  their parent folder.
* **Ground truth**: ``<bag>.gt.json`` beside the input bag (what ``make-bag`` writes), else the
  bag is evaluated without it (matches, inliers, status, timings).
"""
from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from .storage import BagError

BAG_SUFFIXES = (".mcap", ".db3")
RESULT = "result.json"


@dataclass
class FleetBag:
    """One input bag: its path, the id of its output folder and its condition."""

    path: str
    id: str
    condition: str


@dataclass
class FleetOptions:
    """What every bag is replayed with (the replay command's options)."""

    config: str | None = None
    node_name: str = "matcher_node"
    namespace: str = "/"
    overrides: list[str] = field(default_factory=list)
    storage: str = "mcap"
    distro: str = "humble"
    max_pairs: int | None = None
    threads: int = 1  # inference threads per task (a worker is one CPU)


def is_bag(path: Path) -> bool:
    """A rosbag2 folder (metadata.yaml) or a single .mcap / .db3 file."""
    if path.is_file():
        return path.suffix in BAG_SUFFIXES
    return path.is_dir() and (path / "metadata.yaml").is_file()


def find_bags(specs: list[str]) -> list[FleetBag]:
    """The bags named by ``specs``: bags, folders searched for bags (recursively), glob
    patterns, and list files (``*.txt``: one path per line, ``#`` comments). Sorted, each once;
    a spec that names nothing raises ValueError."""
    found: dict[Path, str] = {}
    for spec in specs:
        path = Path(spec).expanduser()
        if any(c in spec for c in "*?["):
            items = [Path(p) for p in sorted(glob.glob(spec))]
            bags = [(p, p.resolve().parent.name) for p in items if is_bag(p)]
        elif path.is_file() and path.suffix == ".txt":
            lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
            items = [(path.parent / line) if not Path(line).is_absolute() else Path(line) for line in lines if line]
            missing = [str(p) for p in items if not is_bag(p)]
            if missing:
                raise ValueError(f"{spec}: not a bag: {', '.join(missing[:3])}")
            bags = [(p, p.resolve().parent.name) for p in items]
        elif is_bag(path):
            bags = [(path, path.resolve().parent.name)]
        elif path.is_dir():
            bags = [(p, _condition(p, path)) for p in _bags_under(path)]
        else:
            raise ValueError(f"{spec}: no such bag, folder or list file")
        if not bags:
            raise ValueError(f"{spec}: holds no bag (a rosbag2 folder, .mcap or .db3)")
        for p, condition in bags:
            found.setdefault(p.resolve(), condition)
    return [FleetBag(str(p), _bag_id(p), c) for p, c in sorted(found.items())]


def _bags_under(folder: Path) -> list[Path]:
    out = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if is_bag(entry):
            out.append(entry)
        elif entry.is_dir():
            out.extend(_bags_under(entry))
    return out


def _condition(bag: Path, root: Path) -> str:
    parent = bag.resolve().parent.relative_to(root.resolve())
    return str(parent) if str(parent) != "." else root.resolve().name


def _bag_id(path: Path) -> str:
    """A folder name for the bag's outputs: its name and a short hash of its full path (two
    drives' ``rosbag2_0`` do not collide)."""
    name = path.name.removesuffix(path.suffix) if path.is_file() else path.name
    return f"{name}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def ground_truth_for(bag: Path) -> Path | None:
    """``<bag>.gt.json`` beside the bag (make-bag's), or None."""
    from .make_bag import ground_truth_path

    candidate = ground_truth_path(bag)
    return candidate if candidate.is_file() else None


# -- one bag -----------------------------------------------------------------------------------
def run_bag(bag: FleetBag, out_root: str, options: FleetOptions) -> dict[str, Any]:
    """Replay and evaluate one bag into ``out_root/<id>``; returns (and writes) its result. Never
    raises for a bad bag: the result says ``failed`` and why."""
    folder = Path(out_root) / bag.id
    if folder.exists():  # a failed or killed earlier try: start clean
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    result: dict[str, Any] = {"bag": bag.path, "id": bag.id, "condition": bag.condition, "status": "failed",
                              "host": os.uname().nodename, "pid": os.getpid()}
    _write_json(folder / "started.json", {"host": result["host"], "pid": result["pid"], "time": time.time()})
    started = time.monotonic()
    try:
        result.update(_replay_and_evaluate(Path(bag.path), folder, options))
        result["status"] = "done"
    except (BagError, ValueError, OSError, RuntimeError) as exc:  # MatcherError is a RuntimeError
        result["error"] = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
    result["wall_s"] = round(time.monotonic() - started, 3)
    _write_json(folder / RESULT, result)
    return result


def _replay_and_evaluate(bag: Path, folder: Path, options: FleetOptions) -> dict[str, Any]:
    import cv2
    import torch

    from ..node.threads import apply_threads

    # one bag's thread count, not the caller's: in this process (workers 1) the count is set
    # back afterwards (a test suite's later results depend on it)
    before = torch.get_num_threads(), cv2.getNumThreads()
    apply_threads(options.threads)
    try:
        return _replay_and_evaluate_here(bag, folder, options)
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def _replay_and_evaluate_here(bag: Path, folder: Path, options: FleetOptions) -> dict[str, Any]:
    from ..commands import CommandError
    from ..commands.replay import load_configs
    from ..evaluation.evaluate import evaluate
    from .replay import ReplayOptions, replay

    try:
        node_cfg, pipe_cfg = load_configs(options.config, options.node_name, options.overrides, options.namespace)
    except CommandError as exc:
        raise ValueError(str(exc)) from None
    summary = replay(bag, folder / "out", node_cfg, pipe_cfg,
                     ReplayOptions(namespace=options.namespace, storage=options.storage, distro=options.distro,
                                   max_pairs=options.max_pairs, progress=False))
    replayed = {k: v for k, v in asdict(summary).items() if k != "frame_ms"}
    replayed["frame_ms_median"] = statistics.median(summary.frame_ms) if summary.frame_ms else None
    if summary.error:
        raise BagError(summary.error)
    if summary.pairs == 0:
        raise ValueError(f"no visible/thermal pair found (sync.slop = {node_cfg.sync.slop} s)")
    gt = ground_truth_for(bag)
    ev = evaluate(folder / "out", gt, namespace=options.namespace, distro=options.distro)
    return {"replay": replayed, "ground_truth": str(gt) if gt else None, "evaluation": ev.summary}


def _write_json(path: Path, data: Any) -> None:
    from ..json_out import dumps

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(data))
    tmp.replace(path)  # a reader (or a resumed run) never sees half a result


def done_result(out_root: str, bag: FleetBag) -> dict[str, Any] | None:
    """The result of a bag an earlier run finished, or None."""
    path = Path(out_root) / bag.id / RESULT
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("status") == "done" else None


# -- the fleet ---------------------------------------------------------------------------------
def run_fleet(bags: list[FleetBag], out_root: str, options: FleetOptions, *, workers: int = 1,
              address: str | None = None, progress: Callable[[dict[str, Any], int, int], None] | None = None,
              worker_memory_mb: int | None = None) -> list[dict[str, Any]]:
    """Every bag's result (in ``bags``' order), running what is not done yet; ``progress(result,
    finished, total)`` after each bag. Ray when ``workers > 1`` or ``address`` is given and Ray
    is installed, else in this process."""
    Path(out_root).mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for bag in bags:
        earlier = done_result(out_root, bag)
        if earlier is not None:
            results[bag.id] = {**earlier, "resumed": True}
        else:
            todo.append(bag)
    total, finished = len(bags), len(results)
    for result in results.values():
        if progress:
            progress(result, finished, total)

    def record(result):
        nonlocal finished
        results[result["id"]] = result
        finished += 1
        if progress:
            progress(result, finished, total)

    if todo and (workers > 1 or address) and ray_available():
        for result in _run_on_ray(todo, out_root, options, workers, address, worker_memory_mb):
            record(result)
    else:
        for bag in todo:
            record(run_bag(bag, out_root, options))
    ordered = [results[b.id] for b in bags]
    write_fleet_report(ordered, out_root)
    return ordered


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def _run_on_ray(bags: list[FleetBag], out_root: str, options: FleetOptions, workers: int, address: str | None,
                worker_memory_mb: int | None):
    """Yield each bag's result as its Ray task finishes (one CPU per task)."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = workers
            # the workers import this package from the same place as this process
            kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(
                [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]).strip(os.pathsep),
                "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}}
        ray.init(**kwargs)
    try:
        task_options: dict[str, Any] = {"num_cpus": 1, "max_retries": 2, "retry_exceptions": False}
        if worker_memory_mb:
            task_options["memory"] = worker_memory_mb * 2**20  # scheduling: no two tasks beyond a node's memory
        task = ray.remote(**task_options)(run_bag)
        pending = {task.remote(bag, out_root, options): bag for bag in bags}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            bag = pending.pop(ref)
            try:
                yield ray.get(ref)
            except Exception as exc:  # the task died more often than retried: report, go on
                yield {"bag": bag.path, "id": bag.id, "condition": bag.condition, "status": "failed",
                       "error": " ".join(f"{type(exc).__name__}: {exc}".split())[:500]}
    finally:
        if started_here:
            ray.shutdown()


# -- the aggregated report ---------------------------------------------------------------------
def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures per bag, per condition and overall (frame-weighted over the bags that finished)."""
    rows = [_row(r) for r in results]
    by_condition: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_condition.setdefault(row["condition"], []).append(row)
    return {"bags": rows, "conditions": {c: _pool(rs) for c, rs in sorted(by_condition.items())},
            "overall": _pool(rows)}


def _row(result: dict[str, Any]) -> dict[str, Any]:
    rep = result.get("replay") or {}
    ev = result.get("evaluation") or {}
    hom = ev.get("homography") or {}
    return {
        "bag": result.get("bag"), "id": result.get("id"), "condition": result.get("condition", ""),
        "status": result.get("status"), "error": result.get("error"),
        "pairs": rep.get("pairs", 0), "processed": rep.get("processed", 0), "ok": rep.get("ok", 0),
        "frame_ms_median": rep.get("frame_ms_median"),
        "ground_truth": bool(result.get("ground_truth")),
        "frames_scored": ev.get("frames", 0) if result.get("ground_truth") else 0,
        "sr10": (hom.get("success_rate") or {}).get("10px") if isinstance(hom, dict) else None,
        "wall_s": result.get("wall_s"),
    }


def _pool(rows: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in rows if r["status"] == "done"]
    scored = [r for r in done if r["sr10"] is not None and r["frames_scored"]]
    frames = sum(r["frames_scored"] for r in scored)
    times = [r["frame_ms_median"] for r in done if r["frame_ms_median"] is not None]
    return {
        "bags": len(rows), "done": len(done), "failed": len(rows) - len(done),
        "pairs": sum(r["pairs"] for r in done), "ok": sum(r["ok"] for r in done),
        "ok_share": (sum(r["ok"] for r in done) / max(1, sum(r["processed"] for r in done))) if done else None,
        "sr10": (sum(r["sr10"] * r["frames_scored"] for r in scored) / frames) if frames else None,
        "frames_scored": frames,
        "frame_ms_median_of_bags": statistics.median(times) if times else None,
    }


def write_fleet_report(results: list[dict[str, Any]], out_root: str) -> dict[str, Any]:
    """fleet.json and fleet.md in ``out_root``; returns the summary."""
    summary = summarise(results)
    _write_json(Path(out_root) / "fleet.json", summary)
    (Path(out_root) / "fleet.md").write_text(format_fleet(summary))
    return summary


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_fleet(summary: dict[str, Any]) -> str:
    """The aggregated report as Markdown (also what the command prints)."""
    lines = ["# Fleet replay", "", "| bag | condition | status | pairs | OK | SR@10 | median ms / pair |",
             "|---|---|---|---|---|---|---|"]
    for r in summary["bags"]:
        status = r["status"] if r["status"] == "done" else f"failed: {r['error']}"
        lines.append(f"| {r['id']} | {r['condition']} | {status} | {r['pairs']} | {r['ok']} | {_fmt(r['sr10'])} | "
                     f"{_fmt(r['frame_ms_median'], 1)} |")
    lines += ["", "| condition | bags | done | failed | pairs | OK share | SR@10 (frames scored) |", "|---|---|---|---|---|---|---|"]
    for name, p in [*summary["conditions"].items(), ("**overall**", summary["overall"])]:
        lines.append(f"| {name} | {p['bags']} | {p['done']} | {p['failed']} | {p['pairs']} | {_fmt(p['ok_share'])} | "
                     f"{_fmt(p['sr10'])} ({p['frames_scored']}) |")
    return "\n".join(lines) + "\n"
