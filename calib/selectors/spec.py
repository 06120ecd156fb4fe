"""The declaration a γ selector is registered with: :class:`SelectorSpec`, :data:`SELECTORS`.

A selector states the kind of data it takes (a name in :data:`DATA_KINDS`, or None: its record,
a :class:`~calib.selectors.data_kinds.DataKind`, says what that data holds and what may be done
with it) and its parameters with their defaults; :class:`calib.LogitBiasCalibrator`, :func:`calib.calibrate` and
the run harness read that declaration to decide what to extract, what to pass and what to
refuse. The selectors themselves live in :mod:`calib.selectors` (which re-exports these names).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from calib.registry import Registry
from calib.selectors.checks import check_call_signature
from calib.selectors.data_kinds import (
    DATA_INPUTS,
    DATA_KINDS,
    FIT_INPUTS,
    DataKind,
    data_kind,
)
from calib.validation import check_average, check_gamma, check_real

__all__ = [
    "SELECTORS",
    "CRITERIA",
    "DATA_KINDS",
    "DATA_INPUTS",
    "FIT_INPUTS",
    "DataKind",
    "data_kind",
    "REQUIRED",
    "PseudoSplit",
    "SelectorSpec",
    "register_selector",
    "selector_spec",
    "selector_arguments",
    "check_pseudo_splits",
    "check_criterion",
    "check_prior",
    "check_gamma",
    "check_average",
]

#: Criteria that the curve-based selectors maximise (fractions in [0, 1]).
CRITERIA = ("acc_all", "hmean")


class _Required:
    """Default of a parameter that must be given (``fixed``'s ``gamma``)."""

    def __repr__(self) -> str:
        return "REQUIRED"


#: ``SelectorSpec.params`` default of a parameter without a default.
REQUIRED: Any = _Required()


@dataclass(frozen=True)
class SelectorSpec:
    """The declaration of one registered selector: what data it takes and its parameters.

    Attributes:
        fn: ``fn(**data, seen_classes=, absent_classes=, num_classes=, **params) ->
            (gamma, info)``; ``data`` holds the inputs of :attr:`inputs`.
        data: one of :data:`DATA_KINDS`, or None (the selector takes no data); given as a
            :class:`DataKind` record, its name is stored. :attr:`kind` is the record.
        params: parameter name -> default value (:data:`REQUIRED` when it has none).
        uses_absent_labels: True when the selector reads labels of absent-class samples
            (only ``oracle``: an upper bound, not a deployable method).
        description: one line for documentation and ``--help``.
        name: the registry key.
        checks: parameter name -> validator ``value -> value`` that raises ``ValueError``
            naming the parameter and the value; parameters without one are passed as given.
        sample_weight: whether ``fn`` takes ``sample_weight=`` ((N,) weights of the rows of
            ``logits``, None when the caller gives none); ``fit(sample_weight=...)`` is
            refused, with this reason, for a selector that does not declare it.
    """

    fn: Callable[..., tuple[float, dict]]
    data: str | None
    params: Mapping[str, Any] = field(default_factory=dict)
    uses_absent_labels: bool = False
    description: str = ""
    name: str = ""
    checks: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    sample_weight: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.data, DataKind):
            object.__setattr__(self, "data", self.data.name)
        try:
            data_kind(self.data)
        except ValueError as err:
            raise ValueError(f"selector {self.name!r}: {err}") from None
        if not callable(self.fn):
            raise TypeError(f"selector {self.name!r}: fn must be callable, got {self.fn!r}")
        reserved = {*FIT_INPUTS, "seen_classes", "absent_classes", "num_classes", "sample_weight"}
        clash = set(self.params) & reserved
        if clash:
            raise ValueError(
                f"selector {self.name!r}: parameter name(s) {sorted(clash)} are data keywords"
            )
        unknown = set(self.checks) - set(self.params)
        if unknown:
            raise ValueError(f"selector {self.name!r}: checks for undeclared {sorted(unknown)}")
        if self.sample_weight and "logits" not in self.inputs:
            raise ValueError(
                f"selector {self.name!r}: sample_weight weighs the rows of logits, but its data "
                f"({self.data!r}) has none"
            )
        weights = ["sample_weight"] if self.sample_weight else []
        keywords = [
            *self.inputs,
            *weights,
            "seen_classes",
            "absent_classes",
            "num_classes",
            *self.params,
        ]
        check_call_signature(
            self.fn,
            keywords,
            f"selector {self.name!r}",
            f"fn({', '.join(f'{k}=' for k in keywords)})",
        )

    @property
    def kind(self) -> DataKind:
        """The record of the declared data kind (:mod:`calib.selectors.data_kinds`)."""
        return data_kind(self.data)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The ``fit`` inputs of this selector's data kind, e.g. ``("logits", "labels")``."""
        return self.kind.inputs

    @property
    def needs_logits(self) -> bool:
        """Whether the selector reads logits (so ``calibrate`` must run the model)."""
        return "logits" in self.inputs

    @property
    def needs_labels(self) -> bool:
        """Whether the selector reads labels (so ``calibrate`` passes the loader's labels)."""
        return "labels" in self.inputs

    def data_text(self) -> str:
        """What the selector's data kind is, in words."""
        return self.kind.holds

    def refusal(self, name: str) -> str:
        """Why this selector refuses the ``fit`` input ``name`` (one it does not take)."""
        return self.kind.refusal(name)

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The full, validated parameter dict: ``params`` over the declared defaults.

        Raises:
            ValueError: a parameter the selector does not declare, a REQUIRED one missing, or
                a value its check refuses; the message names the parameter and the value.
        """
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            name = unknown[0]
            takes = sorted(self.params) or "none"
            raise ValueError(
                f"method {self.name!r} takes no parameter {name!r} (got {params[name]!r}); "
                f"its parameters: {takes}"
            )
        full = {**self.params, **params}
        for name, value in full.items():
            if value is REQUIRED:
                raise ValueError(f"method {self.name!r} needs {name}")
            check = self.checks.get(name)
            if check is not None:
                full[name] = check(value)
        return full


SELECTORS: Registry[SelectorSpec] = Registry("selector")


def register_selector(
    name: str,
    *,
    data: str | DataKind | None,
    params: Mapping[str, Any] | None = None,
    uses_absent_labels: bool = False,
    description: str = "",
    checks: Mapping[str, Callable[[Any], Any]] | None = None,
    override: bool = False,
    sample_weight: bool = False,
) -> Callable[[Callable[..., tuple[float, dict]]], Callable[..., tuple[float, dict]]]:
    """Decorator: register ``fn`` as the selector ``name`` with its declaration.

    Returns the function unchanged (so it can still be called directly). Unregister in tests
    with ``SELECTORS.unregister(name)``. ``sample_weight=True`` declares that ``fn`` takes
    ``sample_weight=`` (see :class:`SelectorSpec`).
    """

    def add(fn: Callable[..., tuple[float, dict]]) -> Callable[..., tuple[float, dict]]:
        if name in SELECTORS and not override:
            raise ValueError(
                f"selector {name!r} is already registered (registered: "
                f"{', '.join(SELECTORS.names())}): register yours under another name, or pass "
                "override=True to replace it"
            )
        spec = SelectorSpec(
            fn=fn,
            data=data,
            params=dict(params or {}),
            uses_absent_labels=uses_absent_labels,
            description=description,
            name=name,
            checks=dict(checks or {}),
            sample_weight=bool(sample_weight),
        )
        SELECTORS.register(name, spec, override=override)
        return fn

    return add


def selector_spec(method: Any, where: str = "method") -> SelectorSpec:
    """The :class:`SelectorSpec` registered as ``method``; ``ValueError`` naming it otherwise."""
    try:
        return SELECTORS.get(method)
    except (KeyError, TypeError) as err:
        raise ValueError(f"{where}={method!r}: {err.args[0]}") from None


def selector_arguments(name: str) -> tuple[frozenset[str], frozenset[str]]:
    """Deprecated: (required, optional) keyword names of the selector ``name``.

    Read ``SELECTORS.get(name)`` (a :class:`SelectorSpec`) instead.
    """
    warnings.warn(
        "selector_arguments is deprecated: read calib.selectors.SELECTORS.get(name), a "
        "SelectorSpec (.inputs, .params)",
        DeprecationWarning,
        stacklevel=2,
    )
    spec = SELECTORS.get(name)
    required = {*spec.inputs, "seen_classes"} | {k for k, v in spec.params.items() if v is REQUIRED}
    optional = {"absent_classes", "num_classes"} | {
        k for k, v in spec.params.items() if v is not REQUIRED
    }
    return frozenset(required), frozenset(optional)


@dataclass(frozen=True, eq=False)  # arrays inside: compare by identity
class PseudoSplit:
    """One pseudo split of Pseudo Cross-Validation (PCV).

    S is split into pseudo-seen and pseudo-absent classes; a model fine-tuned on the
    pseudo-seen classes only scores held-out S data. Only S data appear here.

    Attributes:
        logits: (N, C) scores of the held-out S samples by the pseudo-split model.
        labels: (N,) their labels; every one in ``seen_classes ∪ absent_classes`` and in S.
        seen_classes: the pseudo-seen classes (a subset of S) this model was fine-tuned on.
        absent_classes: the columns that receive γ in this run: the pseudo-absent classes
            plus every column absent from its fine-tuning, the real U included (deployment
            shifts U too, so the split must be scored that way).
            Both: column indices, or class names where the consumer is given
            ``class_names`` (``LogitBiasCalibrator.fit``, ``BiasCorrection.fit``,
            ``fit_temperature_pseudo_splits``); the selectors themselves take indices.
        sample_weight: optional (N,) weights of the held-out samples in the criterion
            (finite, ≥ 0, not all 0); None: every sample weighs 1.
    """

    logits: Any
    labels: Any
    seen_classes: Any
    absent_classes: Any
    sample_weight: Any = None


def check_pseudo_splits(pseudo_splits: Any) -> list[PseudoSplit]:
    """``pseudo_splits`` as a non-empty list of :class:`PseudoSplit`; ValueError/TypeError else."""
    if isinstance(pseudo_splits, PseudoSplit):
        raise TypeError(
            "pseudo_splits must be a list of PseudoSplit, got a single PseudoSplit: pass [split]"
        )
    if isinstance(pseudo_splits, (str, bytes, Mapping)) or not hasattr(pseudo_splits, "__iter__"):
        raise TypeError(
            f"pseudo_splits must be a list of PseudoSplit, got {type(pseudo_splits).__name__}"
        )
    splits = list(pseudo_splits)
    if not splits:
        raise ValueError("pseudo_splits is empty: pcv needs at least one pseudo split")
    for j, split in enumerate(splits):
        if not isinstance(split, PseudoSplit):
            raise TypeError(
                f"pseudo_splits[{j}] must be a PseudoSplit, got {type(split).__name__}"
                + (": build it as calib.PseudoSplit(**d)" if isinstance(split, Mapping) else "")
            )
    return splits


# ----------------------------------------------------------------------------- parameters


def check_criterion(criterion: Any) -> str:
    """``criterion`` if it is one of :data:`CRITERIA`; ValueError naming it otherwise."""
    if not isinstance(criterion, str) or criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    return criterion


def check_prior(prior: Any) -> float | None:
    """``prior``: None (the default share) or a real number in [0, 1]."""
    if prior is None:
        return None
    value = check_real(prior, "prior")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"prior must be a share in [0, 1], got {prior!r}")
    return value
