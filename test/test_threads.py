"""Thread use of inference: OpenMP wait policy defaulted before torch loads, thread count set in
the inferring thread (fresh interpreters: both are process-wide state)."""
import os
import subprocess
import sys

import pytest

from matchanything_ros.node.threads import threads_from_env

CHILD = r"""
import os, sys, threading
from matchanything_ros.node.threads import apply_threads, prepare_openmp
line = prepare_openmp()
import torch
out = {}
t = threading.Thread(target=lambda: out.update(worker=apply_threads(int(sys.argv[1]))))
t.start(); t.join()
print(os.environ["OMP_WAIT_POLICY"], out["worker"], line)
"""


def _child(threads: int, **env) -> list[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "MATCHANYTHING_THREADS",
                                                               "OMP_NUM_THREADS", "_ROS_WHEELS_BOOTSTRAP_COMPLETE")}
    full.update(env)
    res = subprocess.run([sys.executable, "-c", CHILD, str(threads)], env=full, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_passive_by_default_and_a_chosen_policy_is_kept():
    assert _child(0)[0] == "PASSIVE"
    assert _child(0, OMP_WAIT_POLICY="ACTIVE")[0] == "ACTIVE"


def test_thread_count_from_parameter_then_environment():
    assert _child(1)[1] == "1"  # the parameter (worker.threads), in the worker thread
    assert _child(0, MATCHANYTHING_THREADS="1")[1] == "1"


def test_bad_environment_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MATCHANYTHING_THREADS", "many")
    with pytest.raises(ValueError, match="MATCHANYTHING_THREADS must be an integer"):
        threads_from_env()
    monkeypatch.setenv("MATCHANYTHING_THREADS", "2")
    assert threads_from_env() == 2
