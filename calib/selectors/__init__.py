"""γ selectors: the ways to choose the bias added to the absent-class logits.

Every selector is a plain function that returns ``(gamma, info)``: γ in logit units (a finite
float) and a dict of details (the criterion reached, the data it used, ...). It is registered
with :func:`register_selector`, which stores ONE declaration, a :class:`SelectorSpec`, in
:data:`SELECTORS`: the kind of data the selector takes (one of :data:`DATA_KINDS`, whose
:class:`DataKind` record in :mod:`calib.selectors.data_kinds` says what it holds, whether it
carries labels or U rows and what a temperature fitted on it means) and its parameters with
their defaults. :class:`calib.LogitBiasCalibrator`, :func:`calib.calibrate` and
the run harness read that declaration to decide what to extract, what to pass and what to
refuse; nothing inspects signatures or branches on names.

==========  ======================  ========================================  =============
key         data kind               what it is                                parameters
==========  ======================  ========================================  =============
``alg``     ``finetune_train``      fine-tuning training logits + labels (S)  —
``oracle``  ``target_labelled``     labelled target data with U (upper bound) ``criterion``,
                                                                              ``average``
``pcv``     ``pseudo_splits``       :class:`PseudoSplit` s: held-out S data   ``criterion``,
                                                                              ``average``
``prior``   ``target_unlabelled``   unlabelled target logits, no labels       ``prior``
``fixed``   None                    nothing                                   ``gamma``
==========  ======================  ========================================  =============

A selector is called as ``fn(**data, seen_classes=S, absent_classes=U, num_classes=C,
**params)``, where ``data`` holds the fit inputs of its kind (:data:`DATA_INPUTS`: ``logits``
(N, C), ``labels`` (N,), ``pseudo_splits``), plus ``sample_weight`` (N,) for a selector
registered with ``sample_weight=True`` (``oracle``; PCV's weights ride on each
:class:`PseudoSplit`). ``average="macro"`` makes the curve-based criteria class-balanced (the
mean over classes of per-class accuracy, :mod:`calib.metrics.weights`). Every γ a selector
returns obeys the decision rule of :mod:`calib.rules.gaps` (a sample moves to U exactly when
γ > its gap), and the curve-based selectors are exact: they optimise over all of ℝ, not over
a grid.

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

from calib.selectors.alg import select_alg
from calib.selectors.data_kinds import DATA_KIND_RECORDS, DataKind, data_kind
from calib.selectors.fixed import select_fixed

# built-in selectors, registered on import (in this order: the order of SELECTORS)
from calib.selectors.oracle import select_oracle
from calib.selectors.pcv import select_pcv
from calib.selectors.prior import select_prior
from calib.selectors.spec import (
    CRITERIA,
    DATA_INPUTS,
    DATA_KINDS,
    FIT_INPUTS,
    REQUIRED,
    SELECTORS,
    PseudoSplit,
    SelectorSpec,
    check_average,
    check_criterion,
    check_gamma,
    check_prior,
    check_pseudo_splits,
    register_selector,
    selector_arguments,
    selector_spec,
)

__all__ = [
    "SELECTORS",
    "CRITERIA",
    "DATA_KINDS",
    "DATA_INPUTS",
    "DATA_KIND_RECORDS",
    "DataKind",
    "data_kind",
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
    "check_criterion",
    "check_prior",
    "check_gamma",
    "check_average",
]
