#!/usr/bin/env python3
"""Check the commands quoted in README.md and docs/*.md against the code, cheaply.

Every command in a ```bash block, and every inline `code` span that starts like a command, is
checked without doing its work:

* ``matchanything-ros SUB ARGS`` (also ``.venv/bin/matchanything-ros``): ARGS are parsed by the
  CLI's own argparse parser, so an option or choice that does not exist fails;
* ``bash scripts/X.sh`` / ``python scripts/X.py ARGS``: the script exists; a Python script's
  ``--help`` runs and lists every ``--option`` quoted;
* ``matcher_node ... --params-file FILE`` (wheels): FILE exists and reads as the node reads it;
* ``python -m pytest PATHS``: the test files exist;
* ``ros2``, ``colcon``, ``rosdep``, ``export``, ``cd``, ``pip`` lines: listed as not checked (they
  need a ROS install or change the machine).

    .venv/bin/python scripts/check_doc_commands.py        # exit 1 if any command fails
"""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
INLINE_START = ("matchanything-ros ", ".venv/bin/", "bash scripts/", "python scripts/", "python -m pytest")


def doc_commands(path: Path) -> list[tuple[int, str]]:
    """(line number, command) of every bash block line (continuations joined) and inline command."""
    out: list[tuple[int, str]] = []
    in_bash, pending, start = False, "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            in_bash = line.strip() == "```bash" and not in_bash
            continue
        if in_bash:
            text = line.split(" # ")[0].rstrip() if not line.lstrip().startswith("#") else ""
            if pending:
                pending += " " + text.strip()
            elif text.strip():
                pending, start = text.strip(), number
            if pending.endswith("\\"):
                pending = pending[:-1].rstrip()
                continue
            if pending:
                out.append((start, pending))
            pending = ""
        else:
            for span in re.findall(r"`([^`]+)`", line):
                if span.startswith(INLINE_START):
                    out.append((number, span))
    return out


def check(command: str) -> tuple[str, str]:
    """("OK" | "FAIL" | "SKIP", detail)."""
    command = re.sub(r"\s\[[^\]]*\]", "", command)  # a synopsis' [optional] parts
    try:
        words = shlex.split(command)
    except ValueError as exc:
        return "FAIL", f"not shell syntax: {exc}"
    if words and words[0].startswith(".venv/bin/") and words[0] != ".venv/bin/python":
        words[0] = words[0].removeprefix(".venv/bin/")
    if words[:1] == [".venv/bin/python"] or words[:1] == ["python"]:
        words[0] = "python"
    if not words or words[0] in ("ros2", "colcon", "rosdep", "export", "cd", "pip", "source", "git"):
        return "SKIP", "needs a ROS install or changes the machine"
    if words[0] == "matchanything-ros":
        from matchanything_ros.cli import build_parser

        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                build_parser().parse_args(words[1:])
        except SystemExit as exc:
            return ("OK", "--help") if exc.code == 0 else ("FAIL", "the CLI's parser refuses these arguments")
        return "OK", "arguments parse"
    if words[0] == "bash":
        return ("OK", "script exists") if (REPO / words[1]).is_file() else ("FAIL", f"{words[1]} not found")
    if words[0] == "python" and words[1:3] == ["-m", "pytest"]:
        missing = [w for w in words[3:] if w.startswith("test") and not (REPO / w.split("::")[0]).exists()]
        return ("FAIL", f"missing {missing}") if missing else ("OK", "test files exist")
    if words[0] == "python" and len(words) > 1 and words[1].startswith("scripts/"):
        script = REPO / words[1]
        if not script.is_file():
            return "FAIL", f"{words[1]} not found"
        res = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=REPO,
                             timeout=300)
        if res.returncode != 0:
            return "FAIL", f"--help exits {res.returncode}"
        unknown = [w.split("=")[0] for w in words[2:] if w.startswith("--") and w.split("=")[0] not in res.stdout]
        return ("FAIL", f"options not in --help: {unknown}") if unknown else ("OK", "--help lists the options")
    if words[0] in ("matcher_node", "python") and "--params-file" in words:
        from matchanything_ros.node.config import load_params_file

        path = words[words.index("--params-file") + 1]
        try:
            load_params_file(REPO / path)
        except ValueError as exc:
            return "FAIL", str(exc)
        return "OK", "params file reads"
    return "SKIP", "no check for this command"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", help="markdown files (default: README.md docs/*.md)")
    args = parser.parse_args()
    files = [Path(f) for f in args.files] or [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    failed = 0
    for path in files:
        for number, command in doc_commands(path):
            status, detail = check(command)
            failed += status == "FAIL"
            print(f"{status:4} {path.relative_to(REPO)}:{number}: {command[:100]}  ({detail})")
    print(f"{failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
