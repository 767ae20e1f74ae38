"""MatchAnything-ELoFTR (EfficientLoFTR weights) written for deployment.

``ELoFTRDeploy`` is the fixed-shape network, ``load_deploy_model`` builds it from either checkpoint
layout, ``ELoFTRMatcher`` is the package's Matcher on top of it. Attributes are imported lazily so
that locating weights (``weights.find_local_weights``) does not import torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "ELoFTRConfig": ".config",
    "ELoFTRDeploy": ".model",
    "load_deploy_model": ".model",
    "MAX_TOP_K": ".model",
    "ELoFTRMatcher": ".matcher",
    "find_local_weights": ".weights",
    "download_weights": ".weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
