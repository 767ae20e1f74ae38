#!/usr/bin/env bash
# Create (or update) the project virtual environment in .venv with everything the demo, the
# benchmarks and the tests need. Idempotent: a second run only checks what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
# The PyPI ROS wheels re-exec Python once at start-up; never inherit another env's marker.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.matchanything_ros-installed
if [ ! -f "$stamp" ] || [ requirements-dev.txt -nt "$stamp" ] || [ setup.py -nt "$stamp" ]; then
    # torch first, so that no later requirement can pull a multi-GB CUDA build.
    .venv/bin/python -m pip install --disable-pip-version-check -q torch==2.13.0 2> >(grep -v "is ignored" >&2)
    .venv/bin/python -m pip install --disable-pip-version-check -q -r requirements-dev.txt 2> >(grep -v "is ignored" >&2)
    touch "$stamp"
fi
