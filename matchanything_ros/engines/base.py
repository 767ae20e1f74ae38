"""The interface every inference backend implements.

An engine runs the ELoFTR deploy network on one image pair that is already preprocessed:
two float32 ``(1, 1, H, W)`` arrays in [0, 1] and a score threshold. It returns fixed-size
``(kpts0 (K, 2), kpts1 (K, 2), scores (K,))`` float32 numpy arrays in network-input pixels
(``scores == 0`` marks empty slots) and ``candidates``, the number of cell pairs that passed the
threshold (more than K: the weakest were dropped). Resizing, padding and dropping empty slots are the caller's
job (the matcher), so every backend sees exactly the same tensors.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

#: names of the network's inputs and outputs in every export (ONNX, TensorRT)
INPUT_NAMES = ("image0", "image1", "threshold")
OUTPUT_NAMES = ("kpts0", "kpts1", "scores", "candidates")

PRECISIONS = ("fp32", "fp16")


class EngineError(RuntimeError):
    """An engine cannot be built, loaded or run; the message says what to do."""


class Engine(ABC):
    """One backend (PyTorch, ONNX Runtime, TensorRT) behind a common ``run``."""

    #: backend name, e.g. "torch", "onnxruntime", "tensorrt"
    name: str = "engine"

    def __init__(self, *, device: str, precision: str, input_size: tuple[int, int] | None):
        if precision not in PRECISIONS:
            raise EngineError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        self.device = device
        self.precision = precision
        #: (height, width) the engine was built for, or None when any multiple of 32 works
        self.input_size = input_size

    @abstractmethod
    def _run(self, image0: np.ndarray, image1: np.ndarray, threshold: float):
        """Backend-specific inference on validated inputs; returns the four outputs."""

    def run(self, image0: np.ndarray, image1: np.ndarray, threshold: float):
        """Match one preprocessed pair.

        ``image0``/``image1``: float32 ``(1, 1, H, W)`` in [0, 1], same size, H and W multiples
        of 32 (and equal to :attr:`input_size` for fixed-shape engines). Returns float32
        ``kpts0 (K, 2)``, ``kpts1 (K, 2)``, ``scores (K,)`` and ``candidates`` (int).
        """
        image0 = self._check_image(image0, "image0")
        image1 = self._check_image(image1, "image1")
        if image0.shape != image1.shape:
            raise ValueError(
                f"image0 {image0.shape} and image1 {image1.shape} differ in size; resize both "
                "to the network input size first"
            )
        threshold = float(threshold)
        if not np.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold}")
        kpts0, kpts1, scores, candidates = self._run(image0, image1, threshold)
        return (
            np.ascontiguousarray(kpts0, dtype=np.float32),
            np.ascontiguousarray(kpts1, dtype=np.float32),
            np.ascontiguousarray(scores, dtype=np.float32),
            int(np.asarray(candidates).reshape(-1)[0]),
        )

    def _check_image(self, image, what: str) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != 4 or image.shape[:2] != (1, 1):
            raise ValueError(f"{what} must have shape (1, 1, H, W), got {image.shape}")
        height, width = image.shape[2:]
        if height % 32 or width % 32:
            raise ValueError(f"{what} size {height}x{width} must be a multiple of 32 in both sides")
        if self.input_size is not None and (height, width) != tuple(self.input_size):
            h, w = self.input_size
            raise ValueError(
                f"{what} is {height}x{width} but this {self.name} engine was built for {h}x{w}; "
                "resize the images or export/build for that size"
            )
        if image.dtype != np.float32:
            image = image.astype(np.float32)
        return np.ascontiguousarray(image)

    def describe(self) -> dict:
        """Settings worth logging next to results (backend, device, precision, size)."""
        return {
            "backend": self.name,
            "device": self.device,
            "precision": self.precision,
            "input_size": list(self.input_size) if self.input_size else None,
        }

    def close(self) -> None:
        """Release backend resources (sessions, device memory). Safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.describe().items())
        return f"{type(self).__name__}({fields})"
