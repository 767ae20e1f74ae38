"""Matcher registry: build any supported model/backend by name.

Implementations are imported lazily so that, e.g., the SIFT baseline never imports torch.
"""
from __future__ import annotations

import importlib
import logging
from typing import Callable

from .base import Matcher, MatcherError, Matches

__all__ = ["Matcher", "MatcherError", "Matches", "create_matcher", "available_models", "resolve_model", "ROMA_MODELS",
           "SLOW_ON_CPU"]

log = logging.getLogger(__name__)

# name -> "module:factory"; each factory takes keyword options and returns a Matcher.
_REGISTRY: dict[str, str] = {
    "sift": "matchanything_ros.matching.sift:SiftMatcher",
    "xfeat": "matchanything_ros.matching.xfeat:XFeatMatcher",
    "matchanything_eloftr": "matchanything_ros.models.eloftr.matcher:ELoFTRMatcher",
    "minima_splg": "matchanything_ros.matching.minima:MinimaSPLGMatcher",
    "minima_loftr": "matchanything_ros.matching.minima:MinimaLoFTRMatcher",
    "matchanything_roma": "matchanything_ros.matching.roma:MatchAnythingRomaMatcher",
    "minima_roma": "matchanything_ros.matching.roma:MinimaRomaMatcher",
}

#: the dense RoMa models (matching/roma.py)
ROMA_MODELS = ("matchanything_roma", "minima_roma")
#: models that take tens of seconds per pair on a CPU: the node refuses them there unless told
#: that frames will be dropped (node.config.frame_rate_problem)
SLOW_ON_CPU = ROMA_MODELS

#: the model used when ELoFTR weights are not available (chosen by measurement, see README)
OFFLINE_DEFAULT = "xfeat"


def available_models() -> list[str]:
    return ["auto", *sorted(_REGISTRY)]


def _factory(name: str) -> Callable[..., Matcher]:
    module_name, attr = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


def resolve_model(name: str, options: dict | None = None) -> str:
    """Turn "auto" into a concrete model: MatchAnything-ELoFTR when its weights are present
    (explicit path or local cache; no download), else the offline default."""
    if name != "auto":
        if name not in _REGISTRY:
            raise MatcherError(
                f"unknown model {name!r}; choose one of: {', '.join(available_models())}"
            )
        return name
    options = options or {}
    try:
        from matchanything_ros.models.eloftr.weights import find_local_weights

        path = find_local_weights(options.get("weights") or None)
    except ImportError:  # runtime not installed / being developed
        path = None
    return "matchanything_eloftr" if path is not None else OFFLINE_DEFAULT


def create_matcher(name: str = "auto", **options) -> Matcher:
    """Build a matcher by registry name ("auto", "xfeat", "sift", "matchanything_eloftr",
    "minima_splg", "minima_loftr", "matchanything_roma", "minima_roma").

    ``options`` are passed to the implementation (e.g. ``backend``, ``weights``, ``device``,
    ``resolution``); unknown options raise a TypeError from the implementation.
    """
    concrete = resolve_model(name, options)
    if name == "auto":  # the one line that says which model "auto" chose, and why
        if concrete == OFFLINE_DEFAULT:
            log.info(
                "model: %s (offline default; MatchAnything-ELoFTR weights not found -- run "
                "`matchanything-ros weights download` to use them)",
                concrete,
            )
        else:
            log.info("model: %s (weights found locally)", concrete)
    return _factory(concrete)(**options)
