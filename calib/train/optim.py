"""Optimizers by name, with fine-tuning defaults and separate head / backbone learning rates.

Each :data:`OPTIMIZERS` entry is an :class:`OptimizerSpec`: the optimizer it builds (a
``torch.optim`` class directly, exactly as ``timm.optim.create_optimizer_v2(opt=...)`` would
build it, or timm's own for AdaBelief) and every default used when the caller leaves a
value out (backbone lr, head lr, weight decay, momentum, further constructor arguments). This
registry is the one place those numbers live: ``TrainConfig`` resolves its ``None`` fields to
them (:func:`resolve_optimizer_settings`) and ``conf/optimizer/*.yaml`` leave them ``null``.

The defaults follow the paper's optimizer study (Mai et al., NeurIPS 2024) and are the ones
behind the measured optimizer sweep in ``benchmarks/RESULTS.md``: SGD with Nesterov momentum
0.9, lr 1e-4 (backbone) / 1e-3 (head), weight decay 5e-4; the adaptive optimizers a 10× smaller
lr and no L2 decay; Adadelta's lr multiplies its own adaptive step, so its scale is ~1.

:func:`create_optimizer` splits the parameters into up to four groups::

    backbone            lr,      weight decay
    backbone_no_decay   lr,      no weight decay
    head                lr_head, weight decay
    head_no_decay       lr_head, no weight decay

"head" is the submodule ``getattr(model, head_name)`` (every parameter is "backbone" when the
model has no such attribute). Biases, normalisation weights (any parameter with fewer than 2
dimensions, the timm convention) and names listed by ``model.no_weight_decay()`` get no weight
decay: decaying them only shrinks scales and shifts that the data set, and is known to hurt.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import torch
from torch import nn

from calib.registry import Registry

__all__ = [
    "OPTIMIZERS",
    "OptimizerSpec",
    "create_optimizer",
    "optimizer_arguments",
    "refused_arguments",
    "resolve_optimizer_settings",
    "split_parameters",
]

#: Optimizer arguments with a field of their own (never in ``kwargs``).
OWN_FIELDS = ("lr", "lr_head", "weight_decay", "momentum")
#: Arguments :func:`create_optimizer` sets itself.
RESERVED_KWARGS = ("params", "opt", "filter_bias_and_bn", "param_group_fn")


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def _check_nonnegative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


def _check_momentum_range(name: str, value: Any) -> float:
    value = _check_nonnegative(name, value)
    if value >= 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return value


@dataclass(frozen=True)
class OptimizerSpec:
    """How to build one optimizer and its defaults (every argument after ``timm_name`` by keyword).

    Attributes:
        timm_name: the ``opt=`` name for ``timm.optim.create_optimizer_v2``.
        torch_class: the ``torch.optim`` class that timm name builds, when it is one: built
            directly then (``cls(groups, lr=lr, weight_decay=0.0, **kwargs)``, what timm calls),
            which spares importing timm and, through it, torchvision (~3 s). ``kwargs`` must
            then hold every default timm would add (e.g. adagrad's ``eps=1e-8``).
        lr: default learning rate of the backbone.
        lr_head: default learning rate of the head; ``None`` at construction = ``lr``.
        weight_decay: default weight decay (L2 for the coupled optimizers, decoupled for AdamW).
        momentum: default momentum; ``None`` for an optimizer that has none.
        kwargs: further constructor defaults (e.g. ``nesterov``), overridable by the caller's.
        description: one line for listings.

    Raises:
        ValueError: a default out of range (lr, lr_head not > 0, weight_decay < 0, momentum
            outside [0, 1)) or ``kwargs`` setting a field of its own or a reserved argument.
    """

    timm_name: str
    _: KW_ONLY
    torch_class: str | None = None
    lr: float
    lr_head: float | None = None
    weight_decay: float = 0.0
    momentum: float | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if self.torch_class is not None and not isinstance(
            getattr(torch.optim, self.torch_class, None), type
        ):
            raise ValueError(
                f"OptimizerSpec.torch_class must name a torch.optim class, got {self.torch_class!r}"
            )
        _check_positive("OptimizerSpec.lr", self.lr)
        if self.lr_head is None:
            object.__setattr__(self, "lr_head", self.lr)
        _check_positive("OptimizerSpec.lr_head", self.lr_head)
        _check_nonnegative("OptimizerSpec.weight_decay", self.weight_decay)
        if self.momentum is not None:
            _check_momentum_range("OptimizerSpec.momentum", self.momentum)
        taken = set(self.kwargs) & {*OWN_FIELDS, *RESERVED_KWARGS}
        if taken:
            raise ValueError(f"OptimizerSpec.kwargs must not set {sorted(taken)}")
        object.__setattr__(self, "kwargs", dict(self.kwargs))

    @property
    def has_momentum(self) -> bool:
        return self.momentum is not None

    @property
    def defaults(self) -> Mapping[str, Any]:
        """The former name of :attr:`kwargs`."""
        return self.kwargs


OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer")

OPTIMIZERS.register(
    "sgd",
    OptimizerSpec(
        "sgd",
        torch_class="SGD",
        lr=1e-4,
        lr_head=1e-3,
        weight_decay=5e-4,
        momentum=0.9,
        kwargs={"nesterov": True},
        description="SGD with Nesterov momentum (the paper's fine-tuning optimizer)",
    ),
)
OPTIMIZERS.register(
    "adam",
    OptimizerSpec(
        "adam", torch_class="Adam", lr=1e-5, lr_head=1e-4, description="Adam (L2 weight decay)"
    ),
)
# AdamW's decay is decoupled and multiplied by lr each step (1e-5 * 1e-2 = 1e-7 per step), so
# its coefficient is on a different scale from the L2 ones.
OPTIMIZERS.register(
    "adamw",
    OptimizerSpec(
        "adamw",
        torch_class="AdamW",
        lr=1e-5,
        lr_head=1e-4,
        weight_decay=1e-2,
        description="AdamW (decoupled decay)",
    ),
)
OPTIMIZERS.register(
    "adabelief",
    OptimizerSpec(
        "adabelief",
        lr=1e-5,
        lr_head=1e-4,
        kwargs={"rectify": False},
        description="AdaBelief (timm), no rectification",
    ),
)
OPTIMIZERS.register(
    "adadelta",
    OptimizerSpec(
        "adadelta",
        torch_class="Adadelta",
        lr=1e-1,
        lr_head=1.0,
        description="Adadelta (lr scales its own step)",
    ),
)
OPTIMIZERS.register(
    "adagrad",
    OptimizerSpec(
        "adagrad",
        torch_class="Adagrad",
        lr=1e-4,
        lr_head=1e-3,
        kwargs={"eps": 1e-8},  # timm's default for adagrad (torch's is 1e-10)
        description="AdaGrad",
    ),
)
OPTIMIZERS.register(
    "rmsprop",
    OptimizerSpec(
        "rmsprop",
        torch_class="RMSprop",
        lr=1e-5,
        lr_head=1e-4,
        momentum=0.0,
        kwargs={"alpha": 0.99},
        description="RMSprop (torch defaults: alpha 0.99, no momentum)",
    ),
)


def resolve_optimizer_settings(
    name: str,
    *,
    lr: float | None = None,
    lr_head: float | None = None,
    weight_decay: float | None = None,
    momentum: float | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The settings optimizer ``name`` trains with: the given values, the registry's for ``None``.

    The rule (the one :class:`~calib.train.TrainConfig` and :func:`create_optimizer` share):

    * ``lr=None`` → ``spec.lr``;
    * ``lr_head=None`` → ``spec.lr_head`` when ``lr`` is also ``None``, else ``lr`` (one given
      lr means one lr everywhere);
    * ``weight_decay=None`` / ``momentum=None`` → the spec's (``None`` stays for an optimizer
      without momentum);
    * ``kwargs`` are merged over ``spec.kwargs``; when the momentum is 0 and ``nesterov`` comes
      from the spec only, it is set to ``False`` (torch refuses Nesterov without momentum).

    Resolving resolved settings returns them unchanged. Values are not range-checked here.

    Returns:
        ``{"lr", "lr_head", "weight_decay", "momentum", "kwargs"}``.

    Raises:
        KeyError: unknown ``name`` (lists the known keys).
    """
    spec = OPTIMIZERS.get(name)
    given = dict(kwargs or {})
    if lr_head is None:
        lr_head = spec.lr_head if lr is None else lr
    resolved_momentum = spec.momentum if momentum is None else momentum
    merged = {**spec.kwargs, **given}
    if resolved_momentum == 0 and "nesterov" in merged and "nesterov" not in given:
        merged["nesterov"] = False
    return {
        "lr": spec.lr if lr is None else lr,
        "lr_head": lr_head,
        "weight_decay": spec.weight_decay if weight_decay is None else weight_decay,
        "momentum": resolved_momentum,
        "kwargs": merged,
    }


@functools.cache
def _constructor_arguments(name: str) -> tuple[str, ...]:
    spec = OPTIMIZERS.get(name)
    if spec.torch_class is not None:
        cls = getattr(torch.optim, spec.torch_class)
    else:
        from timm.optim import get_optimizer_info  # heavy: imports torchvision

        cls = get_optimizer_info(spec.timm_name).opt_class
    params = inspect.signature(cls).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(sorted(p.name for p in params if p.kind in kinds and p.name != "params"))


def optimizer_arguments(name: str) -> tuple[str, ...]:
    """The constructor arguments optimizer ``name`` takes as ``kwargs``, sorted.

    Its class's keyword arguments less ``params`` and the ones with a field of their own
    (``lr``, ``weight_decay``, ``momentum``): e.g. ``("dampening", "differentiable", ...,
    "nesterov")`` for sgd. AdaBelief's class comes from timm, imported on the first call.

    Raises:
        KeyError: unknown ``name`` (lists the known keys).
    """
    return tuple(a for a in _constructor_arguments(name) if a not in OWN_FIELDS)


def refused_arguments(name: str, *, momentum: Any = None, kwargs: Iterable[str] = ()) -> list[str]:
    """The arguments optimizer ``name`` does not take: ``"momentum"`` (when ``momentum`` is not
    ``None`` and the optimizer has none) and the names in ``kwargs`` its constructor lacks.

    Names among the registry's own ``spec.kwargs`` are taken without a look at the class, so
    the default settings never import timm.

    Raises:
        KeyError: unknown ``name`` (lists the known keys).
    """
    spec = OPTIMIZERS.get(name)
    refused = [] if momentum is None or spec.has_momentum else ["momentum"]
    unknown = [k for k in kwargs if k not in spec.kwargs]
    if unknown:
        taken = optimizer_arguments(name)
        refused += [k for k in unknown if k not in taken]
    return refused


def describe_arguments(name: str) -> str:
    """What optimizer ``name`` takes, for a message: its fields, then its other arguments."""
    fields = ["lr", "lr_head", "weight_decay"] + (
        ["momentum"] if OPTIMIZERS.get(name).has_momentum else []
    )
    return f"{', '.join(fields)} and the kwargs {', '.join(optimizer_arguments(name))}"


def check_momentum(name: str, momentum: Any) -> float | None:
    """Validate a momentum value for optimizer ``name``: in [0, 1), and only if it has one."""
    if momentum is None:
        return None
    spec = OPTIMIZERS.get(name)
    if not spec.has_momentum:
        raise ValueError(f"optimizer {name!r} takes no momentum, got momentum={momentum!r}")
    return _check_momentum_range("momentum", momentum)


def split_parameters(
    model: nn.Module, head_name: str | None = "head"
) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters of ``model`` in the four groups described in the module docstring.

    Returns:
        ``{"backbone": [...], "backbone_no_decay": [...], "head": [...], "head_no_decay": [...]}``
        (lists may be empty). Frozen parameters (``requires_grad=False``) are left out.

    Raises:
        TypeError: ``getattr(model, head_name)`` exists but is not an ``nn.Module``.
    """
    head = getattr(model, head_name, None) if head_name else None
    if head is not None and not isinstance(head, nn.Module):
        raise TypeError(
            f"model.{head_name} is a {type(head).__name__}, not an nn.Module; "
            "pass head_name=None to treat every parameter as backbone"
        )
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    skip = set(getattr(model, "no_weight_decay", lambda: ())())

    groups: dict[str, list[nn.Parameter]] = {
        "backbone": [],
        "backbone_no_decay": [],
        "head": [],
        "head_no_decay": [],
    }
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "head" if id(param) in head_ids else "backbone"
        no_decay = param.ndim <= 1 or name in skip
        groups[f"{part}_no_decay" if no_decay else part].append(param)
    return groups


def _param_groups(
    model: nn.Module, head_name: str | None, lr: float, lr_head: float, weight_decay: float
) -> list[dict[str, Any]]:
    """The non-empty groups of :func:`split_parameters` with their lr and weight decay."""
    groups = [
        {
            "name": group_name,
            "params": params,
            "lr": lr_head if group_name.startswith("head") else lr,
            "weight_decay": 0.0 if group_name.endswith("no_decay") else weight_decay,
        }
        for group_name, params in split_parameters(model, head_name).items()
        if params
    ]
    if not groups:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    return groups


def create_optimizer(
    name: str,
    model: nn.Module,
    *,
    lr: float | None = None,
    lr_head: float | None = None,
    weight_decay: float | None = None,
    momentum: float | None = None,
    head_name: str | None = "head",
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Build optimizer ``name`` (an :data:`OPTIMIZERS` key) over ``model``'s trainable parameters.

    Args:
        name: optimizer key: sgd, adam, adamw, adabelief, adadelta, adagrad, rmsprop.
        model: any ``nn.Module``.
        lr: learning rate of the backbone groups; ``None`` = the registry default.
        lr_head: learning rate of the head groups; ``None`` = the registry's head lr when ``lr``
            is ``None`` too, else ``lr`` (see :func:`resolve_optimizer_settings`).
        weight_decay: weight decay of the decaying groups; ``None`` = the registry default.
            Biases and normalisation parameters never decay.
        momentum: for sgd and rmsprop; ``None`` = the registry default. Error for the others.
        head_name: attribute naming the head submodule; ``None`` = no head split.
        **kwargs: further optimizer arguments (``nesterov``, ``betas``, ``eps``, ...), overriding
            the registry's.

    Returns:
        The optimizer. Each param group carries a ``"name"`` key (``"backbone"``, ``"head"``, ...).

    Raises:
        KeyError: unknown ``name`` (lists the known keys).
        ValueError: lr or lr_head not > 0, weight_decay < 0, momentum outside [0, 1) or given
            to an optimizer without one, or a model with no trainable parameters.
    """
    spec = OPTIMIZERS.get(name)  # an unknown name fails first, listing the known ones
    for reserved in RESERVED_KWARGS:
        if reserved in kwargs:
            raise ValueError(f"{reserved!r} is set by create_optimizer; do not pass it")
    resolved = resolve_optimizer_settings(
        name,
        lr=None if lr is None else _check_positive("lr", lr),
        lr_head=None if lr_head is None else _check_positive("lr_head", lr_head),
        weight_decay=None
        if weight_decay is None
        else _check_nonnegative("weight_decay", weight_decay),
        momentum=check_momentum(name, momentum),
        kwargs=kwargs,
    )
    lr, lr_head, weight_decay = resolved["lr"], resolved["lr_head"], resolved["weight_decay"]
    options: dict[str, Any] = dict(resolved["kwargs"])
    if resolved["momentum"] is not None:
        options["momentum"] = resolved["momentum"]

    groups = _param_groups(model, head_name, lr, lr_head, weight_decay)
    try:
        if spec.torch_class is not None:
            cls = getattr(torch.optim, spec.torch_class)
            return cls(groups, lr=lr, weight_decay=0.0, **options)
        from timm.optim import create_optimizer_v2  # heavy: imports torchvision

        return create_optimizer_v2(groups, opt=spec.timm_name, lr=lr, **options)
    except TypeError as err:
        raise TypeError(
            f"optimizer {name!r} rejected its arguments {sorted(options)}: {err}"
        ) from err
