"""Reading weight files into a :class:`~calib.models.Classifier`, with errors that name the problem.

Two kinds of file are understood:

* a full ``Classifier`` state dict (keys ``backbone.*`` and ``head.*``), as written by
  :func:`save_weights`: every tensor must match the model;
* a backbone state dict from timm or torchvision (``conv1.weight``, ..., ``fc.weight``): the
  backbone tensors must match exactly; a linear classifier in the file (``fc``, ``classifier``,
  ``head``, ``head.fc``, ``last_linear``) is loaded into the head when it has the head's shape
  (e.g. the 1000-way ImageNet head of a 1000-class model), and otherwise left out so the head
  keeps its fresh initialisation (a new task).

Checkpoints that wrap the state dict (``{"state_dict": ...}``, ``{"model": ...}``) and
``DataParallel`` prefixes (``module.``) are unwrapped. ``.safetensors`` files are read too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from calib.io import atomic_save
from calib.models.classifier import Classifier

__all__ = [
    "IncompatibleWeightsError",
    "read_state_dict",
    "load_weights",
    "load_backbone_state_dict",
    "save_weights",
    "suggest_key_map",
    "apply_key_map",
    "HEAD_NAMES",
]

logger = logging.getLogger(__name__)

#: Module names under which timm and torchvision keep the final linear classifier.
HEAD_NAMES = ("fc", "classifier", "head", "head.fc", "last_linear")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
_SHOW = 5  # how many offending keys an error message lists


class IncompatibleWeightsError(ValueError):
    """A weights file does not fit the model (missing/unexpected keys or shape mismatch)."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.pth``/``.pt``/``.bin`` (torch) or ``.safetensors`` file.

    Tensors are loaded on the CPU with ``torch.load(weights_only=True)`` (no pickled code runs).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj = load_file(str(path), device="cpu")
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise IncompatibleWeightsError(
                f"{path}: cannot be read as a tensors-only torch checkpoint ({err})"
            ) from err
    while isinstance(obj, Mapping) and not _all_tensors(obj):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            raise IncompatibleWeightsError(
                f"{path}: not a state dict; top-level keys {sorted(map(str, obj))[:_SHOW]}, "
                f"none of {_WRAPPER_KEYS} holds one"
            )
        obj = inner
    if not isinstance(obj, Mapping):
        raise IncompatibleWeightsError(f"{path}: expected a state dict, got {type(obj).__name__}")
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_weights(
    model: Classifier,
    weights: str | os.PathLike | Mapping[str, torch.Tensor],
    *,
    head_names: Sequence[str] = HEAD_NAMES,
    key_map: Mapping[str, str] | None = None,
) -> bool:
    """Load a weights file (or state dict) into ``model``; see the module docstring for the kinds.

    Args:
        model: the classifier to fill (in place).
        weights: a path, or a state dict already in memory.
        head_names: where a backbone state dict may keep its classifier (checked in order).
        key_map: prefix renames applied to the file's keys first (``{"features.": "conv."}``);
            when a file does not fit, the error offers the one rename that would make it fit.

    Returns:
        Whether the head was loaded too (always true for a full ``Classifier`` state dict).

    Raises:
        FileNotFoundError: no file at ``weights``.
        IncompatibleWeightsError: keys missing or unexpected, or shapes that differ; the message
            names the file and the first offending keys.
    """
    if isinstance(weights, Mapping):
        state, source = dict(weights), "state dict"
    else:
        state, source = read_state_dict(weights), os.fspath(weights)
    if key_map:
        state = {apply_key_map(k, key_map): v for k, v in state.items()}
    if any(k.startswith(("backbone.", "head.")) for k in state):
        _load_exact(model, state, source)
        return True
    own_head = getattr(model, "head_path", None)  # set by calib.models.adapt_module
    if own_head is not None and own_head not in head_names:
        head_names = (own_head, *head_names)
    return load_backbone_state_dict(model, state, source=source, head_names=head_names)


def load_backbone_state_dict(
    model: Classifier,
    state: Mapping[str, torch.Tensor],
    *,
    source: str = "state dict",
    head_names: Sequence[str] = HEAD_NAMES,
) -> bool:
    """Load a timm/torchvision state dict: backbone exactly, classifier into the head if it fits.

    Returns:
        Whether the file's classifier was loaded into ``model.head``.
    """
    own_backbone = model.backbone.state_dict()
    head_name = next(
        (
            name
            for name in head_names
            if f"{name}.weight" in state
            and f"{name}.weight" not in own_backbone
            and state[f"{name}.weight"].ndim == 2
        ),
        None,
    )
    head_keys = {f"{head_name}.weight", f"{head_name}.bias"} if head_name else set()
    _load_exact(
        model.backbone, {k: v for k, v in state.items() if k not in head_keys}, source, "backbone "
    )
    if head_name is None:
        return False

    weight, bias = state[f"{head_name}.weight"], state.get(f"{head_name}.bias")
    if tuple(weight.shape) != tuple(model.head.weight.shape):
        logger.info(
            "%s: classifier %r has shape %s, the head %s; the head keeps its initialisation",
            source,
            head_name,
            tuple(weight.shape),
            tuple(model.head.weight.shape),
        )
        return False
    head_state = {"weight": weight}
    if model.head.bias is not None:
        if bias is None:
            raise IncompatibleWeightsError(
                f"{source}: classifier {head_name!r} has no bias but the model's head does"
            )
        head_state["bias"] = bias
    elif bias is not None:
        raise IncompatibleWeightsError(
            f"{source}: classifier {head_name!r} has a bias but the model's head has none"
        )
    _load_exact(model.head, head_state, source, f"head (from {head_name!r}) ")
    return True


def save_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Atomically write ``model.state_dict()`` (CPU tensors) to ``path``, for ``weights=``."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_save(path, lambda fh: torch.save(state, fh))


def _load_exact(
    module: nn.Module, state: Mapping[str, torch.Tensor], source: str, what: str = ""
) -> None:
    own = module.state_dict()
    # old torchvision files predate BatchNorm's counter; torch fills it in when absent
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    problems = []
    if missing:
        problems.append(f"{len(missing)} {what}keys missing from the file ({_first(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected {what}keys ({_first(unexpected)})")
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if mismatched:
        problems.append(f"{len(mismatched)} {what}shape mismatches ({_first(mismatched)})")
    if problems:
        hint = ""
        rename = suggest_key_map(missing, unexpected, own) if missing and unexpected else None
        if rename is not None:
            hint = (
                f"; the file's keys are the model's under another prefix: load it with "
                f"key_map={rename!r} (load_weights / create_model(weights_key_map=...))"
            )
        raise IncompatibleWeightsError(
            f"{source} does not fit the model: " + "; ".join(problems) + hint
        )
    module.load_state_dict(state, strict=False)


def suggest_key_map(
    missing: Sequence[str], unexpected: Sequence[str], own: Iterable[str] | None = None
) -> dict[str, str] | None:
    """One prefix rename ``{old: new}`` that turns every ``unexpected`` key into one of the
    model's keys ``own`` (default: ``missing``) and covers every ``missing`` one
    (``features.0.weight`` → ``conv.0.weight``: ``{"features.": "conv."}``), else None."""
    want, allowed = set(missing), set(missing if own is None else own)
    for u in unexpected[:20]:
        for m in missing:
            up, mp = u.split("."), m.split(".")
            k = 0
            while k < min(len(up), len(mp)) and up[-1 - k] == mp[-1 - k]:
                k += 1
            if k == 0:
                continue
            old, new = ".".join(up[: len(up) - k]), ".".join(mp[: len(mp) - k])
            old, new = (old + "." if old else ""), (new + "." if new else "")
            renamed = {apply_key_map(x, {old: new}) for x in unexpected}
            if want <= renamed <= allowed:
                return {old: new}
    return None


def apply_key_map(key: str, key_map: Mapping[str, str]) -> str:
    """``key`` with its first matching prefix of ``key_map`` replaced (longest prefix first)."""
    for old in sorted(key_map, key=len, reverse=True):
        if key.startswith(old):
            return key_map[old] + key[len(old) :]
    return key


def _first(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    return shown + (", ..." if len(items) > _SHOW else "")


def _all_tensors(obj: Mapping) -> bool:
    return all(isinstance(v, torch.Tensor) for v in obj.values())
