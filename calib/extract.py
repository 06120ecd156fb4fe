"""Run a classifier over a data loader and collect its logits (and features), in loader order.

:func:`extract` is the one place where calib runs a model over a dataset for
calibration or evaluation: eval mode, ``torch.inference_mode``, non-blocking
transfers, optional autocast and channels-last inputs, and a progress bar. The
model's train/eval modes are restored afterwards and its weights are never touched.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import RandomSampler
from tqdm.auto import tqdm

__all__ = ["Extracted", "extract", "model_device"]


@dataclass(frozen=True)
class Extracted:
    """What :func:`extract` collected, on the CPU, rows in the loader's order.

    Attributes:
        logits: (N, C) float32 scores.
        labels: (N,) int64 labels, or None when the loader's batches carry none.
        features: (N, D) float32 features, or None when not requested.
    """

    logits: torch.Tensor
    labels: torch.Tensor | None
    features: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.logits.shape[0])


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for a model with neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _split_batch(batch: Any) -> tuple[torch.Tensor, Any]:
    """(inputs, labels or None) of one loader batch: ``(x, y, ...)``, ``(x,)``, ``x`` or a dict."""
    if isinstance(batch, Mapping):
        if "image" not in batch:
            raise KeyError(
                f"a dict batch needs an 'image' entry (and 'label'); got keys {sorted(batch)}"
            )
        x, y = batch["image"], batch.get("label")
    elif isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("the loader yielded an empty batch tuple")
        x, y = batch[0], (batch[1] if len(batch) > 1 else None)
    else:
        x, y = batch, None
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"batch inputs must be a torch.Tensor, got {type(x).__name__}")
    return x, y


def _as_labels(y: Any, n: int) -> torch.Tensor:
    labels = torch.as_tensor(y).reshape(-1)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.numel() != n:
        raise ValueError(f"a batch has {n} inputs but {labels.numel()} labels")
    return labels.to("cpu", torch.int64)


def _check_output(out: Any, n: int, what: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model's {what} must be a tensor, got {type(out).__name__}")
    if out.ndim != 2 or out.shape[0] != n:
        raise ValueError(
            f"the model's {what} must have shape ({n}, K) for a batch of {n}, got {tuple(out.shape)}"
        )
    return out


def extract(
    model: nn.Module,
    loader: Iterable[Any],
    device: str | torch.device | None = None,
    *,
    features: bool = False,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = True,
    desc: str = "extract",
) -> Extracted:
    """Logits (and features) of ``model`` on every batch of ``loader``.

    Args:
        model: maps a batch of inputs to (B, C) logits. With ``features=True`` it must have
            ``forward_features_logits(x) -> (features (B, D), logits (B, C))``, as
            :class:`calib.models.Classifier` has.
        loader: yields ``(x, y)`` tuples (extra entries ignored), dicts with ``"image"`` and
            ``"label"``, or inputs alone (then ``labels`` is None). A shuffling DataLoader
            gives rows in its shuffled order (a warning says so).
        device: where to run; None = where the model is. A given device moves the model
            there (``nn.Module.to`` works in place) and it stays there.
        features: also collect features.
        amp: autocast (float16 on CUDA, bfloat16 on the CPU); the results are float32.
        channels_last: send 4-D inputs in channels-last memory format (convert the model
            with ``model.to(memory_format=torch.channels_last)`` for the speed-up).
        progress: show a tqdm progress bar. desc: its label.

    Returns:
        :class:`Extracted` on the CPU: logits (N, C) float32, labels (N,) int64, features
        (N, D) float32 or None. Outputs are gathered on ``device`` and copied once at the end.

    Raises:
        ValueError: the loader yields no sample, or batches disagree in shape or labelling.
        TypeError: ``features=True`` for a model without ``forward_features_logits``.
    """
    if features and not callable(getattr(model, "forward_features_logits", None)):
        raise TypeError(
            f"features=True needs a model with forward_features_logits(x) -> (features, logits) "
            f"(e.g. calib.models.Classifier); {type(model).__name__} has none"
        )
    if isinstance(getattr(loader, "sampler", None), RandomSampler):
        warnings.warn(
            "the loader shuffles: extracted rows follow its random order, not the dataset's",
            stacklevel=2,
        )
    if device is None:
        device = model_device(model)
    else:
        device = torch.device(device)
        model.to(device)
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    autocast = torch.autocast(device.type) if amp else contextlib.nullcontext()

    modes = [(module, module.training) for module in model.modules()]
    logits_parts: list[torch.Tensor] = []
    feature_parts: list[torch.Tensor] = []
    label_parts: list[torch.Tensor] = []
    labelled: bool | None = None
    try:
        model.eval()
        try:
            total = len(loader)  # type: ignore[arg-type]
        except TypeError:  # an iterable-style loader has no length
            total = None
        with torch.inference_mode(), autocast:
            for batch in tqdm(loader, desc=desc, total=total, disable=not progress, leave=False):
                x, y = _split_batch(batch)
                n = x.shape[0] if x.ndim else 0
                if labelled is None:
                    labelled = y is not None
                elif labelled != (y is not None):
                    raise ValueError("the loader mixes batches with and without labels")
                if n == 0:
                    continue
                fmt = memory_format if x.ndim == 4 else torch.preserve_format
                x = x.to(device, non_blocking=True, memory_format=fmt)
                if features:
                    feats, out = model.forward_features_logits(x)
                    feature_parts.append(_check_output(feats, n, "features").float())
                else:
                    out = model(x)
                out = _check_output(out, n, "output")
                if logits_parts and out.shape[1] != logits_parts[0].shape[1]:
                    raise ValueError(
                        f"the model gave {logits_parts[0].shape[1]} columns on one batch and "
                        f"{out.shape[1]} on another"
                    )
                logits_parts.append(out.float())
                if y is not None:
                    label_parts.append(_as_labels(y, n))
    finally:
        for module, training in modes:
            module.training = training

    if not logits_parts:
        raise ValueError(f"the loader yielded no samples: nothing to extract ({desc})")
    # concatenated outside inference mode: ordinary tensors that callers may modify in place
    return Extracted(
        logits=torch.cat(logits_parts).cpu(),
        labels=torch.cat(label_parts) if labelled else None,
        features=torch.cat(feature_parts).cpu() if features else None,
    )
