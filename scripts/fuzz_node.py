#!/usr/bin/env python3
"""Fuzz a live matcher_node with N hostile messages (default 10,000) and report accounting and
memory (issue 9; the CI test test/test_fuzz_node.py runs 1,000 of the same).

    export PYTHONPATH=$PWD; .venv/bin/python scripts/fuzz_node.py --messages 10000 --seed 9

Starts the node (SIFT, small images, reliable deep queues; see
matchanything_ros/testing/fuzz_driver.py), publishes blocks of 1-4 hostile messages
(matchanything_ros/testing/fuzz.py) each followed by a valid visible/thermal pair, waits for
every pair's answer, and prints: crashes, hostile messages counted by reason vs sent, valid pairs
answered, middleware losses, latency figures and the node's resident memory over time.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from matchanything_ros.testing.fuzz import HostileStream  # noqa: E402
from matchanything_ros.testing.fuzz_driver import FuzzDriver, account  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--memory-every", type=int, default=500, help="sample the node's RSS every N messages")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    machine = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.strip()
    load = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory() as work, FuzzDriver(Path(work)) as driver:
        started = time.monotonic()
        gen = HostileStream(args.seed, time.time_ns(), clock=time.time_ns)
        run = driver.run(gen.messages(args.messages), memory_every=args.memory_every, answer_timeout=300.0)
        diag = driver.settle(run, timeout=300.0)
        figures = account(run, diag, driver.answered())
        figures.update(
            crashed=not driver.alive(), wall_s=round(time.monotonic() - started, 1), seed=args.seed,
            memory_mb=[(n, round(mb, 1)) for n, mb in run.memory], machine=machine,
            load_before=load, load_after=Path("/proc/loadavg").read_text().split()[:3],
            by_reason={k: int(diag.get(k, 0)) for k in sorted(run.expected)},
        )
    mem = [mb for _, mb in figures["memory_mb"]]
    print(f"messages sent {figures['sent']}, hostile {figures['hostile']}, counted by reason "
          f"{figures['hostile_counted']} ({100 * figures['hostile_counted'] / max(1, figures['hostile']):.1f} %), "
          f"mismatches {figures['count_mismatch'] or 'none'}, unexpected counters {figures['unexpected_counters'] or 'none'}")
    print(f"valid pairs {figures['valid_pairs']}, answered {figures['valid_pairs_answered']}; crashed: "
          f"{figures['crashed']}; messages lost {figures['messages_lost']}; callback errors "
          f"{figures['callback_errors']}; matcher errors {figures['matcher_errors']}")
    print(f"latency max {figures['latency_max_ms']:.0f} ms, untrusted {figures['latency_untrusted']}; wall {figures['wall_s']} s")
    if mem:
        print(f"node RSS MB: first {mem[0]:.1f}, max {max(mem):.1f}, last {mem[-1]:.1f} "
              f"(samples every {args.memory_every} messages: {' '.join(f'{m:.0f}' for m in mem)})")
    print(f"machine: {machine}; load average before {' '.join(figures['load_before'])}, after {' '.join(figures['load_after'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    ok = (not figures["crashed"] and not figures["count_mismatch"] and not figures["unexpected_counters"]
          and figures["valid_pairs_answered"] == figures["valid_pairs"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
