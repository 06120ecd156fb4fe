"""γ selectors: the ways to choose the bias added to the absent-class logits.

Every selector is a plain function that returns ``(gamma, info)``: γ in logit units (a finite
float) and a dict of details (the criterion reached, the data it used, ...). It is registered
with :func:`register_selector`, which stores ONE declaration, a :class:`SelectorSpec`, in
:data:`SELECTORS`: the kind of data the selector takes (one of :data:`DATA_KINDS`) and its
parameters with their defaults. :class:`calib.LogitBiasCalibrator`, :func:`calib.calibrate` and
the run harness read that declaration to decide what to extract, what to pass and what to
refuse; nothing inspects signatures or branches on names.

==========  ======================  ========================================  =============
key         data kind               what it is                                parameters
==========  ======================  ========================================  =============
``alg``     ``finetune_train``      fine-tuning training logits + labels (S)  —
``oracle``  ``target_labelled``     labelled target data with U (upper bound) ``criterion``
``pcv``     ``pseudo_splits``       :class:`PseudoSplit` s: held-out S data   ``criterion``
``prior``   ``target_unlabelled``   unlabelled target logits, no labels       ``prior``
``fixed``   None                    nothing                                   ``gamma``
==========  ======================  ========================================  =============

A selector is called as ``fn(**data, seen_classes=S, absent_classes=U, num_classes=C,
**params)``, where ``data`` holds the fit inputs of its kind (:data:`DATA_INPUTS`: ``logits``
(N, C), ``labels`` (N,), ``pseudo_splits``). Every γ a selector returns obeys the decision rule
of :mod:`calib._gaps` (a sample moves to U exactly when γ > its gap), and the curve-based
selectors are exact: they optimise over all of ℝ, not over a grid.

Registering your own::

    @calib.selectors.register_selector(
        "median_gap", data="target_unlabelled", params={"q": 0.5}, description="..."
    )
    def select_median_gap(logits, seen_classes, absent_classes, num_classes, q):
        ...
        return gamma, {"method": "median_gap"}

    calib.LogitBiasCalibrator("median_gap", options={"q": 0.4}).fit(logits, seen_classes=S)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._checks import check_classes, check_labels, check_logits, check_real
from ._gaps import compute_gaps
from .curve import SeenAbsentCurve, seen_absent_curve
from .registry import Registry

__all__ = [
    "SELECTORS",
    "CRITERIA",
    "DATA_KINDS",
    "DATA_INPUTS",
    "FIT_INPUTS",
    "REQUIRED",
    "PseudoSplit",
    "SelectorSpec",
    "register_selector",
    "selector_spec",
    "check_pseudo_splits",
    "select_alg",
    "select_oracle",
    "select_pcv",
    "select_prior",
    "select_fixed",
    "selector_arguments",
]

#: The kinds of data a selector may declare (``SelectorSpec.data``), or None for no data.
DATA_KINDS = ("finetune_train", "target_labelled", "target_unlabelled", "pseudo_splits")

#: The ``fit`` inputs that each data kind consists of.
DATA_INPUTS: Mapping[str | None, tuple[str, ...]] = {
    "finetune_train": ("logits", "labels"),
    "target_labelled": ("logits", "labels"),
    "target_unlabelled": ("logits",),
    "pseudo_splits": ("pseudo_splits",),
    None: (),
}

#: Every data input of ``LogitBiasCalibrator.fit`` that a selector may take or refuse.
FIT_INPUTS = ("logits", "labels", "pseudo_splits")

# What each kind is, as said in messages ("method 'x' needs labels: it reads ...").
_KIND_TEXT: Mapping[str | None, str] = {
    "finetune_train": "the logits and labels of the fine-tuning training samples (labels in S)",
    "target_labelled": "labelled target logits, absent classes included",
    "target_unlabelled": "unlabelled target logits (labels never reach it)",
    "pseudo_splits": "pseudo_splits: held-out S data scored by pseudo-split models",
    None: "no data (num_classes gives the head's width)",
}

# Why an input is refused, by the kind of the selector that refuses it.
_REFUSALS: Mapping[tuple[str | None, str], str] = {
    ("target_unlabelled", "labels"): "it is label-free: labels never reach it; pass unlabelled "
    "logits only",
    ("pseudo_splits", "logits"): "it scores the held-out S data inside pseudo_splits",
    ("pseudo_splits", "labels"): "it scores the held-out S data inside pseudo_splits",
    (None, "logits"): "it takes no data: pass num_classes to say how many columns the head has",
    (None, "labels"): "it takes no data",
}

#: Criteria that the curve-based selectors maximise (fractions in [0, 1]).
CRITERIA = ("acc_all", "hmean")

#: Two criterion values closer than this count as a tie (float rounding of averages).
_TIE_ATOL = 1e-12


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
        data: one of :data:`DATA_KINDS`, or None (the selector takes no data).
        params: parameter name -> default value (:data:`REQUIRED` when it has none).
        uses_absent_labels: True when the selector reads labels of absent-class samples
            (only ``oracle``: an upper bound, not a deployable method).
        description: one line for documentation and ``--help``.
        name: the registry key.
        checks: parameter name -> validator ``value -> value`` that raises ``ValueError``
            naming the parameter and the value; parameters without one are passed as given.
    """

    fn: Callable[..., tuple[float, dict]]
    data: str | None
    params: Mapping[str, Any] = field(default_factory=dict)
    uses_absent_labels: bool = False
    description: str = ""
    name: str = ""
    checks: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data not in DATA_INPUTS:
            raise ValueError(
                f"selector {self.name!r}: data must be one of {DATA_KINDS} or None, got "
                f"{self.data!r}"
            )
        if not callable(self.fn):
            raise TypeError(f"selector {self.name!r}: fn must be callable, got {self.fn!r}")
        clash = set(self.params) & {*FIT_INPUTS, "seen_classes", "absent_classes", "num_classes"}
        if clash:
            raise ValueError(
                f"selector {self.name!r}: parameter name(s) {sorted(clash)} are data keywords"
            )
        unknown = set(self.checks) - set(self.params)
        if unknown:
            raise ValueError(f"selector {self.name!r}: checks for undeclared {sorted(unknown)}")

    @property
    def inputs(self) -> tuple[str, ...]:
        """The ``fit`` inputs of this selector's data kind, e.g. ``("logits", "labels")``."""
        return DATA_INPUTS[self.data]

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
        return _KIND_TEXT[self.data]

    def refusal(self, name: str) -> str:
        """Why this selector refuses the ``fit`` input ``name`` (one it does not take)."""
        return _REFUSALS.get((self.data, name), f"it reads {self.data_text()}")

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
    data: str | None,
    params: Mapping[str, Any] | None = None,
    uses_absent_labels: bool = False,
    description: str = "",
    checks: Mapping[str, Callable[[Any], Any]] | None = None,
    override: bool = False,
) -> Callable[[Callable[..., tuple[float, dict]]], Callable[..., tuple[float, dict]]]:
    """Decorator: register ``fn`` as the selector ``name`` with its declaration.

    Returns the function unchanged (so it can still be called directly). Unregister in tests
    with ``SELECTORS.unregister(name)``.
    """

    def add(fn: Callable[..., tuple[float, dict]]) -> Callable[..., tuple[float, dict]]:
        spec = SelectorSpec(
            fn=fn,
            data=data,
            params=dict(params or {}),
            uses_absent_labels=uses_absent_labels,
            description=description,
            name=name,
            checks=dict(checks or {}),
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
    """

    logits: Any
    labels: Any
    seen_classes: Any
    absent_classes: Any


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


def check_gamma(gamma: Any) -> float:
    """``gamma`` as a finite Python float; strings, booleans, NaN and ±inf are refused."""
    return check_real(gamma, "gamma", finite=True)


# ----------------------------------------------------------------------------- helpers


def _check_width(num_classes: int | None, width: int) -> None:
    """``num_classes``, when given, must be the logits' width."""
    if num_classes is not None and int(num_classes) != width:
        raise ValueError(f"num_classes={num_classes!r} but the logits have {width} columns")


def _check_groups(
    y: np.ndarray, seen: np.ndarray, absent: np.ndarray, criterion: str, where: str = ""
) -> None:
    """``hmean`` is undefined unless the labels cover both S and U: say so before any curve."""
    if criterion != "hmean":
        return
    for group, classes in (("seen", seen), ("absent", absent)):
        if not np.isin(y, classes).any():
            raise ValueError(
                f"{where}criterion 'hmean' needs samples of both groups, but none has a label "
                f"in the {group} classes"
            )


def _criterion_values(curve: SeenAbsentCurve, criterion: str) -> np.ndarray:
    """The criterion at every point of ``curve`` (a numpy curve), shape (M + 1,)."""
    if criterion == "acc_all":
        return np.asarray(curve.acc_all, dtype=np.float64)
    s = np.asarray(curve.acc_seen, dtype=np.float64)
    a = np.asarray(curve.acc_absent, dtype=np.float64)
    total = s + a
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2 * s * a / total, 0.0)


def _interior(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """One γ inside each interval ``(low, high]``: its midpoint.

    Unbounded ends: ``(-inf, h]`` → ``h - 1``; ``(l, +inf)`` → ``l + 1``; ℝ → 0. Where the
    midpoint rounds onto ``low`` (adjacent floats), ``high`` is taken: it belongs to the interval.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mid = low / 2 + high / 2
        above = np.maximum(low + 1.0, np.nextafter(low, np.inf))
    mid = np.where(np.isneginf(low), high - 1.0, mid)
    mid = np.where(np.isposinf(high), above, mid)
    mid = np.where(np.isneginf(low) & np.isposinf(high), 0.0, mid)
    return np.where(mid > low, mid, high)


@dataclass(frozen=True)
class _Choice:
    gamma: float
    value: float
    values: np.ndarray  # the criterion of every step function at ``gamma``
    interval: tuple[float, float]


def _maximise(steps: Sequence[tuple[np.ndarray, np.ndarray]]) -> _Choice:
    """Maximise the average of step functions of γ, exactly.

    Each step function is ``(gamma, value)`` as in :class:`SeenAbsentCurve`: ``value[k]`` holds
    on ``(gamma[k-1], gamma[k]]`` and ``gamma[-1] = +inf``. Their average is constant on the
    intervals between consecutive breakpoints of the union, so it is evaluated once inside
    each of them (``searchsorted``, no loop over breakpoints). Ties — values within 1e-12 —
    go to the interval closest to γ = 0 (then to the lower one): the smallest bias that
    reaches the best value.
    """
    breaks = np.unique(np.concatenate([np.asarray(g[:-1], dtype=np.float64) for g, _ in steps]))
    low = np.concatenate([[-np.inf], breaks])
    high = np.concatenate([breaks, [np.inf]])
    candidates = _interior(low, high)
    per_step = np.stack(
        [np.asarray(v)[np.searchsorted(np.asarray(g), candidates, side="left")] for g, v in steps]
    )
    mean = per_step.mean(axis=0)
    best = np.flatnonzero(mean >= mean.max() - _TIE_ATOL)
    distance = np.where(low >= 0, low, np.where(high < 0, -high, 0.0))  # from 0 to (low, high]
    j = int(best[np.argmin(distance[best])])
    return _Choice(
        gamma=float(candidates[j]),
        value=float(mean[j]),
        values=per_step[:, j],
        interval=(float(low[j]), float(high[j])),
    )


# ----------------------------------------------------------------------------- selectors


@register_selector(
    "alg",
    data="finetune_train",
    description="Average Logit Gap from the fine-tuning training data (S labels only)",
)
def select_alg(
    logits: Any,
    labels: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    num_classes: int | None = None,
) -> tuple[float, dict[str, Any]]:
    """Average Logit Gap (ALG) from the fine-tuning training data.

    γ = mean over samples of [mean logit of the S classes other than the true one − mean
    logit of the U classes]. Columns in neither S nor U are ignored. Adding a constant to all
    logits of a sample leaves its term unchanged.

    Args:
        logits: (N, C) logits of the fine-tuning training samples (numpy or torch).
        labels: (N,) their labels, all in S: ALG may only see fine-tuning data.
        seen_classes: S, at least two classes.
        absent_classes: U; default every column not in S.

    Returns:
        ``(gamma, info)``; ``info`` holds ``n_samples`` and ``gap_std`` (the spread of the
        per-sample terms).

    Raises:
        ValueError: a label outside S, |S| < 2, or invalid input.
    """
    z = check_logits(logits)
    _check_width(num_classes, z.shape[1])
    y = check_labels(labels, z.shape[0], z.shape[1])
    seen, absent = check_classes(seen_classes, absent_classes, z.shape[1])
    if seen.size < 2:
        raise ValueError(
            f"ALG needs at least 2 seen classes (it averages the non-true ones), got {seen.size}"
        )
    outside = ~np.isin(y, seen)
    if outside.any():
        where = "absent classes U" if np.isin(y[outside], absent).any() else "non-seen columns"
        raise ValueError(
            f"ALG may only see fine-tuning (S) data, but {int(outside.sum())} label(s) lie in the "
            f"{where}, e.g. {int(y[outside][0])}; pass the fine-tuning training samples only"
        )
    used = np.concatenate([seen, absent])
    if np.isneginf(z[:, used]).any():
        col = int(used[np.isneginf(z[:, used]).any(axis=0)][0])
        raise ValueError(
            f"ALG averages logits, but column {col} holds -inf (a class that can never be "
            "predicted): leave it out of seen_classes/absent_classes"
        )
    z_seen = z[:, seen].astype(np.float64, copy=False)
    true_logit = z[np.arange(z.shape[0]), y].astype(np.float64)
    mean_other_seen = (z_seen.sum(axis=1) - true_logit) / (seen.size - 1)
    mean_absent = z[:, absent].astype(np.float64, copy=False).mean(axis=1)
    terms = mean_other_seen - mean_absent
    gamma = float(terms.mean())
    return gamma, {"method": "alg", "n_samples": int(z.shape[0]), "gap_std": float(terms.std())}


@register_selector(
    "oracle",
    data="target_labelled",
    params={"criterion": "acc_all"},
    checks={"criterion": check_criterion},
    uses_absent_labels=True,
    description="best γ on labelled target data with U (an upper bound for analysis)",
)
def select_oracle(
    logits: Any,
    labels: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    criterion: str = "acc_all",
    num_classes: int | None = None,
) -> tuple[float, dict[str, Any]]:
    """The best γ on labelled target data that include absent-class samples.

    This uses labelled absent-class (U) data, which a real deployment does not have: it is an
    upper bound for analysis, not a selector to report as a method.

    Exact: the criterion is a step function of γ (:func:`calib.seen_absent_curve`); its best
    point k holds on ``(gamma[k-1], gamma[k]]`` and γ is that interval's midpoint
    (``gamma[0] - 1`` for the first, ``gamma[-2] + 1`` for the last, unbounded one). Ties go
    to the interval closest to γ = 0.

    Args:
        logits: (N, C) target logits; labels: (N,) their labels (any class).
        seen_classes, absent_classes: S and U (default U = every column not in S).
        criterion: ``"acc_all"`` (default) or ``"hmean"`` (of acc_seen and acc_absent).

    Returns:
        ``(gamma, info)``; ``info["value"]`` is the criterion reached, ``info["interval"]``
        the γ interval that reaches it.
    """
    check_criterion(criterion)
    z = check_logits(logits)
    _check_width(num_classes, z.shape[1])
    y = check_labels(labels, z.shape[0], z.shape[1])
    seen, absent = check_classes(seen_classes, absent_classes, z.shape[1])
    _check_groups(y, seen, absent, criterion)
    curve = seen_absent_curve(z, y, seen, absent)
    choice = _maximise([(curve.gamma, _criterion_values(curve, criterion))])
    return choice.gamma, {
        "method": "oracle",
        "criterion": criterion,
        "value": choice.value,
        "interval": choice.interval,
        "uses_absent_labels": True,
        "note": "upper bound: chosen with labelled absent-class data",
    }


@register_selector(
    "fixed",
    data=None,
    params={"gamma": REQUIRED},
    checks={"gamma": check_gamma},
    description="a given γ (logit units)",
)
def select_fixed(
    gamma: float,
    seen_classes: Any = None,
    absent_classes: Any = None,
    num_classes: int | None = None,
) -> tuple[float, dict[str, Any]]:
    """A given γ (logit units), checked to be a finite real number (strings are refused)."""
    return check_gamma(gamma), {"method": "fixed"}


@register_selector(
    "pcv",
    data="pseudo_splits",
    params={"criterion": "hmean"},
    checks={"criterion": check_criterion},
    description="Pseudo Cross-Validation: best mean criterion on held-out S data of pseudo splits",
)
def select_pcv(
    pseudo_splits: Sequence[PseudoSplit],
    seen_classes: Any,
    absent_classes: Any = None,
    criterion: str = "hmean",
    num_classes: int | None = None,
) -> tuple[float, dict[str, Any]]:
    """The γ-selection half of Pseudo Cross-Validation: best average criterion over splits.

    Each split's criterion (pseudo-seen vs pseudo-absent accuracy on its held-out S data)
    is a step function of γ; their average is a step function over the union of all
    breakpoints, maximised exactly (ties → the interval closest to γ = 0). No absent-class
    (U) data may appear: every split label must be a fine-tuning class.

    Args:
        pseudo_splits: one or more :class:`PseudoSplit`, all with C columns.
        seen_classes: the real S; absent_classes: the real U (default every column not in S).
        criterion: ``"hmean"`` (default) or ``"acc_all"``.
        num_classes: C, checked against the splits' logits when given.

    Returns:
        ``(gamma, info)``; ``info["value"]`` is the average criterion at γ,
        ``info["split_values"]`` each split's.

    Raises:
        ValueError: no split, a split label in U (or outside S), a label outside its split's
            classes, pseudo-seen classes outside S, mismatched column counts.
    """
    check_criterion(criterion)
    splits = check_pseudo_splits(pseudo_splits)
    logits = [check_logits(s.logits, f"pseudo_splits[{j}].logits") for j, s in enumerate(splits)]
    widths = {z.shape[1] for z in logits}
    if num_classes is not None:
        widths.add(int(num_classes))
    if len(widths) != 1:
        raise ValueError(
            f"pseudo splits and num_classes disagree on the number of columns: {sorted(widths)}"
        )
    (c,) = widths
    seen, absent = check_classes(seen_classes, absent_classes, c)

    steps = []
    for j, (split, z) in enumerate(zip(splits, logits, strict=True)):
        where = f"pseudo_splits[{j}]: "
        y = check_labels(split.labels, z.shape[0], c, f"pseudo_splits[{j}].labels")
        in_absent = np.isin(y, absent)
        if in_absent.any():
            raise ValueError(
                f"{where}{int(in_absent.sum())} label(s) lie in the absent classes U, e.g. "
                f"{int(y[in_absent][0])}: PCV may not touch U data (score held-out S data only)"
            )
        not_seen = ~np.isin(y, seen)
        if not_seen.any():
            raise ValueError(f"{where}label {int(y[not_seen][0])} is not a fine-tuning (S) class")
        try:
            p_seen, p_absent = check_classes(split.seen_classes, split.absent_classes, c)
        except ValueError as err:
            raise ValueError(f"{where}{err}") from None
        left_out = np.setdiff1d(absent, p_absent)
        if left_out.size:
            raise ValueError(
                f"{where}absent_classes {p_absent.tolist()[:10]} leave out the real absent "
                f"classes {left_out.tolist()[:10]}: the deployed γ shifts U too, so a pseudo "
                "split must be scored with γ on its pseudo-absent classes and on U"
            )
        if not np.isin(p_seen, seen).all():
            extra = np.setdiff1d(p_seen, seen)
            raise ValueError(f"{where}pseudo-seen classes {extra.tolist()[:10]} are not in S")
        stray = ~np.isin(y, np.union1d(p_seen, p_absent))
        if stray.any():
            raise ValueError(
                f"{where}label {int(y[stray][0])} is in neither the split's seen nor absent classes"
            )
        _check_groups(y, p_seen, p_absent, criterion, where)
        curve = seen_absent_curve(z, y, p_seen, p_absent)
        steps.append((curve.gamma, _criterion_values(curve, criterion)))

    choice = _maximise(steps)
    return choice.gamma, {
        "method": "pcv",
        "criterion": criterion,
        "value": choice.value,
        "split_values": [float(v) for v in choice.values],
        "n_splits": len(splits),
        "interval": choice.interval,
    }


@register_selector(
    "prior",
    data="target_unlabelled",
    params={"prior": None},
    checks={"prior": check_prior},
    description="label-free: the predicted share of U on unlabelled logits meets a prior",
)
def select_prior(
    logits: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    prior: float | None = None,
    num_classes: int | None = None,
) -> tuple[float, dict[str, Any]]:
    """Label-free: the γ under which the predicted share of U on unlabelled logits meets a prior.

    Beyond the paper. The share of samples predicted in U is the fraction whose gap is below
    γ, a step function; γ is chosen inside the step whose share is closest to ``prior``
    (exact — a quantile of the gaps; ties → the step closest to γ = 0). No labels are taken.

    Args:
        logits: (N, C) unlabelled target logits.
        seen_classes, absent_classes: S and U (default U = every column not in S).
        prior: target share of U predictions in [0, 1]; default |U| / (|S| + |U|).

    Returns:
        ``(gamma, info)``; ``info["share"]`` is the share reached, ``info["prior"]`` the target.
    """
    z = check_logits(logits)
    seen, absent = check_classes(seen_classes, absent_classes, z.shape[1])
    _check_width(num_classes, z.shape[1])
    prior = check_prior(prior)
    if prior is None:
        prior = absent.size / (seen.size + absent.size)
    gaps = np.sort(compute_gaps(z, absent).gap)
    finite = gaps[np.isfinite(gaps)]  # -inf columns: a group that can never win has no step
    gamma_steps = np.append(np.unique(finite), np.inf)
    share = np.searchsorted(gaps, gamma_steps, side="left") / gaps.size  # predicted in U: gap < γ
    choice = _maximise([(gamma_steps, -np.abs(share - prior))])
    reached = float(np.count_nonzero(gaps < choice.gamma) / gaps.size)
    return choice.gamma, {
        "method": "prior",
        "prior": prior,
        "share": reached,
        "n_samples": int(gaps.size),
        "interval": choice.interval,
    }
