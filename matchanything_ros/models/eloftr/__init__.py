"""MatchAnything-ELoFTR (EfficientLoFTR weights) written for deployment.

``ELoFTRDeploy`` is the fixed-shape network, ``load_deploy_model`` builds it from either checkpoint
layout, ``ELoFTRMatcher`` (in ``matcher``) is the package's Matcher on top of it.
"""
from .config import ELoFTRConfig
from .model import MAX_TOP_K, ELoFTRDeploy, load_deploy_model

__all__ = ["ELoFTRConfig", "ELoFTRDeploy", "load_deploy_model", "MAX_TOP_K"]
