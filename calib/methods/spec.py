"""The fine-tuning method registry: each method is a function of a :class:`FinetuneContext`.

A method declares what it trains (``trains``), which target data it needs (``data``: the S
samples, or S ∪ U for an oracle) and its parameters with their defaults. The harness builds a
:class:`FinetuneContext` and calls ``METHODS.get(key).run(ctx)``, which

1. validates ``ctx.params`` (:meth:`MethodSpec.check_params`),
2. checks the dataset against the declaration: a ``"seen"`` method refuses samples outside S
   (no U data may leak into it), a ``"seen+absent"`` method refuses a dataset without U,
3. applies the head option (``head="cosine"``: :mod:`calib.methods.cosine_head`) to the model,
   to ``make_model`` and to the pre-trained weights, so the method sees one architecture,
4. calls the method and returns the fine-tuned model, every parameter's ``requires_grad``
   as it was before (a method freezes parts only while it trains).

A method trains only through ``ctx.train`` (the harness's resumable, checkpointed
:func:`calib.train.train` in a folder per ``tag``) and passes ``ctx.on_epoch_end`` to its main
training call.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from calib.data.domain import dataset_targets
from calib.data.split import ClassSplit
from calib.methods.cosine_head import to_cosine_head
from calib.methods.params import HEAD_CHECKS, HEAD_PARAMS, Check
from calib.methods.parts import state_copy
from calib.registry import Registry
from calib.train import EpochCallback, LossFn, TrainConfig, TrainResult

__all__ = [
    "TRAINING_DATA",
    "METHODS",
    "FinetuneContext",
    "MethodSpec",
    "TrainFn",
    "dataset_labels",
    "prepare_context",
    "register_method",
]

#: What a fine-tuning method trains on (``MethodSpec.data``): the S samples of the target
#: train set, or S ∪ U (uses U data). Not the data kinds of the γ selectors
#: (:data:`calib.selectors.DATA_KINDS`, the data a selector is fitted on).
TRAINING_DATA = ("seen", "seen+absent")


def __getattr__(name: str) -> Any:
    if name == "DATA_KINDS":  # the old name, shared with the selectors' data kinds
        warnings.warn(
            "calib.methods.DATA_KINDS is renamed TRAINING_DATA (what a fine-tuning method "
            "trains on); calib.selectors.DATA_KINDS are the data kinds of the γ selectors",
            DeprecationWarning,
            stacklevel=2,
        )
        return TRAINING_DATA
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class TrainFn(Protocol):
    """``ctx.train``: :func:`calib.train.train` in the stage folder ``<stage>/<tag>``, resumable."""

    def __call__(
        self,
        model: nn.Module,
        dataset: Dataset,
        config: TrainConfig,
        tag: str = "finetune",
        loss_fn: LossFn | None = None,
        on_epoch_end: EpochCallback | None = None,
    ) -> TrainResult: ...


@dataclass
class FinetuneContext:
    """Everything a method may use. The harness builds it; :meth:`MethodSpec.run` prepares it.

    Attributes:
        model: the pre-trained model, weights loaded; the method may train it in place.
        pretrained_state: a copy of the pre-trained weights (CPU tensors).
        make_model: builds a fresh model of the same architecture.
        dataset: the training samples the method declared (S, or S ∪ U).
        config: the fine-tuning settings.
        split: the class split (``.seen``, ``.absent``, ``.num_classes``).
        params: the method's parameters (validated again by ``run``).
        train: see :class:`TrainFn`; the ``tag`` names the sub-folder of the checkpoints.
        device: where training runs.
        on_epoch_end: the harness's per-epoch hook; methods pass it to their main training.
    """

    model: nn.Module
    pretrained_state: Mapping[str, torch.Tensor]
    make_model: Callable[[], nn.Module]
    dataset: Dataset
    config: TrainConfig
    split: ClassSplit
    params: dict
    train: TrainFn
    device: torch.device
    on_epoch_end: EpochCallback | None = None

    def pretrained_model(self) -> nn.Module:
        """A fresh model holding :attr:`pretrained_state`, on :attr:`device`, in eval mode."""
        model = self.make_model()
        model.load_state_dict(self.pretrained_state)
        return model.to(self.device).eval()


@dataclass(frozen=True, eq=False)
class MethodSpec:
    """One fine-tuning method: how to run it and what it declares.

    Attributes:
        run: ``run(ctx) -> model``: the fine-tuned model, same inputs and outputs as the
            pre-trained one (a cosine-head run returns the cosine-head architecture).
        trains: what trains, in words ("all", "backbone", "head", "head, then all", ...).
        data: ``"seen"`` (the S samples) or ``"seen+absent"`` (S ∪ U: uses U data).
        params: parameter name → default (read-only); the head options are always among them.
        uses_absent_data: true exactly for ``data == "seen+absent"``.
        reference: the published definition followed.
        name: the registry key.
        checks: parameter name → check (:mod:`calib.methods.params`), one per parameter.
        summary: the first line of the method's docstring.
        post_training: parameters applied after training (WiSE-FT's α): they change no
            checkpoint, so :meth:`training_params` leaves them out of a stage key.
        requires: module the method imports → how to install it (e.g. ``{"peft":
            "calib[lora]"}``); a run refuses the method before any work when one is missing.
    """

    run: Callable[[FinetuneContext], nn.Module]
    trains: str
    data: str
    params: Mapping[str, Any]
    uses_absent_data: bool = False
    reference: str = ""
    name: str = ""
    checks: Mapping[str, Check] = field(default_factory=dict)
    summary: str = ""
    post_training: tuple[str, ...] = ()
    requires: Mapping[str, str] = field(default_factory=dict)

    def check_params(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The defaults updated by ``params``, every value checked and normalised.

        Raises:
            ValueError: an unknown parameter or a bad value, naming the method, the parameter
                and the value given.
        """
        given = dict(params or {})
        for key in given:
            if key not in self.params:
                close = difflib.get_close_matches(key, list(self.params), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"fine-tuning method {self.name!r} has no parameter {key!r} (given "
                    f"{given[key]!r}); its parameters: {', '.join(self.params)}.{hint}"
                )
        out = {**self.params, **given}
        for key, check in self.checks.items():
            try:
                out[key] = check(out[key])
            except ValueError as err:
                raise ValueError(
                    f"fine-tuning method {self.name!r}: parameter {key!r} {err}"
                ) from None
        return out

    def training_params(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The checked parameters that determine the trained weights: the key of the method's
        training stages (the per-``tag`` checkpoint folders), which ``post_training``
        parameters (e.g. WiSE-FT's ``alpha``) leave unchanged."""
        p = self.check_params(params)
        return {k: v for k, v in p.items() if k not in self.post_training}

    def prepare(self, model: nn.Module, params: Mapping[str, Any] | None = None) -> nn.Module:
        """``model`` with the head the parameters ask for, in place (returned).

        ``head="cosine"`` replaces a linear head by a cosine head initialised from it
        (:func:`calib.methods.cosine_head.to_cosine_head`); a model that has one already, and
        every model under ``head="linear"``, is returned as it is. The harness applies this to
        the pre-trained model of a run too, so its "pre-trained" row and γ curve are those of
        the model the method starts from.
        """
        p = self.check_params(params)
        if p["head"] == "cosine":
            to_cosine_head(model, p["head_scale"], p["head_scale_learnable"])
        return model

    def prepare_context(self, ctx: FinetuneContext) -> FinetuneContext:
        """The context :attr:`run` hands to the method (see :func:`prepare_context`)."""
        return prepare_context(self, ctx)

    def describe(self) -> dict[str, Any]:
        """The declaration as plain values (for listings and results' metadata)."""
        return {
            "name": self.name,
            "trains": self.trains,
            "data": self.data,
            "uses_absent_data": self.uses_absent_data,
            "reference": self.reference,
            "params": dict(self.params),
            "post_training": list(self.post_training),
        }


METHODS: Registry[MethodSpec] = Registry("fine-tuning method")


def dataset_labels(dataset: Dataset) -> np.ndarray | None:
    """The labels of ``dataset`` without loading inputs (``.targets``, through Subset and
    ConcatDataset; a TensorDataset's second tensor), or ``None`` when it does not expose them."""
    try:
        return dataset_targets(dataset)
    except TypeError:
        if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
            return dataset.tensors[1].detach().cpu().numpy().astype(np.int64)
        return None


def _check_data(spec: MethodSpec, dataset: Dataset, split: ClassSplit) -> None:
    labels = dataset_labels(dataset)
    if labels is None:
        if spec.uses_absent_data:
            raise TypeError(
                f"fine-tuning method {spec.name!r} must check that its dataset holds absent-class "
                f"samples, but {type(dataset).__name__} exposes no labels (.targets)"
            )
        return  # the guard below needs labels; a dataset without them is trusted
    allowed = split.seen if spec.data == "seen" else split.seen + split.absent
    outside = np.unique(labels[~np.isin(labels, allowed)])
    if outside.size:
        which = "the seen classes S" if spec.data == "seen" else "S ∪ U"
        raise ValueError(
            f"fine-tuning method {spec.name!r} trains on {which} only (data={spec.data!r}), but "
            f"its dataset holds samples of class(es) {outside[:10].tolist()}"
            f"{' ...' if outside.size > 10 else ''}; pass the target training samples of {which}"
        )
    if spec.data == "seen+absent" and not np.isin(labels, split.absent).any():
        raise ValueError(
            f"fine-tuning method {spec.name!r} trains on the target data of S ∪ U (an upper "
            "bound that uses the absent classes), but its dataset has no sample of the absent "
            f"classes U ({len(split.absent)} classes); pass the training samples of S ∪ U"
        )


def _prepared_state(
    spec: MethodSpec, ctx: FinetuneContext, params: dict, make: Callable[[], nn.Module]
) -> Mapping[str, torch.Tensor]:
    """The pre-trained weights in the prepared architecture (given in either architecture)."""
    if params["head"] == "linear":
        return ctx.pretrained_state
    fresh = ctx.make_model()
    if set(ctx.pretrained_state) == set(fresh.state_dict()):  # plain architecture: convert
        fresh.load_state_dict(ctx.pretrained_state)
        return state_copy(spec.prepare(fresh, params))
    converted = make()
    converted.load_state_dict(ctx.pretrained_state)  # already converted by the harness
    return state_copy(converted)


def prepare_context(spec: MethodSpec, ctx: Any) -> FinetuneContext:
    """Steps 1–3 of :meth:`MethodSpec.run`: ``ctx`` with checked params, its dataset checked
    against the declaration and the head option applied (to ``ctx.model`` in place, to
    ``make_model`` and to ``pretrained_state``)."""
    if not isinstance(ctx, FinetuneContext):
        raise TypeError(f"a method runs on a FinetuneContext, got {type(ctx).__name__}")
    params = spec.check_params(ctx.params)
    _check_data(spec, ctx.dataset, ctx.split)

    def make() -> nn.Module:
        return spec.prepare(ctx.make_model(), params)

    return replace(
        ctx,
        model=spec.prepare(ctx.model, params),
        pretrained_state=_prepared_state(spec, ctx, params, make),
        make_model=make,
        params=params,
    )


def _thaw(model: nn.Module, flags: Mapping[str, bool]) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(flags.get(name, True))


def _run_method(spec: MethodSpec, fn: Callable[[FinetuneContext], nn.Module], ctx: Any):
    prepared = prepare_context(spec, ctx)
    flags = {name: p.requires_grad for name, p in prepared.model.named_parameters()}
    try:  # what a method froze to train is thawed again, also when it fails
        model = fn(prepared)
    finally:
        _thaw(prepared.model, flags)
    if not isinstance(model, nn.Module):
        raise TypeError(f"method {spec.name!r} returned a {type(model).__name__}, not a model")
    _thaw(model, flags)
    return model


def _check_method_fn(name: str, fn: Any) -> None:
    """``fn`` must be callable as ``fn(ctx)``: one argument, the :class:`FinetuneContext`."""
    if not callable(fn):
        raise TypeError(f"method {name!r}: register_method decorates a function, got {fn!r}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin: trusted
        return
    try:
        sig.bind(None)
    except TypeError as err:
        what = getattr(fn, "__qualname__", repr(fn))
        raise TypeError(
            f"method {name!r}: {what}{sig} cannot be called as fn(ctx) ({err}); a method "
            "takes exactly one argument, the FinetuneContext (its parameters are in ctx.params)"
        ) from None


def register_method(
    name: str,
    *,
    trains: str,
    data: str = "seen",
    params: Mapping[str, Any] | None = None,
    uses_absent_data: bool = False,
    reference: str = "",
    checks: Mapping[str, Check] | None = None,
    post_training: tuple[str, ...] = (),
    requires: Mapping[str, str] | None = None,
) -> Callable[[Callable[[FinetuneContext], nn.Module]], Callable[[FinetuneContext], nn.Module]]:
    """Register ``fn(ctx) -> model`` as method ``name``; returns ``fn`` unchanged.

    ``params`` are the method's own parameters (name → default); ``checks`` holds one check
    per parameter. The head options (:data:`calib.methods.params.HEAD_PARAMS`) are added.
    ``post_training`` names the parameters used only after training (see
    :meth:`MethodSpec.training_params`); ``requires`` the optional modules it imports, each
    with its install hint.

    Raises:
        ValueError: an unknown ``data`` kind, ``uses_absent_data`` inconsistent with it, a
            parameter without a check (or a check without a parameter), a default its check
            refuses, or a taken name. TypeError: ``fn`` cannot be called as ``fn(ctx)``.
    """
    if data not in TRAINING_DATA:
        raise ValueError(f"data must be one of {TRAINING_DATA}, got {data!r}")
    if uses_absent_data != (data == "seen+absent"):
        raise ValueError(
            f"uses_absent_data={uses_absent_data!r} contradicts data={data!r}: a method uses U "
            "data exactly when it trains on S ∪ U"
        )
    own, own_checks = dict(params or {}), dict(checks or {})
    if set(own) != set(own_checks):
        raise ValueError(
            f"method {name!r}: every parameter needs one check; parameters {sorted(own)}, "
            f"checks {sorted(own_checks)}"
        )
    if not set(post_training) <= set(own):
        raise ValueError(f"method {name!r}: post_training {post_training} are not its parameters")
    taken = set(own) & set(HEAD_PARAMS)
    if taken:
        raise ValueError(f"method {name!r}: {sorted(taken)} are the shared head options")

    def decorate(fn: Callable[[FinetuneContext], nn.Module]):
        if name in METHODS:
            raise ValueError(
                f"fine-tuning method {name!r} is already registered (registered: "
                f"{', '.join(METHODS.names())}): register yours under another name"
            )
        _check_method_fn(name, fn)
        holder: dict[str, MethodSpec] = {}

        @functools.wraps(fn)
        def run(ctx: FinetuneContext) -> nn.Module:
            return _run_method(holder["spec"], fn, ctx)

        spec = MethodSpec(
            run=run,
            trains=trains,
            data=data,
            params=MappingProxyType({**own, **HEAD_PARAMS}),
            uses_absent_data=uses_absent_data,
            reference=reference,
            name=name,
            checks=MappingProxyType({**own_checks, **HEAD_CHECKS}),
            summary=(fn.__doc__ or "").strip().split("\n")[0],
            post_training=tuple(post_training),
            requires=MappingProxyType(dict(requires or {})),
        )
        holder["spec"] = spec
        spec.check_params()  # the defaults must pass their own checks
        METHODS.register(name, spec)
        return fn

    return decorate
