"""`matchanything-ros` command line: one subcommand per module in ``matchanything_ros.commands``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their subcommand runs, so ``--help`` and
light commands stay fast. Errors a user can fix (missing files, unknown models, offline) are
raised as :class:`CommandError` and printed as one line, exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .commands import COMMANDS, CommandError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="matchanything-ros",
        description="Cross-modality (visible/thermal) image matching: CLI for the ROS-free core.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        # Argument definitions live with each command; importing them is cheap by design.
        importlib.import_module(module_name).add_arguments(p)
    parser.set_defaults(_subparsers=sub.choices)
    return parser


def _prepare_threads() -> None:
    """Idle OpenMP threads sleep (PASSIVE) unless the user chose; MATCHANYTHING_THREADS sets the
    count (docs/NODE.md, Threads). Before any command imports torch."""
    from .node.threads import apply_threads, prepare_openmp, threads_from_env

    try:
        prepare_openmp()
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if threads_from_env():
        apply_threads(0)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the subcommand's usage, not the top level's: that is where the options are
        args._subparsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        _prepare_threads()
        return int(importlib.import_module(args._module).run(args) or 0)
    except CommandError as exc:  # messages may quote multi-line library errors: one line
        print(f"matchanything-ros {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not _user_error(exc):
            raise
        print(f"matchanything-ros {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"matchanything-ros {args.command}: interrupted", file=sys.stderr)
        return 130


def _user_error(exc: BaseException) -> bool:
    """Errors caused by the user's files, not by our code: a file that cannot be read or
    written, YAML that does not parse, an image OpenCV refuses. Anything else is a bug and
    keeps its traceback."""
    if isinstance(exc, OSError):
        return True
    kinds = [getattr(sys.modules.get(module), name, None) for module, name in (
        ("yaml", "YAMLError"), ("ruamel.yaml.error", "YAMLError"), ("cv2", "error"))]
    return any(isinstance(exc, kind) for kind in kinds if isinstance(kind, type))


def _one_line(exc: BaseException) -> str:
    """The exception as one line: multi-line YAML/OpenCV texts joined, capped."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename:
        text = f"{exc.strerror or text}: {exc.filename}"
    return text if len(text) <= 400 else text[:397] + "..."


if __name__ == "__main__":
    sys.exit(main())
