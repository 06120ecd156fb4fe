"""``LogitBiasCalibrator``: one bias γ on the absent-class logits, chosen by a registered selector.

A scikit-learn estimator (``BaseEstimator`` + ``ClassifierMixin``): ``__init__`` only stores its
parameters, ``fit`` picks γ with the selector named by ``method`` (see :mod:`calib.selectors`)
and returns the calibrator, whose fitted state ends in ``_``::

    cal = LogitBiasCalibrator(method="alg").fit(train_logits, train_labels, seen_classes)
    cal.gamma_                       # the bias, in logit units
    cal.transform(test_logits)       # float64 logits, γ on the absent columns
    cal.predict(test_logits)         # labels under the bias rule of calib.rules.gaps
    cal.predict_proba(test_logits)   # softmax((z + γ·1_U) / T), argmax == predict
    cal.score(test_logits, labels)   # acc_all, one float; cal.report(...) gives every metric
    cal.save("alg.json"); LogitBiasCalibrator.load("alg.json")

**Class names.** ``fit(..., class_names=names)`` (one name per column, index = label) lets S, U
and every pseudo split's classes be names (a name that is not a class gets a did-you-mean); the
fitted ``class_names_`` keeps them and the file round-trips them. ``seen_classes="infer"``
(``alg``, and any selector whose data are the fine-tuning training data) reads S off the
fine-tuning labels and logs what it found (:func:`calib.class_names.infer_seen_classes`).

**One decision rule in every dtype.** ``predict``, ``score``, ``report``,
:func:`calib.accuracy_report` and the curve use the gap rule of :mod:`calib.rules.gaps` (computed in
float64 from the logits as given). ``transform`` and :class:`calib.CalibratedClassifier` return
float64 logits built so that their argmax is that rule (:func:`calib.rules.gaps.shifted_logits`), for
float16, bfloat16, float32, float64 and integer logits alike; a low-precision output would
round z + γ and move samples across the decision boundary (43 of 20,000 bf16 rows did).

**scikit-learn checks.** ``check_is_fitted``, ``clone``, ``get_params``/``set_params``, the HTML
repr and ``__sklearn_tags__`` (a classifier) work. scikit-learn's generic estimator checks feed
``fit(X, y)`` arbitrary feature matrices; ``fit`` needs ``seen_classes`` (S is not a function of
X and y), so the checks that fit cannot apply; ``tests/estimator/test_calibrator.py`` runs the ones that
do and names the others with this reason.

Files are JSON (no pickle): a format tag, a version, the parameters and the fitted state.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
from sklearn.utils import TransformerTags

from calib.class_names import (
    INFER,
    check_class_names,
    class_ids,
    infer_seen_classes,
    resolve_classes,
)
from calib.estimator.file import FILE_FORMAT, FILE_VERSION, load_calibrator, save_calibrator
from calib.estimator.temperature import (
    FIT_KEYS,
    break_ties,
    check_temperature_param,
    fitted_temperature,
)
from calib.metrics.streaming import SeenAbsentState
from calib.rules.gaps import gaps_of, scan_checked, shifted_logits
from calib.selectors import (
    PseudoSplit,
    SelectorSpec,
    check_pseudo_splits,
    select_alg,
    select_oracle,
    select_pcv,
    select_prior,
    selector_spec,
)
from calib.selectors.checks import check_selector_result
from calib.selectors.data_kinds import FINETUNE_TRAIN
from calib.validation import (
    check_labels,
    check_logits,
    check_num_classes,
    check_sample_weight,
    has_bad_values,
    is_tensor,
    like_input,
)

__all__ = ["LogitBiasCalibrator", "NotFittedError", "FILE_FORMAT", "FILE_VERSION"]

# The estimator's explicit selector parameters (sklearn wants every parameter in __init__);
# any other parameter of a registered selector goes through ``options``.
_EXPLICIT = ("gamma", "criterion", "prior")

# Built-in selectors that check the logits' values (NaN, +inf, all -inf rows) in their own one
# pass over them: ``fit`` checks shape and dtype only before calling these (a second full pass
# cost 0.9x a read of the logits). Any other selector, a user's included, gets checked values.
_CHECK_THEIR_VALUES = (select_alg, select_oracle, select_prior)

# Built-in selectors that take a streamed SeenAbsentState for their logits (pcv: one per split).
_TAKE_A_STATE = (select_alg, select_oracle, select_prior, select_pcv)


def _state_input(logits: Any, pseudo_splits: Any) -> SeenAbsentState | list | None:
    """The streamed state(s) given to ``fit``, or None when it was given arrays."""
    if isinstance(logits, SeenAbsentState):
        return logits
    if isinstance(pseudo_splits, Sequence) and any(
        isinstance(s, SeenAbsentState) for s in pseudo_splits
    ):
        return list(pseudo_splits)
    return None


def _names_of_states(state: SeenAbsentState | list, class_names: Any) -> Any:
    """The class names of a fit on streamed state(s): those the states were built with, which
    are authoritative (given ``class_names`` must equal them), else the given ones. States
    built without names (or before states carried them) leave ``class_names`` as given."""
    states = state if isinstance(state, list) else [state]
    found = {tuple(n) for s in states if (n := getattr(s, "class_names", None)) is not None}
    if len(found) > 1:
        raise ValueError("the SeenAbsentStates given to fit were built with different class_names")
    if not found:
        return class_names
    (built,) = found
    given = check_class_names(class_names)
    if given is not None and given != built:
        raise ValueError(
            f"class_names {_first_difference(given, built)} the SeenAbsentState was built "
            "with; give the same names, or none (the state's are used)"
        )
    return built


def _named_splits(splits: list[PseudoSplit], names: tuple[str, ...] | None) -> list[PseudoSplit]:
    """``splits`` with every class name in a split's ``seen_classes``/``absent_classes``
    replaced by its column index (the splits themselves are not changed)."""
    out = []
    for j, split in enumerate(splits):
        seen = class_ids(split.seen_classes, names, f"pseudo_splits[{j}].seen_classes")
        absent = class_ids(split.absent_classes, names, f"pseudo_splits[{j}].absent_classes")
        if seen is split.seen_classes and absent is split.absent_classes:
            out.append(split)
        else:
            out.append(dataclasses.replace(split, seen_classes=seen, absent_classes=absent))
    return out


def _first_difference(given: Sequence[str], built: Sequence[str]) -> str:
    """``"has 3 names, not the 4 of those"`` or ``"[2] is 'dog', not 'cat' as in those"``."""
    if len(given) != len(built):
        return f"has {len(given)} names, not the {len(built)} of those"
    j = next(i for i, (a, b) in enumerate(zip(given, built, strict=True)) if a != b)
    return f"[{j}] is {given[j]!r}, not {built[j]!r} as in those"


def _is_infer(seen_classes: Any) -> bool:
    return isinstance(seen_classes, str) and seen_classes == INFER


class NotFittedError(_SklearnNotFittedError):
    """A calibrator was used before ``fit`` (or ``load``): scikit-learn's error of that name."""


class LogitBiasCalibrator(ClassifierMixin, BaseEstimator):
    """Add one bias γ to the logits of the absent classes U; γ chosen by a selector.

    Args:
        method: selector key in :data:`calib.selectors.SELECTORS`: ``"alg"`` (default),
            ``"pcv"``, ``"oracle"``, ``"prior"``, ``"fixed"`` or a registered one.
        gamma: γ for ``method="fixed"`` (logit units).
        criterion: ``"acc_all"`` or ``"hmean"`` for ``oracle``/``pcv`` (None = selector default).
        prior: share of U predictions for ``prior`` (None = |U| / (|S| + |U|)).
        options: any other parameter of the selector, ``{name: value}``; each must be declared
            by the selector (e.g. ``{"average": "macro"}``: the class-balanced criterion of
            ``oracle`` and ``pcv``). None = none.
        temperature: T of :meth:`predict_proba` (softmax((z + γ·1_U) / T)): None (T = 1), a
            number > 0, a pair (T_S, T_U) (a sample predicted in U is divided by T_U, any
            other by T_S), or ``"fit"``: T minimising the NLL at the fitted γ on exactly the
            data the selector is fed (``alg``: the given fine-tuning logits of S; ``pcv``: the
            pseudo splits' held-out S data; ``oracle``: the given labelled target data, an
            upper bound). ``"fit_per_group"``: (T_S, T_U) on the same data, T_U on the rows
            predicted in U (:func:`calib.estimator.temperature.fit_temperature`). Both are refused for
            label-free selectors (``prior``) and ``fixed``.

    Fitted attributes:
        gamma_: the bias (float, logit units).
        seen_classes_: S, sorted int64 array. absent_classes_: U, sorted int64 array.
        class_names_: the ``class_names`` given to ``fit`` (one per column, index = label), as
            a tuple of str, or None.
        num_classes_: C, the number of logit columns. classes_: ``arange(C)``, the labels
            ``predict`` can return; n_features_in_: C (scikit-learn's names).
        temperature_: T (float) or (T_S, T_U) (tuple of floats); never moves a prediction.
        info_: the selector's details (criterion reached, sample counts, ...), plus
            ``temperature``, ``temperature_data`` (the data kind T was fitted on, or
            ``"given"``), ``temperature_samples`` and, for a fitted T, ``temperature_note``;
            ``seen_classes_inferred: True`` when S was read off the labels
            (``seen_classes="infer"``).
    """

    def __init__(
        self,
        method: str = "alg",
        gamma: float | None = None,
        criterion: str | None = None,
        prior: float | None = None,
        options: dict[str, Any] | None = None,
        temperature: float | tuple[float, float] | str | None = None,
    ) -> None:
        self.method = method
        self.gamma = gamma
        self.criterion = criterion
        self.prior = prior
        self.options = options
        self.temperature = temperature

    # ------------------------------------------------------------------ sklearn parameters

    def set_params(self, **params: Any) -> LogitBiasCalibrator:
        """Set constructor parameters; returns self. Unknown names raise ``ValueError``."""
        known = self._get_param_names()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"LogitBiasCalibrator has no parameter(s) {unknown}; known: {known}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False  # `prior` and `fixed` fit without labels
        tags.input_tags.allow_nan = False
        tags.transformer_tags = TransformerTags(preserves_dtype=["float64"])  # float64 out
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "gamma_")

    def _spec(self) -> SelectorSpec:
        return selector_spec(self.method, "LogitBiasCalibrator(method")

    def _selector_params(self, spec: SelectorSpec) -> dict[str, Any]:
        """The validated full parameter dict of the selector (explicit ones + ``options``)."""
        options = self.options if self.options is not None else {}
        if not isinstance(options, Mapping):
            raise ValueError(f"options must be a dict of selector parameters, got {options!r}")
        given = {name: getattr(self, name) for name in _EXPLICIT}
        given = {name: value for name, value in given.items() if value is not None}
        twice = sorted(set(given) & set(options))
        if twice:
            raise ValueError(
                f"parameter {twice[0]!r} is given both directly and in options; pass it once"
            )
        return spec.check_params({**given, **options})

    # ------------------------------------------------------------------ fitting

    def fit(
        self,
        logits: Any = None,
        labels: Any = None,
        seen_classes: Any = None,
        absent_classes: Any = None,
        *,
        pseudo_splits: Sequence[PseudoSplit] | None = None,
        num_classes: int | None = None,
        sample_weight: Any = None,
        class_names: Sequence[str] | None = None,
    ) -> LogitBiasCalibrator:
        """Choose γ with the selector ``method``; returns self.

        The selector's declaration (:class:`calib.selectors.SelectorSpec`) says which data it
        takes; the rest is refused with the reason (so that, e.g., labels never reach the
        label-free ``prior``, nor test logits ``pcv``):

        - ``finetune_train`` (``alg``): ``logits``, ``labels`` of the fine-tuning training
          samples (S only).
        - ``target_labelled`` (``oracle``): labelled target ``logits``, ``labels`` with U.
        - ``target_unlabelled`` (``prior``): unlabelled target ``logits``.
        - ``pseudo_splits`` (``pcv``): ``pseudo_splits``.
        - no data (``fixed``): nothing (``num_classes`` gives the head's width).

        Args:
            logits: (N, C) scores, numpy or torch (any device); or, for ``alg``, ``oracle``
                and ``prior``, a :class:`calib.metrics.streaming.SeenAbsentState` fed the
                same data batch by batch (built with these S and U; ``alg=True`` for
                ``alg``): the same γ from O(N) numbers, the logits never in memory at once.
            labels: (N,) integer labels (None with a state: it holds them).
            seen_classes: S, the fine-tuning classes (required): column indices, or names
                given ``class_names``; or ``"infer"`` for a selector whose data are the
                fine-tuning training data (``alg``): S = the distinct ``labels``, logged on
                the logger ``calib.classes`` (:func:`calib.infer_seen_classes`; every
                fine-tuned class must appear in them). Other selectors refuse ``"infer"``.
            absent_classes: U, the columns that get γ; default every column not in S.
                Indices or names.
            pseudo_splits: for ``pcv``, a list of :class:`calib.PseudoSplit` (their classes
                may be names too), or of one
                :class:`~calib.metrics.streaming.SeenAbsentState` per split.
            num_classes: C; needed when no logits or pseudo splits tell it, checked otherwise.
            sample_weight: (N,) weights of the rows of ``logits`` in the selector's criterion
                (``oracle``; any selector registered with ``sample_weight=True``); refused by
                the others. PCV's weights ride on each :class:`calib.PseudoSplit`. A fitted T
                is not weighted.
            class_names: one name per logit column (index = label), so that S, U and the
                pseudo splits' classes may be names; kept as ``class_names_``. With a
                state built with ``class_names``, those (given ones must equal them).

        Raises:
            ValueError: unknown method, missing or unused data, bad parameters, inconsistent
                widths, a name that is not a class (with the closest names), ``"infer"``
                for a selector that does not read the fine-tuning labels, or any error of the
                selector (bad input, data it may not see).
        """
        spec = self._spec()
        params = self._selector_params(spec)
        temperature = self._temperature_param(spec)
        state = _state_input(logits, pseudo_splits)
        if state is not None:
            class_names = _names_of_states(state, class_names)
        names = self._check_classes_param(spec, seen_classes, absent_classes, class_names)
        if state is not None:
            return self._fit_state(
                spec,
                params,
                temperature,
                state,
                labels,
                seen_classes,
                absent_classes,
                num_classes,
                sample_weight,
                names,
            )
        given = {"logits": logits, "labels": labels, "pseudo_splits": pseudo_splits}
        for name, value in given.items():
            if value is not None and name not in spec.inputs:
                raise ValueError(
                    f"method {self.method!r} does not use {name}: {spec.refusal(name)}"
                )
        for name in spec.inputs:
            if given[name] is None:
                raise ValueError(
                    f"method {self.method!r} needs {name}: it reads {spec.data_text()}"
                )

        data = {name: given[name] for name in spec.inputs}
        z = None
        if "logits" in data:
            values = not any(spec.fn is fn for fn in _CHECK_THEIR_VALUES)
            z = data["logits"] = check_logits(logits, values=values)
        if sample_weight is not None:
            if not spec.sample_weight:
                where = (
                    "give each PseudoSplit its sample_weight"
                    if "pseudo_splits" in spec.inputs
                    else "its criterion weighs no sample"
                )
                raise ValueError(f"method {self.method!r} does not take sample_weight: {where}")
            data["sample_weight"] = check_sample_weight(sample_weight, z.shape[0])
        splits = None
        if "pseudo_splits" in data:
            splits = data["pseudo_splits"] = _named_splits(
                check_pseudo_splits(pseudo_splits), names
            )
        width = self._num_classes(z, splits, num_classes)
        names = check_class_names(names, width)
        inferred = _is_infer(seen_classes)
        if inferred:
            seen_classes = infer_seen_classes(data["labels"], width, names)
        seen, absent = resolve_classes(seen_classes, absent_classes, width, names)
        self._select(spec, params, temperature, data, seen, absent, width, names)
        if inferred:
            self.info_["seen_classes_inferred"] = True
        return self

    def _check_classes_param(
        self, spec: SelectorSpec, seen_classes: Any, absent_classes: Any, class_names: Any
    ) -> tuple[str, ...] | None:
        """``class_names`` checked (width aside); S and U given, their names all classes, and
        ``"infer"`` only for a selector fed the fine-tuning training data. Before any data
        is read (:func:`calib.calibrate` calls it before the model runs)."""
        if seen_classes is None:
            raise ValueError(
                "fit needs seen_classes: the fine-tuning classes S (column indices or names; "
                "'infer' reads them off the fine-tuning labels, for alg)"
            )
        names = check_class_names(class_names)
        if _is_infer(seen_classes):
            if spec.kind is not FINETUNE_TRAIN:
                kind = spec.kind
                why = (
                    "its labels are target labels, which include the absent classes U"
                    if kind.labels and kind.absent_rows
                    else "it reads no labels"
                    if not kind.labels
                    else "its labels are not the fine-tuning training labels"
                )
                raise ValueError(
                    f"seen_classes='infer' reads S off the fine-tuning training labels, but "
                    f"method {self.method!r} reads {spec.data_text()}: {why}. Pass seen_classes "
                    "explicitly, e.g. calib.infer_seen_classes(finetune_labels)"
                )
        else:
            class_ids(seen_classes, names, "seen_classes")
        class_ids(absent_classes, names, "absent_classes")
        return names

    def _select(
        self,
        spec: SelectorSpec,
        params: dict[str, Any],
        temperature: Any,
        data: dict[str, Any],
        seen: np.ndarray,
        absent: np.ndarray,
        width: int,
        names: tuple[str, ...] | None = None,
    ) -> LogitBiasCalibrator:
        """Run the selector on checked ``data``, resolve T, and set the fitted attributes."""
        gamma, info = check_selector_result(
            spec.name or str(self.method),
            spec.fn(**data, seen_classes=seen, absent_classes=absent, num_classes=width, **params),
        )
        t, t_info = fitted_temperature(temperature, spec.kind, data, absent, gamma)
        self.gamma_ = gamma
        self.seen_classes_ = seen
        self.absent_classes_ = absent
        self.num_classes_ = width
        self.class_names_ = names
        self.classes_ = np.arange(width)
        self.n_features_in_ = width
        self.temperature_ = t
        self.info_ = {**dict(info), **t_info}
        return self

    def _fit_state(
        self,
        spec: SelectorSpec,
        params: dict[str, Any],
        temperature: Any,
        state: SeenAbsentState | list[SeenAbsentState],
        labels: Any,
        seen_classes: Any,
        absent_classes: Any,
        num_classes: Any,
        sample_weight: Any,
        class_names: tuple[str, ...] | None,
    ) -> LogitBiasCalibrator:
        """:meth:`fit` from streamed states (``logits`` a state, or ``pseudo_splits`` states).

        The states' classes are authoritative: S and U must be those they were built with,
        and their ``class_names`` (when they carry any) name the columns."""
        name = "pseudo_splits" if isinstance(state, list) else "logits"
        if not any(spec.fn is fn for fn in _TAKE_A_STATE) or name not in spec.inputs:
            raise ValueError(
                f"method {self.method!r} does not take a SeenAbsentState as {name}: it reads "
                f"{spec.data_text()}; the states serve alg, prior, oracle (logits) and pcv "
                "(pseudo_splits)"
            )
        if temperature in FIT_KEYS:
            raise ValueError(
                f"temperature={temperature!r} needs the logits themselves: a SeenAbsentState "
                "keeps O(1) numbers per sample; give a temperature or fit it on logits"
            )
        if sample_weight is not None:
            raise ValueError(
                "sample_weight given with a SeenAbsentState: the state holds the weights given "
                "to its update"
            )
        if _is_infer(seen_classes):
            raise ValueError(
                "seen_classes='infer' with a SeenAbsentState: the state was built with its S "
                "(state.seen_classes) and keeps no labels to read it from; pass "
                "seen_classes=state.seen_classes"
            )
        states = state if isinstance(state, list) else [state]
        widths = {s.num_classes for s in states}
        if num_classes is not None:
            widths.add(check_num_classes(num_classes))
        if len(widths) != 1:
            raise ValueError(f"inconsistent number of classes: {sorted(widths)}")
        (width,) = widths
        names = check_class_names(class_names, width)
        seen, absent = resolve_classes(seen_classes, absent_classes, width, names)
        data: dict[str, Any] = {name: state}
        if "labels" in spec.inputs:
            data["labels"] = labels  # None: the state holds them (the selector says otherwise)
        return self._select(spec, params, temperature, data, seen, absent, width, names)

    def _temperature_param(self, spec: SelectorSpec) -> Any:
        """The validated ``temperature``: 1.0, a float, a (T_S, T_U) tuple or ``"fit"``."""
        return check_temperature_param(self.temperature, self.method, spec.kind)

    @staticmethod
    def _num_classes(
        z: np.ndarray | None, pseudo_splits: list[PseudoSplit] | None, num_classes: Any
    ) -> int:
        widths = {}
        if z is not None:
            widths["logits"] = z.shape[1]
        if pseudo_splits:
            shape = getattr(pseudo_splits[0].logits, "shape", None)
            if shape is not None and len(shape) == 2:
                widths["pseudo_splits"] = int(shape[1])
        if num_classes is not None:
            widths["num_classes"] = check_num_classes(num_classes)
        if not widths:
            raise ValueError("cannot tell the number of classes: pass logits or num_classes")
        if len(set(widths.values())) > 1:
            raise ValueError(f"inconsistent number of classes: {widths}")
        return next(iter(widths.values()))

    # ------------------------------------------------------------------ using γ

    def _check_fitted(self) -> None:
        if not hasattr(self, "gamma_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit(...) or "
                f"{type(self).__name__}.load(path) before using it"
            )

    def _checked(self, logits: Any, values: bool = True, on_device: bool = False) -> Any:
        self._check_fitted()
        z = check_logits(logits, values=values, on_device=on_device)
        if z.shape[1] != self.num_classes_:
            raise ValueError(
                f"logits has {z.shape[1]} columns but the calibrator was fitted on "
                f"{self.num_classes_}"
            )
        return z

    def transform(self, logits: Any, out: np.ndarray | None = None) -> Any:
        """Calibrated logits (N, C), float64: ``logits`` + γ on the absent columns.

        Float64 whatever the input dtype, so that ``argmax`` of the result is exactly
        :meth:`predict` (see :func:`calib.rules.gaps.shifted_logits`: the U entries sit 2-4 float64
        rounding units below z + γ, so that an exact tie goes to the non-absent column). A
        torch tensor comes back as a float64 tensor on its device, numpy as numpy. The input
        is not modified. ``out`` (numpy logits only): a float64 (N, C) C-contiguous array to
        write into and return, for callers that reuse one buffer (a fresh 80 MB array costs
        about as much as the whole computation, in page faults).
        """
        self._check_fitted()
        if is_tensor(logits):
            if out is not None:
                raise TypeError("out is for numpy logits; a tensor comes back as a new tensor")
            return self._transform_tensor(logits)
        z = self._checked(logits, values=False)  # values: checked in the one pass
        return shifted_logits(z, self.absent_classes_, self.gamma_, name="logits", out=out)

    def _transform_tensor(self, logits: Any) -> Any:
        import torch

        from calib.rules.torch_ops import shifted_logits_torch

        bad_shape = logits.ndim != 2 or logits.shape[0] == 0
        if bad_shape or logits.shape[1] != self.num_classes_ or has_bad_values(logits):
            self._checked(logits.detach().cpu())  # raises with the numpy path's message
        mask = torch.zeros(self.num_classes_, dtype=torch.bool, device=logits.device)
        mask[torch.as_tensor(self.absent_classes_, device=logits.device)] = True
        gamma = torch.tensor(self.gamma_, dtype=torch.float64, device=logits.device)
        return shifted_logits_torch(logits.detach(), mask, gamma)

    def predict(self, logits: Any) -> Any:
        """Predicted labels (N,) under γ, by the rule of :mod:`calib.rules.gaps` (γ > gap → U).

        Same type as the input (a tensor on its device, or a numpy array), int64.
        """
        return like_input(
            self._predict(self._checked(logits, values=False, on_device=True)), logits
        )

    def _predict(self, z: np.ndarray) -> np.ndarray:
        scanned = scan_checked(z, self.seen_classes_, self.absent_classes_)
        return gaps_of(scanned).predict(self.gamma_).astype(np.int64, copy=False)

    def predict_proba(self, logits: Any) -> Any:
        """softmax((z + γ·1_U) / T): (N, C) float64 probabilities, rows summing to 1.

        :func:`calib.metrics.probability.shifted_probabilities` at ``gamma_`` and ``temperature_``
        (a pair (T_S, T_U) by its row rule: T_U for a sample predicted in U). A tensor comes
        back as a float64 tensor on its device, numpy as numpy. ``argmax`` of each row is
        :meth:`predict` exactly: where float64 rounding leaves the predicted column tied with
        another (e.g. an exact tie of z + γ, which the rule sends out of U), the predicted
        probability is raised by one unit in the last place.
        """
        from calib.metrics.probability import shifted_probabilities  # not needed to fit

        z = self._checked(logits)
        t = getattr(self, "temperature_", 1.0)  # a calibrator pickled before T existed
        p = shifted_probabilities(z, self.absent_classes_, self.gamma_, t)
        return like_input(break_ties(p, self._predict(z)), logits)

    def score(
        self, logits: Any, labels: Any, sample_weight: Any = None, average: str = "micro"
    ) -> float:
        """``acc_all`` under γ: the fraction of samples whose :meth:`predict` equals the label.

        One float, as scikit-learn's ``score`` (the accuracy of ``predict``);
        ``sample_weight`` (N,) weights the samples: finite, ≥ 0, not all 0 (ValueError
        naming ``sample_weight`` otherwise). ``average="macro"``: the class-balanced
        accuracy, the mean over the classes of the per-class (weighted) accuracy. Every
        metric: :meth:`report`.
        """
        from calib.metrics.weights import sample_weights, weighted_mean

        z = self._checked(logits, values=False, on_device=True)
        y = check_labels(labels, z.shape[0], z.shape[1])
        weights = sample_weights(sample_weight, average, y)
        return weighted_mean(self._predict(z) == y, weights)

    def report(
        self,
        logits: Any,
        labels: Any,
        topk: Sequence[int] = (1, 5),
        sample_weight: Any = None,
        average: str = "micro",
    ) -> dict[str, float]:
        """:func:`calib.accuracy_report` under γ: acc_all, acc_seen, acc_absent, hmean, ....

        ``sample_weight`` and ``average`` (``"micro"`` or the class-balanced ``"macro"``): as
        in :func:`calib.accuracy_report`.
        """
        from calib.metrics.accuracy import (
            accuracy_report,  # the metrics module is not needed to fit
        )

        z = self._checked(logits, values=False, on_device=True)  # values: in the report's pass
        return accuracy_report(
            z,
            labels,
            self.seen_classes_,
            self.absent_classes_,
            gamma=self.gamma_,
            topk=topk,
            sample_weight=sample_weight,
            average=average,
            class_names=getattr(self, "class_names_", None),  # pickled before names: none
        )

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike) -> None:
        """Write the calibrator as JSON, atomically. γ round-trips exactly (Python float repr).

        Non-finite numbers in ``info_`` (e.g. an unbounded interval end) are written as null;
        an OS error names ``path`` (not the temporary file).
        """
        self._check_fitted()
        save_calibrator(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LogitBiasCalibrator:
        """Read a calibrator written by :meth:`save`.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is not valid JSON, not a calibrator file, another version,
                or has missing/invalid fields, an unknown method or bad parameters (the
                message names the file).
        """
        return load_calibrator(cls, path)
