"""MINIMA LoFTR: kornia's LoFTR (``kornia.feature.LoFTR``) with MINIMA's configuration.

Nothing of the network is ours. MINIMA builds LoFTR's default configuration with
``coarse.temp_bug_fix = True`` (every checkpoint except LoFTR's old ``outdoor_ds.ckpt``) and the
coarse threshold from its command line; the checkpoint is loaded strictly.
"""
from __future__ import annotations

import copy


def loftr_config(match_threshold: float = 0.2) -> dict:
    try:
        from kornia.feature.loftr.loftr import default_cfg
    except ImportError as exc:  # kornia is the `minima` extra
        raise ImportError(f"minima_loftr needs kornia (pip install 'matchanything_ros[minima]'): {exc}") from None
    config = copy.deepcopy(default_cfg)
    config["coarse"]["temp_bug_fix"] = True
    config["match_coarse"]["thr"] = float(match_threshold)
    return config


def build_loftr(match_threshold: float = 0.2):
    """kornia LoFTR with MINIMA's configuration and no downloaded weights (random, train mode)."""
    from kornia.feature import LoFTR

    return LoFTR(pretrained=None, config=loftr_config(match_threshold))


def load_loftr(path, match_threshold: float = 0.2):
    """kornia LoFTR loaded from ``minima_loftr.ckpt`` (eval mode)."""
    from .weights import loftr_state

    model = build_loftr(match_threshold)
    model.load_state_dict(loftr_state(path, model.state_dict()), strict=False)
    return model.eval()


def random_loftr(seed: int = 0, match_threshold: float = 0.2):
    """Seeded random LoFTR that still gives matches (eval mode), for tests and benchmarks: zero-sum
    He-normal convolutions keep the coarse features input-dependent (PyTorch's default init makes
    every cell nearly alike, and the dual softmax then finds no confident match); the shifted
    test pair of the tests gets tens of matches above LoFTR's 0.2."""
    import torch
    from torch import nn

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = build_loftr(match_threshold)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                    module.weight.sub_(module.weight.mean(dim=(1, 2, 3), keepdim=True))
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
            # larger coarse features sharpen the dual softmax (LoFTR's temperature is fixed at 0.1)
            model.backbone.layer3_outconv.weight.mul_(4.0)
    finally:
        torch.random.set_rng_state(state)
    return model.eval()
