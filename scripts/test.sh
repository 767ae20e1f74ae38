#!/usr/bin/env bash
# Set up .venv (idempotent) and run the tests. This is the README's test command.
#   bash scripts/test.sh                          the whole suite (test/)
#   bash scripts/test.sh test/test_node.py -k x   only what is named; any pytest option passes through
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
# an argument naming an existing file/dir (test/x.py, test/x.py::name) replaces the default test/
targets=(test)
for arg in "$@"; do
    case "$arg" in -*) ;; *) if [ -e "${arg%%::*}" ]; then targets=(); fi ;; esac
done
# Not `-W error`: lark (a ROS wheel dependency) warns on import.
exec .venv/bin/python -m pytest "${targets[@]}" "$@"
