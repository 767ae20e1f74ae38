#!/usr/bin/env bash
# Set up .venv (idempotent) and run the whole test suite. This is the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
# Not `-W error`: lark (a ROS wheel dependency) warns on import.
exec .venv/bin/python -m pytest test "$@"
