"""Compare the deployed network with transformers' EfficientLoFTR (development tool).

transformers' port is not the authors' code (it differs in four places, ``TRANSFORMERS_CHOICES``);
the deploy network is built here with those choices so that both compute the same thing. Parity
with the authors is `matchanything-ros parity` (models/eloftr/parity.py).

    python -m matchanything_ros.models.eloftr.compare --size 480x640 --repeats 5 [--weights FILE]

Builds the transformers reference (``pip install transformers``; a test/dev dependency only) and
:class:`ELoFTRDeploy` from the same weights -- the given checkpoint, or seeded random weights --
runs both on the same synthetic pair, and prints the coarse-confidence difference, whether the
selected coarse matches are identical, and the median CPU/GPU time of each, measured alternately
in one process.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np
import torch


def build_reference(seed: int = 0, threshold: float = 0.1, weights=None):
    """transformers' EfficientLoFTRForKeypointMatching (eval). With ``weights`` (either layout)
    those are loaded; otherwise PyTorch default initialisation (HF's own init draws BatchNorm
    scales near zero and leaves no matches) with non-trivial BatchNorm statistics."""
    try:
        from transformers import EfficientLoFTRConfig, EfficientLoFTRForKeypointMatching
    except ImportError as exc:
        raise SystemExit("this tool needs transformers: pip install transformers") from exc

    torch.manual_seed(seed)
    ref = EfficientLoFTRForKeypointMatching(EfficientLoFTRConfig(coarse_matching_threshold=threshold))
    if weights is not None:
        from .weights import detect_layout, original_to_hf, read_checkpoint

        state = read_checkpoint(weights)
        if detect_layout(state) == "original":
            state = original_to_hf(state)
        ref.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        return ref.eval()
    for module in ref.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in ref.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                module.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
        # default-initialised fine features are so weak that the fine dual-softmax is nearly flat
        # and its arg-max a coin toss at 1e-6 noise; trained weights are sharp, so sharpen these
        ref.refinement_layer.out_conv_layers[-1].out_conv3.weight.mul_(30.0)
    return ref.eval()


@contextlib.contextmanager
def captured_confidence(ref):
    """While inside, the reference's coarse confidence (what ``_get_matches_from_scores`` is
    given) is copied into the yielded dict under "confidence"; the method is restored after."""
    captured: dict = {}
    original = ref._get_matches_from_scores

    def capture(scores):
        captured["confidence"] = scores.detach().clone()
        return original(scores)

    ref._get_matches_from_scores = capture
    try:
        yield captured
    finally:
        del ref._get_matches_from_scores


def reference_coarse(ref, img0: torch.Tensor, img1: torch.Tensor):
    """Reference coarse confidence (L0, L1) and its selected (i, j) cell pairs."""
    with captured_confidence(ref) as captured, torch.no_grad():
        feats = ref.efficientloftr(torch.stack([img0, img1], dim=1)).feature_maps
        h = feats[0].shape[-2]
        _, _, indices = ref._coarse_matching(feats[0], img0.shape[-2] / h)
    conf = captured["confidence"]
    conf = conf.reshape(conf.shape[1] * conf.shape[2], -1)
    j_of_i = indices[0, 1]
    i_sel = torch.nonzero(j_of_i > -1).reshape(-1)
    return conf, {(int(i), int(j)) for i, j in zip(i_sel, j_of_i[i_sel])}


def _pair(height: int, width: int, seed: int = 0):
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((height, width), np.float32)
    for cell in (4, 9, 23):
        noise = rng.random((height // cell + 2, width // cell + 2)).astype(np.float32)
        img += cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    img = (img - img.min()) / (img.max() - img.min())
    shifted = np.roll(img, (height // 16, width // 16), axis=(0, 1))
    return torch.from_numpy(img)[None, None], torch.from_numpy(np.ascontiguousarray(shifted))[None, None]


def _time(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None) -> int:
    from .coarse import coarse_confidence
    from .config import TRANSFORMERS_CHOICES, ELoFTRConfig
    from .model import ELoFTRDeploy
    from .weights import hf_to_deploy

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", nargs="+", default=["480x640"], help="HxW network sizes (multiples of 32)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top-k", type=int, default=2048)
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--weights", default=None, help="checkpoint (either layout); default: random weights")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)

    ref = build_reference(threshold=args.threshold, weights=args.weights)
    ours = ELoFTRDeploy(ELoFTRConfig(**TRANSFORMERS_CHOICES), top_k=args.top_k)
    ours.load_state_dict(hf_to_deploy(ref.state_dict(), ours.config))
    ref, ours = ref.to(device), ours.eval().to(device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, K={args.top_k}")
    print("size       ref ms   ours ms  speed-up  conf max|diff|  same coarse matches")
    for size in args.size:
        h, w = (int(v) for v in size.lower().split("x"))
        img0, img1 = (t.to(device) for t in _pair(h, w))
        thr = torch.tensor(args.threshold, device=device)
        conf_ref, pairs_ref = reference_coarse(ref, img0, img1)
        with torch.no_grad():
            c0, c1, _, _ = ours.coarse(img0, img1)
            conf = coarse_confidence(c0, c1, ours.config.temperature)
            _, _, scores, _, idx0, idx1 = ours.match_cells(img0, img1, thr)
        keep = scores > 0
        pairs = {(int(i), int(j)) for i, j in zip(idx0[keep], idx1[keep])}
        same = pairs == pairs_ref if len(pairs_ref) <= args.top_k else pairs <= pairs_ref
        ref_input = torch.stack([img0, img1], dim=1)
        t_ref, t_ours = [], []
        with torch.no_grad():
            ref(ref_input), ours(img0, img1, thr)  # warm-up
            for _ in range(args.repeats):  # alternate so load changes hit both alike
                t_ref.append(_time(lambda: ref(ref_input), device))
                t_ours.append(_time(lambda: ours(img0, img1, thr), device))
        r, o = statistics.median(t_ref) * 1e3, statistics.median(t_ours) * 1e3
        diff = (conf - conf_ref).abs().max().item()
        print(f"{h}x{w:<6} {r:8.1f} {o:9.1f} {r / o:8.2f}x  {diff:14.2e}  {same} ({len(pairs)} vs {len(pairs_ref)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
