#!/usr/bin/env bash
# Set up the venv (idempotent) and run the tests. This is the README's test command.
#   bash scripts/test.sh                          the suite without the `slow` tests (the quick check)
#   bash scripts/test.sh --all                    every test, `slow` ones included (what CI runs)
#   bash scripts/test.sh --latest [--all]         the drift check: .venv-latest with the newest
#                                                 allowed versions, what moved since requirements.lock,
#                                                 then the tests there
#   bash scripts/test.sh test/test_node.py -k x   only what is named; any pytest option passes through
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
markers=(-m "not slow")
args=()
for arg in "$@"; do
    case "$arg" in
        --latest) venv=.venv-latest ;;
        --all) markers=() ;;
        *) args+=("$arg") ;;
    esac
done
if [ "$venv" = .venv-latest ]; then bash scripts/setup_env.sh --latest; else bash scripts/setup_env.sh; fi
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
if [ "$venv" = .venv-latest ]; then "$venv/bin/python" scripts/lock.py diff requirements.lock; fi
# an argument naming an existing file/dir (test/x.py, test/x.py::name) replaces the default test/
# and runs whatever it names, slow tests included
targets=(test)
for arg in "${args[@]+"${args[@]}"}"; do
    case "$arg" in -*) ;; *) if [ -e "${arg%%::*}" ]; then targets=(); markers=(); fi ;; esac
done
# Not `-W error`: lark (a ROS wheel dependency) warns on import.
exec "$venv/bin/python" -m pytest "${targets[@]}" "${markers[@]+"${markers[@]}"}" "${args[@]+"${args[@]}"}"
