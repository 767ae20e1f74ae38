"""MINIMA (CVPR 2025) models: SuperPoint + LightGlue (``splg``) and LoFTR (``loftr``) built on
kornia, MINIMA's published checkpoints (``weights``). The matchers are in
:mod:`matchanything_ros.matching.minima`; see docs/MODELS.md."""
