"""YAML from files a user or a peer hands us (params files, camera_info files), read with bounds.

PyYAML's safe loader runs no code, but it will expand aliases without limit (a few hundred
bytes of nested anchors become gigabytes: the "billion laughs"), recurse once per nesting level
(30,000 brackets end in RecursionError) and read a file of any size. None of that belongs in a
configuration file, so this loader refuses aliases, nesting deeper than ``MAX_DEPTH`` and files
over ``MAX_BYTES``, each with a ValueError that says which.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20  # 1 MiB: the largest configuration shipped is a few KB
MAX_DEPTH = 64


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader without aliases and with a nesting limit."""

    _depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001 (PyYAML's signature)
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ValueError(f"YAML aliases are not accepted (alias *{event.anchor} at line {event.start_mark.line + 1})")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ValueError(f"YAML nested deeper than {MAX_DEPTH} levels (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml_text(text: str, what: str) -> Any:
    """Parse ``text`` (named ``what`` in errors): ValueError for invalid YAML, aliases or deep nesting."""
    if len(text) > MAX_BYTES:
        raise ValueError(f"{what}: {len(text)} bytes, more than the {MAX_BYTES} a configuration file may have")
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ValueError(f"{what} is not valid YAML: {' '.join(str(exc).split())}") from None
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    except RecursionError:  # a nesting the depth check did not see (flow collections in one scalar)
        raise ValueError(f"{what}: YAML nested too deeply") from None


def load_yaml_file(path: str | Path, what: str = "file") -> Any:
    """Read and parse a YAML file with the bounds above; FileNotFoundError / IsADirectoryError
    pass through for the caller's own message."""
    p = Path(path)
    size = p.stat().st_size
    if size > MAX_BYTES:
        raise ValueError(f"{what} {p}: {size} bytes, more than the {MAX_BYTES} a configuration file may have")
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{what} {p} is not text (UTF-8)") from None
    return load_yaml_text(text, f"{what} {p}")
