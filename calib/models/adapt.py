"""Your own ``nn.Module`` as a :class:`~calib.models.Classifier`: name its linear head, keep the rest.

calib's fine-tuning methods, NCM and the harness need a model split into a feature backbone and
one linear head over every class. :func:`adapt_module` makes that split on any module whose
forward ends with a linear layer (``logits = head(features)``), without rewriting it::

    net = MyNet()                               # any nn.Module; net.fc is its nn.Linear head
    model = adapt_module(net, head="fc", data_config=make_data_config((1, 16, 16), [0.5], [0.5]))
    model(x) == net(x)                          # the same logits; features = fc's input

The backbone is ``net`` itself with the head replaced by ``nn.Identity``, so its state dict
keeps ``net``'s own names: a checkpoint of ``net`` (``conv.0.weight``, ..., ``fc.weight``) loads
with ``create_model(..., weights=PATH)`` as it is (the head is read from ``fc.*``).

A module whose output is not the logits tensor itself (a Hugging Face model's ``ModelOutput``,
a tuple) names the entry that holds them, e.g. ``output_key="logits"``::

    vit = ViTForImageClassification(config)     # vit.classifier: its nn.Linear head
    model = adapt_module(vit, head="classifier", data_config=..., output_key="logits")

The adapted model is then a plain :class:`~calib.models.Classifier` (tensor in, logits out), so
calib-run trains and scores it like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from calib.extract import evaluating, output_logits
from calib.models.classifier import Classifier

__all__ = ["adapt_module"]


class _OutputEntry:
    """A forward hook that makes a module return the entry ``output_key`` of its output (see
    :func:`calib.extract.output_logits`). A class, not a closure, so the model pickles."""

    def __init__(self, output_key: str | int) -> None:
        self.output_key = output_key

    def __call__(self, module: nn.Module, args: Any, out: Any) -> Any:
        return output_logits(out, self.output_key)


def _parent_and_leaf(module: nn.Module, path: str) -> tuple[nn.Module, str]:
    *parents, leaf = path.split(".")
    owner = module
    for i, part in enumerate(parents):
        child = getattr(owner, part, None) if not part.isdigit() else owner[int(part)]
        if not isinstance(child, nn.Module):
            raise ValueError(f"head={path!r}: {'.'.join(parents[: i + 1])!r} is no submodule")
        owner = child
    return owner, leaf


def adapt_module(
    module: nn.Module,
    head: str,
    data_config: Mapping[str, Any],
    *,
    name: str = "",
    check_input: torch.Tensor | None = None,
    output_key: str | int | None = None,
) -> Classifier:
    """``module`` as a :class:`~calib.models.Classifier` whose head is its linear layer ``head``.

    Args:
        module: any model whose forward returns ``head(features)`` as its last step; it is
            changed in place (its head becomes ``nn.Identity``) and becomes the backbone.
        head: the dotted name of that ``nn.Linear`` (``"fc"``, ``"classifier.1"``, ...), as in
            ``module.named_modules()``.
        data_config: the preprocessing it expects (:func:`calib.models.make_data_config`).
        name: the model key, for logs and results.
        check_input: an example batch ``(N, ...)``: the adapted model must then return what
            ``module`` returned on it (up to float rounding), else the head was not its last
            step and the split would change the model — refused.
        output_key: for a module whose output is not the logits tensor: the entry holding
            them (``"logits"`` of a Hugging Face ``ModelOutput`` or a dict, ``0`` of a tuple).
            With the head an identity, that entry holds the features; the backbone returns it.

    Raises:
        ValueError: ``head`` names no submodule, or not an ``nn.Linear`` (the modules that are
            listed), or the adapted model computes something else on ``check_input``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    if output_key is not None and (
        isinstance(output_key, bool) or not isinstance(output_key, (str, int)) or output_key == ""
    ):
        raise ValueError(
            f"output_key must be a key (e.g. 'logits') or a tuple index, got {output_key!r}"
        )
    found = dict(module.named_modules())
    layer = found.get(head)
    if not isinstance(layer, nn.Linear):
        linears = [n for n, m in found.items() if isinstance(m, nn.Linear)]
        what = "no submodule" if layer is None else f"a {type(layer).__name__}"
        raise ValueError(
            f"head={head!r} is {what} of {type(module).__name__}; the head must be its final "
            f"nn.Linear (its nn.Linear layers: {linears or 'none'})"
        )
    expected = None
    if check_input is not None:
        with evaluating(module), torch.no_grad():
            expected = module(check_input)
        if not isinstance(expected, torch.Tensor) and output_key is None:
            raise ValueError(
                f"{type(module).__name__} returns a {type(expected).__name__}, not a tensor: "
                "name the entry that holds the logits with output_key=... (e.g. 'logits')"
            )
        if output_key is not None:
            expected = output_logits(expected, output_key)
    owner, leaf = _parent_and_leaf(module, head)
    if leaf.isdigit():
        owner[int(leaf)] = nn.Identity()
    else:
        setattr(owner, leaf, nn.Identity())
    if output_key is not None:
        module.register_forward_hook(_OutputEntry(output_key))
    model = Classifier(module, layer, data_config, name=name or type(module).__name__)
    model.head_path = head
    if expected is not None:
        with evaluating(model), torch.no_grad():
            got = model(check_input)
        tol = 16 * torch.finfo(expected.dtype).eps * float(expected.abs().max().clamp(min=1))
        if got.shape != expected.shape or not torch.allclose(got, expected, rtol=0, atol=tol):
            raise ValueError(
                f"head={head!r}: {type(module).__name__}'s forward does not end with that layer "
                "(the adapted model returns other logits on check_input); name the layer that "
                "computes the logits from the final features"
            )
    return model
