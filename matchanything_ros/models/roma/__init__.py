"""RoMa (Edstedt et al., CVPR 2024) as MatchAnything and MINIMA publish it: a dense matcher with a
frozen DINOv2 ViT-L/14 coarse backbone (``model``), its weights (``weights``) and seeded random
weights for tests (``random_weights``)."""
from .model import VARIANTS, RoMa, RomaRunner, RomaSettings
from .weights import load_roma

__all__ = ["VARIANTS", "RoMa", "RomaRunner", "RomaSettings", "load_roma"]
