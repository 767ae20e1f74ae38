#!/usr/bin/env bash
# Create (or update) the project virtual environment in .venv with everything the demo, the
# benchmarks and the tests need. Idempotent: a second run only checks what is installed.
# A first run takes minutes (torch CPU build, OpenCV, the ROS wheels; README gives measured
# times) and prints each package as pip collects it, so a long run is visibly not stuck.
set -euo pipefail
cd "$(dirname "$0")/.."
# The PyPI ROS wheels re-exec Python once at start-up; never inherit another env's marker.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
PYTHON=${PYTHON:-python3}
start=$SECONDS
say() { echo "setup_env [$((SECONDS - start)) s]: $*"; }
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv .venv
fi
# pip's own output, cut to one line per package collected and a count of those installed
# (pip's progress bars do not show without a terminal)
pip_install() {
    .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off "$@" \
        2> >(grep -v "is ignored" >&2) \
        | awk '/^Collecting/ {print "    " $0; fflush()}
               /^Installing collected packages/ {print "    unpacking " split($0, a, ",") " packages..."; fflush()}
               /^Successfully installed/ {print "    installed " NF - 2 " packages"; fflush()}'
}
stamp=.venv/.matchanything_ros-installed
if [ ! -f "$stamp" ] || [ requirements-dev.txt -nt "$stamp" ] || [ setup.py -nt "$stamp" ]; then
    # torch first, so that no later requirement can pull a multi-GB CUDA build.
    say "installing torch 2.13.0 (CPU build)"
    pip_install torch==2.13.0
    say "installing requirements-dev.txt (this package, OpenCV, ROS wheels, test tools)"
    pip_install -r requirements-dev.txt
    touch "$stamp"
    say "done"
else
    say ".venv is up to date (delete $stamp to reinstall)"
fi
