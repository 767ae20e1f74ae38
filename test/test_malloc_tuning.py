"""malloc tuning: freed image-sized buffers are reused without page faults (real glibc, subprocess)."""
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")

CHILD = r"""
import json, os, resource, sys
from matchanything_ros.node.malloc_tuning import tune_malloc
line = tune_malloc() if sys.argv[1] == "tune" else "untouched"
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
counts = []
for _ in range(6):  # like a node: a few 1 MB buffers per image, all freed before the next
    before = faults()
    buffers = [bytearray(2**20) for _ in range(3)]
    for b in buffers:
        b[::4096] = b"\x01" * 256
    del buffers, b
    counts.append(faults() - before)
print(json.dumps({"line": line, "faults": counts}))
"""


def run(mode: str, env_switch: str | None = None) -> dict:
    import os

    env = dict(os.environ)
    env.pop("MATCHANYTHING_MALLOC_TUNING", None)
    if env_switch is not None:
        env["MATCHANYTHING_MALLOC_TUNING"] = env_switch
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tuned_process_reuses_freed_buffers_without_faults():
    plain, tuned = run("plain"), run("tune")
    assert tuned["line"].startswith("malloc tuned")
    # 3 MB per round = 768 pages: glibc's defaults trim and fault them in again every round
    assert min(plain["faults"][2:]) > 500, plain
    assert max(tuned["faults"][2:]) < 50, tuned


def test_environment_switch_turns_it_off():
    off = run("tune", env_switch="0")
    assert "off" in off["line"]
    assert min(off["faults"][2:]) > 500, off
