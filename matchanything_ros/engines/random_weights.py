"""Randomly initialised networks for tests and benchmarks without downloaded weights.

Two recipes, because the plain initialisations collapse the coarse features (every cell ends up
with nearly the same descriptor, so the dual softmax finds at most one mutual match):

- :func:`random_deploy_model`: the deploy network with He-normal convolutions. Its coarse
  features stay input-dependent, giving tens of mutual matches -- enough to compare backends.
- :func:`random_reference_pair`: transformers' ``EfficientLoFTRForKeypointMatching`` re-initialised
  with each module's own ``reset_parameters`` (transformers' ``_init_weights`` sets BatchNorm
  scales near zero, which zeroes the features) and the deploy network loaded with the *same*
  weights, for side-by-side timing of the reference forward.

Latency does not depend on weight values, except where the reference's work grows with its
number of matches; benchmarks report that count.
"""
from __future__ import annotations


def random_deploy_model(top_k: int = 1024, seed: int = 0, config=None):
    """``ELoFTRDeploy`` with seeded He-normal convolution weights and zero conv biases (eval)."""
    import torch
    from torch import nn

    from ..models.eloftr.model import ELoFTRDeploy

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = ELoFTRDeploy(config, top_k)
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                # Variance-preserving through the ReLU backbone, so cells stay distinguishable.
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def random_reference_pair(top_k: int = 1024, seed: int = 0):
    """(reference, deploy): transformers' EfficientLoFTR with PyTorch-default random weights and
    the deploy network fused from the same weights. Needs ``transformers``."""
    import torch

    try:
        from transformers import EfficientLoFTRConfig, EfficientLoFTRForKeypointMatching
    except ImportError as exc:
        raise ImportError(f"the reference forward needs transformers with EfficientLoFTR: {exc}") from None
    from ..models.eloftr.config import ELoFTRConfig
    from ..models.eloftr.model import ELoFTRDeploy
    from ..models.eloftr.weights import hf_to_deploy

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        reference = EfficientLoFTRForKeypointMatching(EfficientLoFTRConfig()).eval()
        for module in reference.modules():
            if module is not reference and hasattr(module, "reset_parameters"):
                module.reset_parameters()
    finally:
        torch.random.set_rng_state(generator_state)
    config = ELoFTRConfig.from_hf_dict(reference.config.to_dict())
    deploy = ELoFTRDeploy(config, top_k)
    deploy.load_state_dict(hf_to_deploy(reference.state_dict(), config, source="random weights"), strict=True)
    return reference, deploy.eval()


def reference_from_weights(weights_path):
    """transformers' EfficientLoFTR loaded from a checkpoint file (either layout). Needs
    ``transformers``."""
    from transformers import EfficientLoFTRConfig, EfficientLoFTRForKeypointMatching

    from ..models.eloftr.weights import detect_layout, original_to_hf, read_checkpoint

    state = read_checkpoint(weights_path)
    if detect_layout(state) == "original":
        state = original_to_hf(state)
    reference = EfficientLoFTRForKeypointMatching(EfficientLoFTRConfig())
    missing, unexpected = reference.load_state_dict(state, strict=False)
    # buffers such as num_batches_tracked may be absent; real weights must all be there
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{weights_path}: {len(missing)} reference tensors missing (e.g. {missing[0]})")
    return reference.eval()
