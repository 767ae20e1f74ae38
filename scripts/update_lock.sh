#!/usr/bin/env bash
# Update requirements.lock on purpose: build .venv-latest anew with the newest versions that
# setup.py and requirements-dev.txt allow, print what moved, write the lock from it.
# Then run `bash scripts/test.sh --all` (it reinstalls .venv from the new lock), rerun the
# doc figures that moved, and note the change in docs/DEPENDENCIES.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh --latest
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
.venv-latest/bin/python scripts/lock.py diff requirements.lock
.venv-latest/bin/python scripts/lock.py write requirements.lock
