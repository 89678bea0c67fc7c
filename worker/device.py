"""Which device jobs run on, and which device errors leave the process unusable."""

from __future__ import annotations

import sys

# A CUDA context that saw one of these cannot be trusted again in this process.
STICKY_CUDA_ERROR_MARKERS = (
    "CUDA error",
    "device-side assert",
    "illegal memory access",
    "CUBLAS_STATUS",
    "CUDNN_STATUS",
    "cuDNN error",
    "unspecified launch failure",
)


def resolve_device(setting: str) -> str:
    """`auto` is `cuda` where torch sees a GPU, else `cpu`; explicit CUDA must exist."""
    if setting == "cpu":
        return "cpu"
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise RuntimeError(f"GLASSBOX_DEVICE={setting} but torch sees no CUDA device")
    index = int(setting.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise RuntimeError(f"GLASSBOX_DEVICE={setting} but torch sees {torch.cuda.device_count()} CUDA devices")
    return setting


def is_unrecoverable_device_error(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, torch.OutOfMemoryError):
        return False  # the allocator recovers; the job fails, the worker goes on
    accelerator_error = getattr(torch, "AcceleratorError", None) if torch is not None else None
    if accelerator_error is not None and isinstance(exc, accelerator_error):
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc)
        return any(marker in text for marker in STICKY_CUDA_ERROR_MARKERS)
    return False
