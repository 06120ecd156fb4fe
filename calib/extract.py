"""Run a classifier over a data loader and collect its logits (and features), in loader order.

:func:`extract` is the one place where calib runs a model over a dataset for
calibration or evaluation: eval mode, ``torch.inference_mode``, non-blocking
transfers, optional autocast and channels-last inputs, and a progress bar. The
model's train/eval modes are restored afterwards and its weights and buffers (BatchNorm
running statistics) are never touched. :func:`evaluating` is the one helper that every
evaluation pass of calib runs in.

Several processes (``torchrun``, see :mod:`calib.distributed`): build the loader with
:func:`extraction_loader` (a :class:`~calib.distributed.ShardSampler`: rank ``r`` of ``W``
runs samples ``r, r + W, ...``, none twice); :func:`extract` then gathers the shards and
every rank gets all rows in dataset order, as one process would.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from tqdm.auto import tqdm

from calib import distributed
from calib.distributed import ShardSampler

__all__ = [
    "Extracted",
    "evaluating",
    "extract",
    "extraction_loader",
    "features_and_logits",
    "has_features",
    "model_device",
]


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


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block ``model`` is in eval mode; on exit every submodule gets back its own
    ``training`` flag, even when the block raises.

    Eval mode is what a forward pass that is not training needs: dropout off, BatchNorm
    normalising with (and not updating) its running statistics. The previous flags are put
    back one module at a time, not with ``model.train(mode)``, so a model whose submodules
    were in different modes (a frozen backbone kept in eval, a BatchNorm frozen by hand)
    comes back exactly as it was. Nesting is fine.
    """
    modes = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for module, training in modes:
            module.training = training


def has_features(model: nn.Module) -> bool:
    """Whether :func:`features_and_logits` can take features from ``model``."""
    if callable(getattr(model, "forward_features_logits", None)):
        return True
    return callable(getattr(model, "forward_features", None)) and callable(
        getattr(model, "forward_head", None)
    )


def features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (B, D), logits (B, C)) of ``model`` on a batch, in one forward pass.

    ``model.forward_features_logits(x)`` when it has one (:class:`calib.models.Classifier`);
    else a timm model's own split: ``f = forward_features(x)``, features
    ``forward_head(f, pre_logits=True)`` (pooled, before the classifier), logits
    ``forward_head(f)``.

    Raises:
        TypeError: the model offers neither.
    """
    inner = getattr(model, "forward_features_logits", None)
    if callable(inner):
        return inner(x)
    if has_features(model):
        trunk = model.forward_features(x)
        return model.forward_head(trunk, pre_logits=True), model.forward_head(trunk)
    raise TypeError(
        f"{type(model).__name__} has neither forward_features_logits(x) -> (features, logits) "
        "(e.g. calib.models.Classifier) nor timm's forward_features/forward_head"
    )


def _input_dtype(model: nn.Module) -> torch.dtype | None:
    """The floating dtype of the model's first floating parameter (None: no such parameter)."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def extraction_loader(
    dataset: Dataset,
    batch_size: int = 256,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
    **kwargs: Any,
) -> DataLoader:
    """A loader over this process's shard of ``dataset``, in order, for :func:`extract`.

    One process: every sample in dataset order. Rank ``r`` of ``W``: samples ``r, r + W, ...``
    (:class:`~calib.distributed.ShardSampler`, no padding). ``batch_size`` is per process;
    ``kwargs`` go to ``DataLoader`` (not ``sampler``/``shuffle``).
    """
    n = len(dataset)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=ShardSampler(n),
        num_workers=num_workers,
        pin_memory=pin_memory,
        **kwargs,
    )


def _gather_shards(
    sampler: ShardSampler,
    logits: torch.Tensor | None,
    labels: torch.Tensor | None,
    feats: torch.Tensor | None,
    labelled: bool | None,
    features: bool,
    desc: str,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """All ranks' rows in dataset order; called by every rank (collectives inside)."""
    ctx = distributed.context()
    if not ctx.is_distributed or ctx.world_size != sampler.world_size:
        raise RuntimeError(
            f"the loader's ShardSampler splits the data over {sampler.world_size} processes "
            f"but this process is in a group of {ctx.world_size}; join the group with "
            "calib.distributed.init_distributed() and build the loader with extraction_loader()"
        )
    flags = {flag for flag in distributed.all_gather_object(labelled) if flag is not None}
    if not flags:
        raise ValueError(f"the loader yielded no samples on any rank: nothing to extract ({desc})")
    if len(flags) > 1:
        raise ValueError("the loader gives labels on some ranks and none on others")

    def gather(local: torch.Tensor | None) -> torch.Tensor:
        return distributed.interleave_shards(distributed.all_gather_rows(local), sampler.n)

    return (
        gather(logits),
        gather(labels) if flags.pop() else None,
        gather(feats) if features else None,
    )


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
    gather: bool = True,
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
        progress: show a tqdm progress bar (on rank 0 only). desc: its label.
        gather: when the loader's sampler is a :class:`~calib.distributed.ShardSampler` of a
            multi-process run (:func:`extraction_loader`), gather every rank's rows into
            dataset order on every rank (a collective: all ranks must call). ``False``: this
            rank's rows only, in shard order.

    Returns:
        :class:`Extracted` on the CPU: logits (N, C) float32, labels (N,) int64, features
        (N, D) float32 or None. Outputs are gathered on ``device`` and copied once at the end.

    Raises:
        ValueError: the loader yields no sample, or batches disagree in shape or labelling.
        TypeError: ``features=True`` for a model without ``forward_features_logits``.
    """
    if features and not has_features(model):
        raise TypeError(
            f"features=True needs a model with forward_features_logits(x) -> (features, logits) "
            f"(e.g. calib.models.Classifier) or timm's forward_features/forward_head; "
            f"{type(model).__name__} has neither"
        )
    if isinstance(getattr(loader, "sampler", None), RandomSampler):
        warnings.warn(
            "the loader shuffles: extracted rows follow its random order, not the dataset's",
            stacklevel=2,
        )
    device = _extraction_device(model, device)
    sampler = getattr(loader, "sampler", None)
    sharded = gather and isinstance(sampler, ShardSampler) and sampler.world_size > 1
    with evaluating(model):
        # The bar is advanced by hand rather than wrapping the loader: tqdm.auto's class calls
        # iter() on what it wraps and then iterates it again, which starts a DataLoader's
        # worker processes twice (the first set prefetches batches that are thrown away).
        bar = tqdm(
            total=_length(loader),
            desc=desc,
            disable=not (progress and distributed.is_main()),
            leave=False,
        )
        autocast = torch.autocast(device.type) if amp else contextlib.nullcontext()
        with bar, torch.inference_mode(), autocast:
            # floating inputs follow the model's dtype (a float64 model on a float32 loader, a
            # bfloat16 model on float32 images); autocast picks its own dtypes
            parts = _collect(
                model,
                loader,
                device,
                features=features,
                input_dtype=None if amp else _input_dtype(model),
                memory_format=torch.channels_last if channels_last else torch.preserve_format,
                bar=bar,
            )

    if sharded:  # a rank's shard may be empty (fewer samples than ranks)
        logits, labels, feats = _gather_shards(
            sampler,  # type: ignore[arg-type]
            torch.cat(parts.logits) if parts.logits else None,
            torch.cat(parts.labels) if parts.labels else None,
            torch.cat(parts.features) if parts.features else None,
            parts.labelled if parts.logits else None,
            features,
            desc,
        )
        return Extracted(
            logits=logits.cpu(),
            labels=labels,
            features=feats.cpu() if feats is not None else None,
        )
    if not parts.logits:
        raise ValueError(f"the loader yielded no samples: nothing to extract ({desc})")
    # concatenated outside inference mode: ordinary tensors that callers may modify in place
    return Extracted(
        logits=torch.cat(parts.logits).cpu(),
        labels=torch.cat(parts.labels) if parts.labelled else None,
        features=torch.cat(parts.features).cpu() if features else None,
    )


def _extraction_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """Where to extract: the model's device, or ``device`` (the model is moved there)."""
    if device is None:
        device = model_device(model)
    else:
        device = torch.device(device)
        if device.type == "meta":
            raise ValueError(
                "device='meta' holds no data: extraction needs a device that computes "
                "(cpu, cuda, ...)"
            )
        model.to(device)
    if device.type == "meta":
        raise ValueError("the model's weights are on the 'meta' device (no data): load them first")
    return device


def _length(loader: Iterable[Any]) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:  # an iterable-style loader has no length
        return None


@dataclass
class _Parts:
    """Per-batch outputs on the device, in loader order."""

    logits: list[torch.Tensor] = field(default_factory=list)
    features: list[torch.Tensor] = field(default_factory=list)
    labels: list[torch.Tensor] = field(default_factory=list)
    labelled: bool | None = None  # None until the first batch


def _collect(model, loader, device, *, features, input_dtype, memory_format, bar) -> _Parts:
    """Run ``model`` on every batch of ``loader``; checks that every batch agrees."""
    parts = _Parts()
    for batch in loader:
        bar.update()
        x, y = _split_batch(batch)
        n = x.shape[0] if x.ndim else 0
        if parts.labelled is None:
            parts.labelled = y is not None
        elif parts.labelled != (y is not None):
            raise ValueError("the loader mixes batches with and without labels")
        if n == 0:
            continue
        fmt = memory_format if x.ndim == 4 else torch.preserve_format
        x = x.to(device, non_blocking=True, memory_format=fmt)
        if input_dtype is not None and x.is_floating_point() and x.dtype != input_dtype:
            x = x.to(input_dtype)
        if features:
            feats, out = features_and_logits(model, x)
            parts.features.append(_check_output(feats, n, "features").float())
        else:
            out = model(x)
        out = _check_output(out, n, "output")
        if parts.logits and out.shape[1] != parts.logits[0].shape[1]:
            raise ValueError(
                f"the model gave {parts.logits[0].shape[1]} columns on one batch and "
                f"{out.shape[1]} on another"
            )
        parts.logits.append(out.float())
        if y is not None:
            parts.labels.append(_as_labels(y, n))
    return parts
