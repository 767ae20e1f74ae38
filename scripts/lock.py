#!/usr/bin/env python3
"""Write or compare the lock: the exact version of every package in a virtual environment.

  .venv-latest/bin/python scripts/lock.py write requirements.lock   # after setup_env.sh --latest
  .venv-latest/bin/python scripts/lock.py diff requirements.lock    # what moved since the lock

The lock is a pip constraints file (``pip install -c requirements.lock ...``): setup_env.sh
installs from it, so the README's commands give every machine the versions the tests and the
docs' figures were taken with. ``write`` freezes the running interpreter's environment (this
package itself excluded: it installs from the work tree), dropping local version labels
(``torch==2.13.0+cpu`` -> ``torch==2.13.0``: PyPI's name for the same release).
"""
from __future__ import annotations

import argparse
import platform
import re
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

SELF = "matchanything-ros"
#: pip itself: the venv's own, not something the project installs
SKIP = {SELF, "pip"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    """{canonical name: version} of the running environment, without this package."""
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name or canonical(name) in SKIP:
            continue
        out[canonical(name)] = dist.version.split("+")[0]
    return out


def read_lock(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonical(name)] = version.strip()
    return pins


def write(path: Path) -> None:
    pins = installed()
    header = [
        "# Lock of the development / CI environment (.venv): every package, exact version.",
        "# Made by `bash scripts/update_lock.sh` (newest versions setup.py and requirements-dev.txt allow);",
        "# installed by scripts/setup_env.sh as pip constraints. Do not edit by hand.",
        f"# Made {datetime.now(timezone.utc):%Y-%m-%d} on CPython {platform.python_version()} "
        f"({platform.system()} {platform.machine()}).",
    ]
    path.write_text("\n".join(header + [f"{n}=={v}" for n, v in sorted(pins.items())]) + "\n")
    print(f"lock: wrote {len(pins)} pins to {path}")


def diff(path: Path) -> int:
    """Print what differs between the lock and this environment; the number of differences."""
    lock, now = read_lock(path), installed()
    rows = []
    for name in sorted(set(lock) | set(now)):
        a, b = lock.get(name, "-"), now.get(name, "-")
        if a != b:
            rows.append(f"  {name}: {a} -> {b}")
    print(f"lock: {len(rows)} package(s) differ from {path}" + (":" if rows else ""))
    print("\n".join(rows)) if rows else None
    return len(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("write", "diff"))
    p.add_argument("lock", type=Path)
    args = p.parse_args()
    if args.action == "write":
        write(args.lock)
    else:
        diff(args.lock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
