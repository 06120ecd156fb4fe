"""Run a classifier over a data loader and collect its logits (and features), in loader order.

:func:`extract` is the one place where calib runs a model over a dataset for
calibration or evaluation: eval mode, ``torch.inference_mode``, non-blocking
transfers, optional autocast and channels-last inputs, and a progress bar. The
model's train/eval modes are restored afterwards and its weights and buffers (BatchNorm
running statistics) are never touched. :func:`evaluating` is the one helper that every
evaluation pass of calib runs in. :func:`extract_state` runs the same loop but keeps no
(N, C) matrix: each batch's logits are reduced, on the model's device, into a
:class:`calib.SeenAbsentState` (O(1) numbers per sample; ``calib-run eval.logits=state``).

Several processes (``torchrun``, see :mod:`calib.distributed`): build the loader with
:func:`extraction_loader` (a :class:`~calib.distributed.ShardSampler`: rank ``r`` of ``W``
runs samples ``r, r + W, ...``, none twice); :func:`extract` then gathers the shards and
every rank gets all rows in dataset order, as one process would (:func:`extract_state`
syncs the per-sample state instead, O(N)).

Any ``nn.Module`` works, not only :class:`calib.models.Classifier`:

- **Outputs.** A tensor, a tuple/list (its first item), or a mapping such as a Hugging Face
  ``ModelOutput`` (its ``"logits"``); ``output_key=`` picks another entry (a key, or an
  index of a tuple). See :func:`output_logits`.
- **Batches.** ``(x, y, ...)`` tuples, inputs alone, or dicts. In a dict, the labels are
  ``"label"`` or ``"labels"``; the main input ``"image"``, ``"pixel_values"``, ``"input_ids"``
  or ``"input_values"`` goes to the model positionally, and every other entry as a keyword
  (``attention_mask``, ``token_type_ids``, ...): a Hugging Face collator's batches work as
  they are. Other names: ``batch_keys={"input": "img", "label": "target"}`` (``"input":
  None``: every entry as a keyword; ``"label": None``: no labels). See :func:`split_batch`.
- **Features** (for NCM): ``forward_features_logits`` (:class:`calib.models.Classifier`),
  timm's ``forward_features``/``forward_head``, or, for any other model,
  ``features_from="classifier"``: the input of the named submodule (its head; a dotted path
  such as ``"model.head"`` for a nested one), captured by a forward pre-hook during the one
  forward pass. See :func:`features_and_logits`.
"""

from __future__ import annotations

import contextlib
import inspect
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
from calib.metrics.streaming import SeenAbsentState

__all__ = [
    "INPUT_KEYS",
    "LABEL_KEYS",
    "Extracted",
    "check_batch_keys",
    "evaluating",
    "extract",
    "extract_state",
    "extraction_loader",
    "feature_module",
    "features_and_logits",
    "has_features",
    "is_channels_last",
    "model_device",
    "output_logits",
    "split_batch",
]

#: Dict-batch keys of the model's main input, tried in this order; it goes to the model
#: positionally (calib's ``"image"``, then Hugging Face's image, text and audio inputs).
INPUT_KEYS = ("image", "pixel_values", "input_ids", "input_values")
#: Dict-batch keys of the labels, tried in this order (calib's, then Hugging Face's).
LABEL_KEYS = ("label", "labels")
_DEFAULT = object()  # batch_keys entry not given: try INPUT_KEYS / LABEL_KEYS


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


def features_and_logits(
    model: nn.Module,
    *inputs: Any,
    features_from: str | None = None,
    output_key: str | int | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (B, D), logits (B, C)) of ``model`` on a batch, in one forward pass.

    ``inputs`` and ``kwargs`` are the model's own arguments (``model(*inputs, **kwargs)``).
    With ``features_from`` (the name of a submodule, e.g. ``"classifier"``): the input of that
    submodule, captured by a forward pre-hook, and the logits of the model's output (see
    :func:`output_logits`); the submodule must run exactly once per forward pass. Without:
    ``model.forward_features_logits(x)`` when it has one (:class:`calib.models.Classifier`);
    else a timm model's own split: ``f = forward_features(x)``, features
    ``forward_head(f, pre_logits=True)`` (pooled, before the classifier), logits
    ``forward_head(f)``.

    Raises:
        TypeError: no ``features_from`` and the model offers neither.
        ValueError: ``features_from`` names no submodule of the model.
        RuntimeError: the named submodule did not run exactly once.
    """
    if features_from is not None:
        return _hooked_features_and_logits(
            model, feature_module(model, features_from), inputs, kwargs, output_key
        )
    inner = getattr(model, "forward_features_logits", None)
    if callable(inner):
        return inner(*inputs, **kwargs)
    if has_features(model):
        trunk = model.forward_features(*inputs, **kwargs)
        return model.forward_head(trunk, pre_logits=True), model.forward_head(trunk)
    raise TypeError(
        f"{type(model).__name__} has neither forward_features_logits(x) -> (features, logits) "
        "(e.g. calib.models.Classifier) nor timm's forward_features/forward_head; name its "
        "head with features_from=... (e.g. features_from='classifier') to take the head's input"
    )


def feature_module(model: nn.Module, features_from: Any) -> nn.Module:
    """The submodule of ``model`` named ``features_from`` (a dotted path, as in
    ``named_modules()``), whose input :func:`features_and_logits` takes as the features.

    Raises:
        ValueError: ``features_from`` is not a non-empty string naming a submodule (the
            message lists the model's linear layers, the usual heads).
    """
    if not isinstance(features_from, str) or not features_from:
        raise ValueError(
            f"features_from must be the name of a submodule (e.g. 'classifier'), "
            f"got {features_from!r}"
        )
    try:
        return model.get_submodule(features_from)
    except AttributeError:
        linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ValueError(
            f"features_from={features_from!r} names no submodule of {type(model).__name__}; "
            f"its linear layers are {linear[-8:] or 'none'}"
        ) from None


def _hooked_features_and_logits(
    model: nn.Module,
    head: nn.Module,
    inputs: tuple[Any, ...],
    kwargs: dict[str, Any],
    output_key: str | int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    captured: list[Any] = []

    def grab(module: nn.Module, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        captured.append(args[0] if args else next(iter(kw.values()), None))

    handle = head.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        out = model(*inputs, **kwargs)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(
            f"the features_from module ({type(head).__name__}) ran {len(captured)} times in one "
            "forward pass; it must run exactly once (name the final classification layer)"
        )
    feats = captured[0]
    if not isinstance(feats, torch.Tensor):
        raise TypeError(
            f"the input of the features_from module must be a tensor, got {type(feats).__name__}"
        )
    return feats, output_logits(out, output_key)


def output_logits(out: Any, output_key: str | int | None = None) -> Any:
    """The logits in a model's output.

    A tensor is the logits; a mapping (a Hugging Face ``ModelOutput``, a dict) gives its
    ``"logits"`` entry; a tuple or list its first item. ``output_key`` picks another entry: a
    key of the mapping, or an index of the tuple. The result is returned unchecked (shape
    checks are the caller's).

    Raises:
        KeyError: the mapping has no such key (the message lists its keys).
        TypeError: an output of another type, or ``output_key`` of the wrong kind for it.
    """
    if isinstance(out, torch.Tensor) and output_key is None:
        return out
    if isinstance(out, Mapping):
        key = "logits" if output_key is None else output_key
        if key not in out:
            raise KeyError(
                f"the model's output ({type(out).__name__}) has no entry {key!r}; its keys are "
                f"{list(out)}: pick one with output_key=..."
            )
        return out[key]
    if isinstance(out, (tuple, list)):
        index = 0 if output_key is None else output_key
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(
                f"output_key={output_key!r} cannot index the model's output, a "
                f"{type(out).__name__}: give an integer position"
            )
        if not -len(out) <= index < len(out):
            raise TypeError(
                f"output_key={output_key!r} is out of range for the model's output, a "
                f"{type(out).__name__} of {len(out)} items"
            )
        return out[index]
    if isinstance(out, torch.Tensor):
        raise TypeError(
            f"output_key={output_key!r} was given, but the model's output is a tensor: leave "
            "output_key=None"
        )
    raise TypeError(
        f"the model's output must be a tensor, a tuple/list (its first item is taken) or a "
        f"mapping such as a Hugging Face ModelOutput (its 'logits'), got {type(out).__name__}"
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
    pin_memory: bool | None = None,
    **kwargs: Any,
) -> DataLoader:
    """A loader over this process's shard of ``dataset``, in order, for :func:`extract`.

    One process: every sample in dataset order. Rank ``r`` of ``W``: samples ``r, r + W, ...``
    (:class:`~calib.distributed.ShardSampler`, no padding). ``batch_size`` is per process;
    ``pin_memory``: page-locked batches, so that :func:`extract`'s non-blocking copies to the
    GPU overlap the compute; ``None`` = when CUDA is available. ``kwargs`` go to
    ``DataLoader`` (not ``sampler``/``shuffle``).
    """
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    n = len(dataset)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=ShardSampler(n),
        num_workers=num_workers,
        pin_memory=pin_memory,
        **kwargs,
    )


def _check_shard_group(sampler: ShardSampler) -> None:
    """RuntimeError unless this process is in the group ``sampler`` shards the data over."""
    ctx = distributed.context()
    if not ctx.is_distributed or ctx.world_size != sampler.world_size:
        raise RuntimeError(
            f"the loader's ShardSampler splits the data over {sampler.world_size} processes "
            f"but this process is in a group of {ctx.world_size}; join the group with "
            "calib.distributed.init_distributed() and build the loader with extraction_loader()"
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
    _check_shard_group(sampler)
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


def check_batch_keys(batch_keys: Any) -> dict[str, Any]:
    """Validate ``batch_keys`` (None, or a mapping with ``"input"`` and/or ``"label"``, each a
    string or None); returns ``{"input": ..., "label": ...}`` with the defaults filled in.

    Raises:
        ValueError: anything else, with the value given.
    """
    if batch_keys is None:
        return {"input": _DEFAULT, "label": _DEFAULT}
    if not isinstance(batch_keys, Mapping) or not set(batch_keys) <= {"input", "label"}:
        raise ValueError(
            "batch_keys must be a dict with 'input' and/or 'label' (the dict-batch keys of the "
            f"model's main input and of the labels), got {batch_keys!r}"
        )
    for role, key in batch_keys.items():
        if key is not None and key is not _DEFAULT and (not isinstance(key, str) or not key):
            raise ValueError(f"batch_keys[{role!r}] must be a key (a string) or None, got {key!r}")
    return {"input": batch_keys.get("input", _DEFAULT), "label": batch_keys.get("label", _DEFAULT)}


def split_batch(
    batch: Any, batch_keys: Any = None
) -> tuple[tuple[Any, ...], dict[str, Any], Any, int]:
    """(positional inputs, keyword inputs, labels or None, batch size) of one loader batch.

    ``(x, y, ...)`` (extra entries ignored), ``(x,)`` or ``x``: ``model(x)``. A dict (or a dict
    as the first item of a tuple, the tuple's second item being the labels): the labels under
    ``batch_keys["label"]`` (default: the first of :data:`LABEL_KEYS` present), the main input
    under ``batch_keys["input"]`` (default: the first of :data:`INPUT_KEYS` present) passed
    positionally, and every other entry as a keyword input. ``batch_keys={"input": None}``
    passes every entry as a keyword (``model(**batch)``).

    Raises:
        KeyError: a dict batch without its main input, or without a label key named in
            ``batch_keys``. TypeError: the main input is not a tensor.
    """
    keys = check_batch_keys(batch_keys)
    y: Any = None
    if isinstance(batch, (tuple, list)) and not isinstance(batch, Mapping):
        if not batch:
            raise ValueError("the loader yielded an empty batch tuple")
        batch, y = batch[0], (batch[1] if len(batch) > 1 else None)
    if not isinstance(batch, Mapping):
        if not isinstance(batch, torch.Tensor):
            raise TypeError(f"batch inputs must be a torch.Tensor, got {type(batch).__name__}")
        return (batch,), {}, y, int(batch.shape[0]) if batch.ndim else 0
    entries = dict(batch)
    label_key = keys["label"]
    if label_key is _DEFAULT:
        label_key = next((k for k in LABEL_KEYS if k in entries), None)
    elif label_key is not None and label_key not in entries:
        raise KeyError(
            f"batch_keys names the label key {label_key!r}; the batch has {list(entries)}"
        )
    if label_key is not None:
        y = entries.pop(label_key)
    input_key = keys["input"]
    if input_key is _DEFAULT:
        input_key = next((k for k in INPUT_KEYS if k in entries), _DEFAULT)
        if input_key is _DEFAULT:
            raise KeyError(
                f"a dict batch needs its model input under one of {list(INPUT_KEYS)}; got keys "
                f"{list(batch)}: name yours with batch_keys={{'input': ..., 'label': ...}} "
                "(input None: every entry goes to the model as a keyword)"
            )
    elif input_key is not None and input_key not in entries:
        raise KeyError(f"batch_keys names the input key {input_key!r}; the batch has {list(batch)}")
    if input_key is None:
        first = next((v for v in entries.values() if isinstance(v, torch.Tensor)), None)
        if first is None:
            raise TypeError(f"a dict batch with no tensor entry: keys {list(batch)}")
        return (), entries, y, int(first.shape[0]) if first.ndim else 0
    x = entries.pop(input_key)
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"batch inputs must be a torch.Tensor, got {type(x).__name__} under {input_key!r}"
        )
    return (x,), entries, y, int(x.shape[0]) if x.ndim else 0


def _accepted_keywords(model: nn.Module) -> frozenset[str] | None:
    """The keyword names ``model.forward`` takes; None when it takes any (``**kwargs``) or
    its signature cannot be read."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # no signature to read: let the model decide
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return frozenset(
        name
        for name, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )


def _model_keywords(
    model: nn.Module, kwargs: dict[str, Any], accepted: frozenset[str] | None
) -> dict[str, Any]:
    """The batch's keyword entries that go to the model: a non-tensor entry its forward has no
    parameter for (a file path, an id) is left out; a tensor entry it has no parameter for is
    an error (a misnamed mask must not be dropped silently)."""
    if accepted is None:
        return kwargs
    unknown = [k for k, v in kwargs.items() if k not in accepted and isinstance(v, torch.Tensor)]
    if unknown:
        raise TypeError(
            f"the batch's tensor entries {unknown} would go to the model as keyword inputs, but "
            f"{type(model).__name__}.forward takes {sorted(accepted)}: drop them from the batch "
            "(e.g. in the collate_fn) or name the input and label keys with batch_keys=..."
        )
    return {k: v for k, v in kwargs.items() if k in accepted}


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
    amp: bool | torch.dtype = False,
    channels_last: bool | str = False,
    progress: bool = True,
    desc: str = "extract",
    gather: bool = True,
    features_from: str | None = None,
    output_key: str | int | None = None,
    batch_keys: Mapping[str, str | None] | None = None,
) -> Extracted:
    """Logits (and features) of ``model`` on every batch of ``loader``.

    Args:
        model: maps a batch of inputs to (B, C) logits: a tensor, a tuple/list (first item)
            or a mapping / Hugging Face ``ModelOutput`` (its ``"logits"``; see
            ``output_key``). With ``features=True`` it must have
            ``forward_features_logits(x) -> (features (B, D), logits (B, C))`` (as
            :class:`calib.models.Classifier` has) or timm's ``forward_features``/
            ``forward_head``, or ``features_from`` must name its head.
        loader: yields ``(x, y)`` tuples (extra entries ignored), inputs alone (then
            ``labels`` is None), or dicts: labels under ``"label"``/``"labels"``, the main
            input under ``"image"``/``"pixel_values"``/``"input_ids"``/``"input_values"``
            (positional), every other entry a keyword input (``attention_mask``, ...); see
            :func:`split_batch` and ``batch_keys``. A shuffling DataLoader gives rows in its
            shuffled order (a warning says so).
        device: where to run; None = where the model is. A given device moves the model
            there (``nn.Module.to`` works in place) and it stays there.
        features: also collect features.
        amp: autocast: ``True`` in torch's default dtype of the device type (float16 on CUDA,
            bfloat16 on the CPU), or the dtype given (``torch.bfloat16``); ``False``: off. The
            results are float32; a :class:`calib.models.Classifier`'s head computes in
            float32 either way.
        channels_last: send 4-D inputs in channels-last memory format (convert the model
            with ``model.to(memory_format=torch.channels_last)`` for the speed-up);
            ``"auto"``: when the model's convolution weights are in that format (as
            :func:`calib.train.train` leaves a model it trained channels-last).
        progress: show a tqdm progress bar (on rank 0 only). desc: its label.
        gather: when the loader's sampler is a :class:`~calib.distributed.ShardSampler` of a
            multi-process run (:func:`extraction_loader`), gather every rank's rows into
            dataset order on every rank (a collective: all ranks must call). ``False``: this
            rank's rows only, in shard order.
        features_from: with ``features=True``, the name of the submodule whose input is the
            feature vector (the model's head: ``"classifier"`` for Hugging Face classifiers,
            ``"fc"`` for a torchvision ResNet, ``"model.head"`` nested); it must run once per
            forward pass and take (B, D) inputs. For a model with no features of its own.
        output_key: the entry of the model's output holding the logits: a mapping's key
            (default ``"logits"``) or a tuple's index (default 0); None for a tensor.
        batch_keys: dict-batch keys ``{"input": ..., "label": ...}`` when they are not the
            defaults above (``"input": None``: every entry a keyword; ``"label": None``: no
            labels).

    Returns:
        :class:`Extracted` on the CPU: logits (N, C) float32, labels (N,) int64, features
        (N, D) float32 or None. Outputs are gathered on ``device`` and copied once at the end.

    Raises:
        ValueError: the loader yields no sample, or batches disagree in shape or labelling.
        TypeError: ``features=True`` for a model without ``forward_features_logits`` and no
            ``features_from``; a model output that holds no logits tensor.
    """
    keys = check_batch_keys(batch_keys)
    if features_from is not None:
        if not features:
            raise ValueError(
                f"features_from={features_from!r} is given but features=False: pass "
                "features=True to collect the features"
            )
        feature_module(model, features_from)  # a bad name stops before the model runs
    elif features and not has_features(model):
        raise TypeError(
            f"features=True needs a model with forward_features_logits(x) -> (features, logits) "
            f"(e.g. calib.models.Classifier) or timm's forward_features/forward_head; "
            f"{type(model).__name__} has neither: name its head with features_from=... "
            "(e.g. 'classifier') to take the head's input as the features"
        )
    parts = _run_batches(
        model, loader, device, amp=amp, channels_last=channels_last, progress=progress,
        desc=desc, features=features, features_from=features_from, output_key=output_key,
        batch_keys=keys,
    )  # fmt: skip
    sampler = getattr(loader, "sampler", None)
    sharded = gather and isinstance(sampler, ShardSampler) and sampler.world_size > 1
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


def extract_state(
    model: nn.Module,
    loader: Iterable[Any],
    state: SeenAbsentState,
    device: str | torch.device | None = None,
    *,
    amp: bool | torch.dtype = False,
    channels_last: bool | str = False,
    progress: bool = True,
    desc: str = "extract",
    sync: bool = True,
    output_key: str | int | None = None,
    batch_keys: Mapping[str, str | None] | None = None,
) -> SeenAbsentState:
    """Stream ``model``'s logits on ``loader`` into ``state``: :func:`extract` without the
    (N, C) matrix.

    Each batch's (B, C) float32 logits (as :func:`extract` would return them) go to
    ``state.update(logits, labels)`` on the device where the model computed them, which keeps
    O(1) numbers per sample (:class:`calib.SeenAbsentState`); the batch's logits are then
    dropped. The same loop as :func:`extract` (eval mode, ``torch.inference_mode``, autocast,
    channels-last, the batch formats), and the same arguments; no features.

    Args:
        state: where the batches go (its classes, top-k, γ values and ALG terms decide what
            is kept); its samples so far stay, the loader's are appended in loader order.
        sync: when the loader's sampler is a :class:`~calib.distributed.ShardSampler` of a
            multi-process run (:func:`extraction_loader`), gather every rank's per-sample
            state (O(N), :meth:`~calib.SeenAbsentState.sync`), in dataset order, on every rank
            (a collective: all ranks must call). ``False``: this rank's samples only.

    Returns:
        The state holding every sample: ``state`` itself, or under ``torchrun`` (``sync``) a
        new, synced state (``state`` then holds this rank's shard).

    Raises:
        ValueError: the loader yields no sample (on any rank), batches disagree in width or
            labelling, or the state refuses a batch (another C, no labels for a labelled or
            ALG state, NaN or +inf logits).
        TypeError: a model output that holds no logits tensor.
    """
    if not isinstance(state, SeenAbsentState):
        raise TypeError(f"state must be a calib.SeenAbsentState, got {type(state).__name__}")
    keys = check_batch_keys(batch_keys)

    def update(logits: torch.Tensor, labels: torch.Tensor | None) -> None:
        state.update(logits, labels)

    parts = _run_batches(
        model, loader, device, amp=amp, channels_last=channels_last, progress=progress,
        desc=desc, features=False, features_from=None, output_key=output_key, batch_keys=keys,
        sink=update,
    )  # fmt: skip
    sampler = getattr(loader, "sampler", None)
    if sync and isinstance(sampler, ShardSampler) and sampler.world_size > 1:
        _check_shard_group(sampler)
        synced = state.sync()  # O(N) per-sample numbers, never the logits
        if synced.n_samples == 0:
            raise ValueError(
                f"the loader yielded no samples on any rank: nothing to extract ({desc})"
            )
        return synced
    if not parts.n_samples:
        raise ValueError(f"the loader yielded no samples: nothing to extract ({desc})")
    return state


def _run_batches(
    model: nn.Module,
    loader: Iterable[Any],
    device: str | torch.device | None,
    *,
    amp: Any,
    channels_last: Any,
    progress: bool,
    desc: str,
    features: bool,
    features_from: str | None,
    output_key: str | int | None,
    batch_keys: dict[str, Any],
    sink: Any = None,
) -> _Parts:
    """The batch loop of :func:`extract` and :func:`extract_state`: the model over every batch
    of ``loader`` in eval mode, inference mode and the ``amp`` autocast, with a progress bar;
    each batch's outputs kept in the returned parts, or handed to ``sink(logits, labels)``."""
    if isinstance(getattr(loader, "sampler", None), RandomSampler):
        warnings.warn(
            "the loader shuffles: extracted rows follow its random order, not the dataset's",
            stacklevel=3,
        )
    autocast = _autocast_context(amp)
    if channels_last == "auto":
        channels_last = is_channels_last(model)
    elif not isinstance(channels_last, bool):
        raise ValueError(f"channels_last must be True, False or 'auto', got {channels_last!r}")
    device = _extraction_device(model, device)
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
        with bar, torch.inference_mode(), autocast(device):
            # floating inputs follow the model's dtype (a float64 model on a float32 loader, a
            # bfloat16 model on float32 images); autocast picks its own dtypes
            return _collect(
                model,
                loader,
                device,
                features=features,
                features_from=features_from,
                output_key=output_key,
                batch_keys=batch_keys,
                input_dtype=None if amp is not False else _input_dtype(model),
                memory_format=torch.channels_last if channels_last else torch.preserve_format,
                bar=bar,
                sink=sink,
            )


def _autocast_context(amp: Any):
    """``device -> context``: the autocast ``extract(amp=...)`` asks for (checked first)."""
    if amp is False:
        return lambda device: contextlib.nullcontext()
    if amp is True:
        return lambda device: torch.autocast(device.type)
    if isinstance(amp, torch.dtype) and amp in (torch.float16, torch.bfloat16):
        return lambda device: torch.autocast(device.type, dtype=amp)
    raise ValueError(f"amp must be True, False, torch.float16 or torch.bfloat16, got {amp!r}")


def is_channels_last(model: nn.Module) -> bool:
    """Whether ``model``'s 4-D weights (convolutions) are laid out channels-last: some weight
    is contiguous in that format and not in the default one."""
    return any(
        p.ndim == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
        for p in model.parameters()
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
    """Per-batch outputs on the device, in loader order (none kept when a sink takes them)."""

    logits: list[torch.Tensor] = field(default_factory=list)
    features: list[torch.Tensor] = field(default_factory=list)
    labels: list[torch.Tensor] = field(default_factory=list)
    labelled: bool | None = None  # None until the first batch
    width: int | None = None  # the logits' C, from the first non-empty batch
    n_samples: int = 0


def _collect(
    model,
    loader,
    device,
    *,
    features,
    features_from,
    output_key,
    batch_keys,
    input_dtype,
    memory_format,
    bar,
    sink=None,
) -> _Parts:
    """Run ``model`` on every batch of ``loader``; checks that every batch agrees. With
    ``sink``, each batch's float32 logits (on the device) and CPU labels go to
    ``sink(logits, labels)`` instead of the parts."""
    parts = _Parts()
    accepted = _accepted_keywords(model)
    for batch in loader:
        bar.update()
        args, kwargs, y, n = split_batch(batch, batch_keys)
        if parts.labelled is None:
            parts.labelled = y is not None
        elif parts.labelled != (y is not None):
            raise ValueError("the loader mixes batches with and without labels")
        if n == 0:
            continue
        kwargs = _model_keywords(model, kwargs, accepted)
        args = tuple(_to_device(a, device, memory_format, input_dtype) for a in args)
        kwargs = {k: _to_device(v, device) for k, v in kwargs.items()}
        if features:
            feats, out = features_and_logits(
                model, *args, features_from=features_from, output_key=output_key, **kwargs
            )
            parts.features.append(_check_output(feats, n, "features").float())
        else:
            out = output_logits(model(*args, **kwargs), output_key)
        out = _check_output(out, n, "output")
        if parts.width is not None and out.shape[1] != parts.width:
            raise ValueError(
                f"the model gave {parts.width} columns on one batch and {out.shape[1]} on another"
            )
        parts.width = int(out.shape[1])
        parts.n_samples += n
        labels = _as_labels(y, n) if y is not None else None
        if sink is not None:
            sink(out.float(), labels)
            continue
        parts.logits.append(out.float())
        if labels is not None:
            parts.labels.append(labels)
    return parts


def _to_device(
    value: Any,
    device: torch.device,
    memory_format: torch.memory_format = torch.preserve_format,
    dtype: torch.dtype | None = None,
) -> Any:
    """A tensor moved to ``device`` (4-D ones in ``memory_format``; floating ones cast to
    ``dtype`` when given); anything else as it is."""
    if not isinstance(value, torch.Tensor):
        return value
    fmt = memory_format if value.ndim == 4 else torch.preserve_format
    value = value.to(device, non_blocking=True, memory_format=fmt)
    if dtype is not None and value.is_floating_point() and value.dtype != dtype:
        value = value.to(dtype)
    return value
