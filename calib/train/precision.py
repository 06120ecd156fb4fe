"""The precision a training or an extraction computes in, resolved on its device.

An ``amp`` setting (``"auto"``, ``"bf16"``, ``"fp16"``, ``"off"``; ``True``/``False`` mean
``"auto"``/``"off"``) says what a run asks for; :func:`resolve_precision` says what it gets on
a device: ``"fp32"``, ``"bf16"`` or ``"fp16"``. That resolved precision is what keys a stage
(:mod:`calib.run.stage_plan`) and fingerprints a checkpoint (:func:`calib.train.train`): a CPU
run (fp32), an A100 run (bf16) and a V100 run (fp16 with a grad scaler) compute different
numbers and never stand in for each other, while two settings that resolve alike (``auto``
and ``off`` on a CPU) share their stages.

``"auto"``: on CUDA, bf16 where the GPU computes it in hardware (compute capability ≥ 8, or
ROCm), else fp16; fp32 anywhere else. An explicit ``"bf16"``/``"fp16"`` is honoured on any
device (CPU autocast computes both).
"""

from __future__ import annotations

import torch

__all__ = ["AMP_MODES", "PRECISIONS", "autocast_dtype", "native_bf16", "resolve_precision"]

#: What an ``amp`` setting may be (besides a bool).
AMP_MODES = ("auto", "bf16", "fp16", "off")
#: What it resolves to.
PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_precision(amp: str | bool, device: str | torch.device) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"``: what ``amp`` computes in on ``device``.

    Raises:
        ValueError: ``amp`` is none of :data:`AMP_MODES` nor a bool.
    """
    mode = {True: "auto", False: "off"}[amp] if isinstance(amp, bool) else amp
    if mode not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES} or a bool, got {amp!r}")
    device = torch.device(device)
    if mode == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if native_bf16(device) else "fp16"
    return {"bf16": "bf16", "fp16": "fp16", "off": "fp32"}[mode]


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (``None`` for fp32: no autocast)."""
    try:
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    except KeyError:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}") from None


def native_bf16(device: torch.device) -> bool:
    """Whether CUDA ``device`` (not the current one) has bf16 arithmetic in hardware.

    ``torch.cuda.is_bf16_supported()`` also counts the emulation of pre-Ampere GPUs (several
    times slower than fp16 there) and asks about the current device only; this is its
    ``including_emulation=False`` rule (compute capability ≥ 8; every ROCm GPU) for ``device``.
    """
    if torch.version.hip:
        return True
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_capability(index)[0] >= 8
