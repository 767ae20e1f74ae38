"""CPU threads of inference on a shared computer: how many, and whether idle ones spin.

torch runs its CPU kernels on an OpenMP pool (GNU libgomp in the PyPI wheels). With libgomp's
default wait policy a worker that runs out of work spins before it sleeps, so between the many
short parallel regions of one matcher call every pool thread keeps burning a core: on a loaded
computer (a robot runs many nodes) that is CPU taken from everyone else for no speed.
``OMP_WAIT_POLICY=PASSIVE`` makes idle workers sleep at once. libgomp reads it once, when torch
is imported, so :func:`prepare_openmp` must run first: the node and the CLI call it at start.
docs/NODE.md ("Threads") has the measurement (``scripts/bench_threads.py``).

The thread count: the node's ``worker.threads`` parameter, else ``MATCHANYTHING_THREADS``, else
torch's default (one per physical core). torch keeps the count per thread (OpenMP's ICV, copied
into a new thread at its first parallel call), so :func:`apply_threads` must run in the thread
that does the inference: the node calls it in its worker thread.
"""
from __future__ import annotations

import os
import sys

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
THREADS_ENV = "MATCHANYTHING_THREADS"
DEFAULT_WAIT_POLICY = "PASSIVE"


def prepare_openmp() -> str:
    """Default ``OMP_WAIT_POLICY`` to PASSIVE (a value already set is kept) and, when
    ``MATCHANYTHING_THREADS`` is set, ``OMP_NUM_THREADS`` to it. Call before torch is imported;
    returns one line for the log saying what applies."""
    late = "torch" in sys.modules
    os.environ.setdefault(WAIT_POLICY_ENV, DEFAULT_WAIT_POLICY)
    threads = threads_from_env()
    if threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    line = f"OpenMP wait policy {os.environ[WAIT_POLICY_ENV]}"
    if late:
        line += " (torch was imported before: the policy it loaded with applies)"
    return line


def threads_from_env() -> int:
    """``MATCHANYTHING_THREADS`` as an int (0 when unset); ValueError for anything else."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return 0
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 256:
        raise ValueError(f"{THREADS_ENV} must be an integer in [0, 256], got {text!r}")
    return value


_default_threads: int | None = None  # torch's own choice, seen at the first call


def apply_threads(threads: int) -> int:
    """Set torch's (and OpenCV's) thread count in the calling thread: ``threads`` if > 0, else
    ``MATCHANYTHING_THREADS`` if set, else torch's default (so 0 after a count undoes it).
    Returns torch's count now."""
    global _default_threads
    import cv2
    import torch

    if _default_threads is None:
        _default_threads = torch.get_num_threads()
    threads = threads or threads_from_env() or _default_threads
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    return torch.get_num_threads()
