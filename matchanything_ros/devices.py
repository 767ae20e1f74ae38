"""Device names ("auto", "cpu", "cuda", "cuda:N") -> what PyTorch uses, in one place."""
from __future__ import annotations


def auto_device() -> str:
    """"cuda" when PyTorch sees a GPU, else "cpu" (also when torch is not installed)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency, but ORT runs without it
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_device(device: str, error: type[Exception] = ValueError):
    """``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> torch.device.

    Raises ``error`` (the caller's error type) with a message saying what to use instead when
    the name is unknown or CUDA / that GPU is not there."""
    import torch

    if device == "auto":
        device = auto_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise error(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N): {exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise error(
                f"device {device!r} requested but this PyTorch has no usable CUDA "
                f"(torch {torch.__version__}); use device 'cpu' or 'auto', or install a CUDA build of torch"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise error(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise error(f"device {device!r} is not supported (use auto, cpu, cuda or cuda:N)")
    return dev
