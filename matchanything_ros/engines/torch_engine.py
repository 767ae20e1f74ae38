"""PyTorch backend: the deploy network run eagerly on CPU or CUDA, fp32 or fp16.

fp16 comes in two modes. ``"half"`` (default) casts a copy of the weights to float16 and feeds
float16 images; ``"autocast"`` keeps fp32 weights and runs under ``torch.autocast``. Either way the
network's coarse head (similarity matrix + dual softmax) casts its inputs up and runs in an
autocast-disabled fp32 region: in fp16 its exp() overflows and the matches change.
Optionally the whole forward is captured once per input size in a CUDA graph, which removes the
per-kernel launch cost that dominates at small resolutions.
"""
from __future__ import annotations

import contextlib
import logging

import numpy as np

from ..devices import torch_device
from .base import Engine, EngineError

log = logging.getLogger(__name__)


def resolve_torch_device(device: str):
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> torch.device, with a clear EngineError when absent."""
    return torch_device(device, EngineError)


class TorchEngine(Engine):
    """Run an ``ELoFTRDeploy``-like module (``forward(image0, image1, threshold)``) in PyTorch.

    ``fp16_mode``: ``"half"`` or ``"autocast"`` (see module doc). ``cuda_graphs=True`` (CUDA
    only) records the forward once per input size and replays it. The model is moved to
    ``device`` in place (fp16 "half" works on a copy).
    """

    name = "torch"

    def __init__(
        self,
        model,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        fp16_mode: str = "half",
        cuda_graphs: bool = False,
    ):
        import copy

        import torch

        super().__init__(device=device, precision=precision, input_size=None)
        if model is None:
            raise EngineError("the torch backend needs a model (e.g. from load_deploy_model)")
        self._device = resolve_torch_device(device)
        if fp16_mode not in ("half", "autocast"):
            raise EngineError(f"fp16_mode {fp16_mode!r} is not 'half' or 'autocast'")
        if precision == "fp16" and self._device.type == "cpu":
            log.warning("fp16 on CPU is emulated and slower than fp32; use it only for testing")
        if cuda_graphs and self._device.type != "cuda":
            raise EngineError("cuda_graphs needs a CUDA device")
        self.cuda_graphs = bool(cuda_graphs)
        self.fp16_mode = fp16_mode if precision == "fp16" else None
        self._dtype = torch.float16 if self.fp16_mode == "half" else torch.float32
        if self._dtype != torch.float32:
            model = copy.deepcopy(model).to(dtype=self._dtype)
        self.model = model.eval().to(self._device)
        # Parameters never need gradients here; dropping them also lets graphs reuse memory.
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._graphs: dict[tuple, tuple] = {}
        self._torch = torch

    def _autocast(self):
        if self.fp16_mode == "autocast":
            return self._torch.autocast(device_type=self._device.type, dtype=self._torch.float16)
        return contextlib.nullcontext()

    def forward_tensors(self, image0, image1, threshold):
        """Forward on torch tensors already on the engine's device (no copies, no sync)."""
        with self._torch.inference_mode(), self._autocast():
            return self.model(image0, image1, threshold)

    def _run(self, image0: np.ndarray, image1: np.ndarray, threshold: float):
        torch = self._torch
        t0 = torch.from_numpy(image0).to(self._device, self._dtype, non_blocking=True)
        t1 = torch.from_numpy(image1).to(self._device, self._dtype, non_blocking=True)
        thr = torch.tensor(threshold, dtype=torch.float32, device=self._device)
        if self.cuda_graphs:
            outputs = self._replay(t0, t1, thr)
        else:
            outputs = self.forward_tensors(t0, t1, thr)
        return tuple((o.float() if o.is_floating_point() else o).cpu().numpy() for o in outputs)

    def _replay(self, t0, t1, thr):
        """Run through a CUDA graph recorded for this input size (recorded on first use)."""
        torch = self._torch
        key = tuple(t0.shape)
        if key not in self._graphs:
            static = (t0.clone(), t1.clone(), thr.clone())
            # Warm up on a side stream (cuDNN autotuning, lazy allocations) before capture.
            stream = torch.cuda.Stream(device=self._device)
            stream.wait_stream(torch.cuda.current_stream(self._device))
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self.forward_tensors(*static)
            torch.cuda.current_stream(self._device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    outputs = self.forward_tensors(*static)
            except RuntimeError as exc:
                raise EngineError(
                    f"CUDA graph capture failed ({exc}); run with cuda_graphs=False"
                ) from exc
            self._graphs[key] = (graph, static, outputs)
            log.info("recorded a CUDA graph for input %s", key)
        graph, static, outputs = self._graphs[key]
        static[0].copy_(t0)
        static[1].copy_(t1)
        static[2].copy_(thr)
        graph.replay()
        return tuple(o.clone() for o in outputs)

    def describe(self) -> dict:
        info = super().describe()
        info["cuda_graphs"] = self.cuda_graphs
        if self.fp16_mode:
            info["fp16_mode"] = self.fp16_mode
        return info

    def close(self) -> None:
        self._graphs.clear()
