#!/usr/bin/env bash
# Set up .venv (idempotent) and run the demo on built-in synthetic pairs -> demo_output/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
exec .venv/bin/matchanything-ros demo "$@"
