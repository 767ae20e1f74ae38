#!/usr/bin/env python3
"""Check that figures quoted in README.md and docs/ reproduce with the installed versions.

Each entry reruns the command a figure came from, reads the figure from its output and compares
it with the text of the doc, as written (the same rounding). Run it after every change of
requirements.lock (docs/DEPENDENCIES.md); exit 1 when a figure no longer reproduces, with the
doc line and both values.

    .venv/bin/python scripts/check_doc_figures.py            # the quick ones (about a minute)
    .venv/bin/python scripts/check_doc_figures.py --study    # also the verdict study (20+ minutes)

Needs ../shared/data (exit 0 with a note where it is absent).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
PY = sys.executable


@dataclass
class Figure:
    doc: str  # file, relative to the repo
    quoted: str  # regex on the doc; its groups are the figures as written
    what: str  # which run produces it (a key of RUNS)
    read: str  # regex on that run's output; its groups, formatted by ``fmt``, must equal ``quoted``'s
    fmt: str = "raw"  # a key of FORMATS
    study: bool = False  # part of the long verdict study


def _accuracy(folder: str) -> list[str]:
    return [PY, "-m", "matchanything_ros.cli", "accuracy", "--data", str(DATA / folder), "--models", "xfeat",
            "--polarity", "both"]


def _roadscene_report(tmp: Path) -> str:
    """make-bag -> replay -> evaluate on roadscene_dev (docs/EVALUATION.md): the report's metrics."""
    cli = [PY, "-m", "matchanything_ros.cli"]
    for args in (["make-bag", str(tmp / "in"), "--folder", str(DATA / "roadscene_dev")],
                 ["replay", str(tmp / "in"), "--out", str(tmp / "out")],
                 ["evaluate", str(tmp / "out"), "--gt", str(tmp / "in.gt.json"), "--report", str(tmp / "r"), "--worst", "0"]):
        subprocess.run(cli + args, cwd=REPO, check=True, capture_output=True, text=True)
    m = json.loads((tmp / "r" / "metrics.json").read_text())["summary"]
    sr = m["homography"]["success_rate"]
    return json.dumps({"ok": m["frames_geometry_ok"], "frames": m["frames"],
                       "sr": [100 * sr[k] for k in ("3px", "5px", "10px")]})


RUNS = {
    "accuracy_dev": lambda tmp: _run(_accuracy("roadscene_dev")),
    "roadscene_report": _roadscene_report,
    "study": lambda tmp: _run([PY, "scripts/verdict_study.py", "collect", "--bases", "0,100,200,300", "--synthetic",
                               "200", "--cache", str(tmp / "cache")]) and _run(
        [PY, "scripts/verdict_study.py", "report", "--cache", str(tmp / "cache"), "--features", str(tmp / "f.json"),
         "--aligned", str(tmp / "none.json")]),
}

FIGURES = [
    Figure("README.md", r"registers \*\*(\d+) % of pairs within 10 px \(SR@10 ([\d.]+), AUC@10 ([\d.]+)\)\*\*",
           "accuracy_dev", r"SR@3/5/10 [\d.]+/[\d.]+/([\d.]+), AUC@3/5/10 [\d.]+/[\d.]+/([\d.]+)", fmt="sr10pct"),
    Figure("docs/EVALUATION.md", r"\| frames OK \(the verdict's coverage\) \| (\d+) / (\d+) \|", "roadscene_report",
           r'"ok": (\d+), "frames": (\d+)', fmt="int"),
    Figure("docs/EVALUATION.md", r"\| homography SR@3 / 5 / 10 px \(a withheld fit counts as a failure\) \| ([\d.]+)% / ([\d.]+)% / ([\d.]+)% \|",
           "roadscene_report", r'"sr": \[([\d.]+), ([\d.]+), ([\d.]+)\]', fmt="pct1"),
    Figure("docs/ACCURACY.md", r"\| \*\*check drives, 220 cases\*\* \| \*\*([\d.]+)\*\* \[[\d.]+, [\d.]+\] \| \*\*([\d.]+)\*\*",
           "study", r"check drives.*?at min_quality 0\.9: OK precision ([\d.]+) \[[^\]]*\], coverage ([\d.]+)", study=True),
]


#: how a run's groups are written in the docs
FORMATS = {
    "raw": lambda vals: list(vals),
    "int": lambda vals: [str(int(v)) for v in vals],
    "pct1": lambda vals: [f"{float(v):.1f}" for v in vals],
    # "registers **79 % of pairs within 10 px (SR@10 0.79, AUC@10 0.38)**" from SR@10, AUC@10
    "sr10pct": lambda vals: [f"{round(100 * float(vals[0])):d}", f"{float(vals[0]):.2f}", f"{float(vals[1]):.2f}"],
}


def _run(cmd: list[str]) -> str:
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:4])} ... exited {res.returncode}: {res.stderr.strip()[-300:]}")
    return res.stdout


def expected(fig: Figure, output: str) -> list[str]:
    m = re.search(fig.read, output, re.S)
    if not m:
        raise RuntimeError(f"{fig.what}: no match for {fig.read!r} in its output")
    return FORMATS[fig.fmt](m.groups())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", action="store_true", help="also the figures of the verdict study (20+ minutes)")
    args = p.parse_args()
    if not DATA.is_dir():
        print(f"check_doc_figures: {DATA} not found: nothing checked")
        return 0
    figures = [f for f in FIGURES if args.study or not f.study]
    outputs: dict[str, str] = {}
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for fig in figures:
            text = (REPO / fig.doc).read_text()
            quoted = re.search(fig.quoted, text)
            if not quoted:
                print(f"FAIL {fig.doc}: the figure ({fig.quoted!r}) is no longer in the doc")
                failed += 1
                continue
            if fig.what not in outputs:
                work = Path(tmp) / fig.what
                work.mkdir()
                outputs[fig.what] = RUNS[fig.what](work)
            want = expected(fig, outputs[fig.what])
            line = text[: quoted.start()].count("\n") + 1
            if list(quoted.groups()) != want:
                print(f"FAIL {fig.doc}:{line}: written {list(quoted.groups())}, reproduced {want} ({fig.what})")
                failed += 1
            else:
                print(f"ok   {fig.doc}:{line}: {want} ({fig.what})")
    print(f"check_doc_figures: {len(figures) - failed} of {len(figures)} figures reproduce")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
