"""Strict JSON for every file the package writes: ``NaN`` is not JSON (Python writes it bare),
so it becomes null; infinities become the strings "inf" / "-inf" (an error that is infinite,
e.g. a failed fit, is still a meaningful value); NumPy scalars and arrays become numbers and
lists."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """``value`` with NaN -> None, +-inf -> "inf" / "-inf", NumPy values -> Python ones."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def dumps(value: Any, indent: int | None = 1) -> str:
    """Strict JSON text of ``value`` (see :func:`jsonable`)."""
    return json.dumps(jsonable(value), indent=indent, allow_nan=False, default=float)
