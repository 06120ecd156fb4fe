"""The parts of a model a method trains or freezes: the head, the backbone, the norm layers.

"Head" is ``model.head`` (a :class:`calib.models.Classifier`, and timm models such as ViT)
or, failing that, the module a timm model's ``get_classifier()`` returns (``fc`` of a ResNet,
``classifier`` of an EfficientNet). "Backbone" is every other parameter of the model.

:func:`keep_in_eval` keeps chosen modules in eval mode while the training loop calls
``model.train()`` at every epoch: it overrides ``train`` on the model *instance* for the
duration of a ``with`` block, so the model's class, state-dict keys and checkpoints stay
those of the plain model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from torch import nn

__all__ = [
    "backbone_modules",
    "batchnorm_modules",
    "find_head",
    "keep_in_eval",
    "set_trainable",
    "state_copy",
]


def find_head(model: nn.Module) -> tuple[str, nn.Module]:
    """The head of ``model`` and its dotted name.

    Raises:
        TypeError: the model has neither a ``head`` submodule nor a timm ``get_classifier()``
            returning one of its submodules.
    """
    head = getattr(model, "head", None)
    if isinstance(head, nn.Module):
        return "head", head
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        clf = get_classifier()
        for name, module in model.named_modules():
            if module is clf and name:
                return name, module
    raise TypeError(
        f"cannot find the head of {type(model).__name__}: it needs a `head` submodule "
        "(calib.models.Classifier) or a timm get_classifier()"
    )


def set_trainable(module: nn.Module, trainable: bool) -> None:
    """Set ``requires_grad`` of every parameter of ``module``."""
    for p in module.parameters():
        p.requires_grad_(trainable)


def backbone_modules(model: nn.Module) -> list[nn.Module]:
    """Every submodule of ``model`` that is neither the head, inside it, nor an ancestor of it
    (the root included only when it is not the head's parent)."""
    head_name, _ = find_head(model)
    out = []
    for name, module in model.named_modules():
        if name == "":
            continue
        inside = name == head_name or name.startswith(head_name + ".")
        ancestor = head_name.startswith(name + ".")
        if not inside and not ancestor:
            out.append(module)
    return out


def batchnorm_modules(model: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers of ``model`` (the layers whose running statistics train mode moves)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def keep_in_eval(model: nn.Module, modules: Iterable[nn.Module]) -> Iterator[nn.Module]:
    """Within the block, ``model.train(mode)`` sets ``mode`` everywhere but leaves ``modules``
    in eval mode (their dropout off, their BatchNorm statistics fixed). On exit the override
    goes and ``model.train(model.training)`` puts every module back in the model's mode.

    Each listed module's own ``training`` flag is set, not its children's, so a caller lists
    every module that must stay in eval (e.g. :func:`backbone_modules`). The override lives on
    the instance and is removed on exit, even when the block raises.
    """
    frozen = list(modules)
    if "train" in vars(model):
        raise RuntimeError("keep_in_eval blocks cannot be nested on one model")
    cls_train = type(model).train

    def train(mode: bool = True) -> nn.Module:
        cls_train(model, mode)
        for m in frozen:
            m.training = False
        return model

    object.__setattr__(model, "train", train)
    try:
        model.train(model.training)
        yield model
    finally:
        object.__delattr__(model, "train")
        cls_train(model, model.training)  # a plain model again: one mode everywhere


def state_copy(model: nn.Module) -> dict:
    """A detached CPU copy of ``model.state_dict()``."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
