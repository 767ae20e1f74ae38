#!/usr/bin/env bash
# Create (or update) the project virtual environment with everything the demo, the benchmarks
# and the tests need. Idempotent: a second run only checks what is installed.
#   bash scripts/setup_env.sh            .venv, every package at the version in requirements.lock
#   bash scripts/setup_env.sh --latest   .venv-latest, made anew each time with the newest
#                                        versions setup.py and requirements-dev.txt allow
#                                        (the drift check's venv, and what update_lock.sh freezes)
# A first run takes minutes (torch CPU build, OpenCV, the ROS wheels; README gives measured
# times) and prints each package as pip collects it, so a long run is visibly not stuck.
set -euo pipefail
cd "$(dirname "$0")/.."
# The PyPI ROS wheels re-exec Python once at start-up; never inherit another env's marker.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
PYTHON=${PYTHON:-python3}
VENV=.venv
PINS=(-c requirements.lock)
if [ "${1:-}" = "--latest" ]; then
    VENV=.venv-latest
    PINS=()
    rm -rf "$VENV"  # anew: exactly what a fresh machine gets today, nothing left from before
fi
start=$SECONDS
say() { echo "setup_env [$((SECONDS - start)) s]: $*"; }
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
# pip's own output, cut to one line per package collected and a count of those installed
# (pip's progress bars do not show without a terminal)
pip_install() {
    "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off "$@" \
        2> >(grep -v "is ignored" >&2) \
        | awk '/^Collecting/ {print "    " $0; fflush()}
               /^Installing collected packages/ {print "    unpacking " split($0, a, ",") " packages..."; fflush()}
               /^Successfully installed/ {print "    installed " NF - 2 " packages"; fflush()}'
}
stamp=$VENV/.matchanything_ros-installed
if [ "$VENV" = .venv-latest ] || [ ! -f "$stamp" ] || [ requirements-dev.txt -nt "$stamp" ] \
        || [ setup.py -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
    # torch first, so that no later requirement can pull a multi-GB CUDA build.
    say "installing torch 2.13.0 (CPU build, about 200 MB) into $VENV"
    pip_install torch==2.13.0
    if [ "$VENV" = .venv ]; then
        say "installing requirements-dev.txt at the versions of requirements.lock (this package, OpenCV, ROS wheels, test tools)"
    else
        say "installing requirements-dev.txt at the newest allowed versions (this package, OpenCV, ROS wheels, test tools)"
    fi
    pip_install "${PINS[@]+"${PINS[@]}"}" -r requirements-dev.txt
    touch "$stamp"
    say "done"
else
    say "$VENV is up to date (delete $stamp to reinstall)"
fi
