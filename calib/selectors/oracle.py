"""``oracle``: the best γ on labelled target data with U — an upper bound for analysis, never a
method (it reads absent-class labels, and says so in its declaration)."""

from __future__ import annotations

from typing import Any

from calib.metrics.curve import checked_curve
from calib.metrics.streaming import SeenAbsentState
from calib.metrics.weights import sample_weights
from calib.rules.stepmax import maximise
from calib.selectors.checks import check_groups, check_state, check_width, criterion_values
from calib.selectors.spec import check_average, check_criterion, register_selector
from calib.validation import check_classes, check_labels, check_logits

__all__ = ["select_oracle"]


@register_selector(
    "oracle",
    data="target_labelled",
    params={"criterion": "acc_all", "average": "micro"},
    checks={"criterion": check_criterion, "average": check_average},
    uses_absent_labels=True,
    sample_weight=True,
    description="best γ on labelled target data with U (an upper bound for analysis)",
)
def select_oracle(
    logits: Any,
    labels: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    criterion: str = "acc_all",
    num_classes: int | None = None,
    average: str = "micro",
    sample_weight: Any = None,
) -> tuple[float, dict[str, Any]]:
    """The best γ on labelled target data that include absent-class samples.

    This uses labelled absent-class (U) data, which a real deployment does not have: it is an
    upper bound for analysis, not a selector to report as a method.

    Exact: the criterion is a step function of γ (:func:`calib.seen_absent_curve`); its best
    point k holds on ``(gamma[k-1], gamma[k]]`` and γ is that interval's midpoint
    (``gamma[0] - 1`` for the first, ``gamma[-2] + 1`` for the last, unbounded one). Ties go
    to the interval closest to γ = 0.

    Args:
        logits: (N, C) target logits; labels: (N,) their labels (any class). Or ``logits`` a
            labelled :class:`~calib.metrics.streaming.SeenAbsentState` (built with these S
            and U; its weights those given to its ``update``) and ``labels`` None: the same
            γ, exactly (from the state's curve).
        seen_classes, absent_classes: S and U (default U = every column not in S).
        criterion: ``"acc_all"`` (default) or ``"hmean"`` (of acc_seen and acc_absent).
        average: ``"micro"`` (default, per-sample accuracies) or ``"macro"`` (class-balanced:
            the mean over the classes of each group of the per-class accuracy).
        sample_weight: (N,) weights of the samples in the criterion; None: 1 each.

    Returns:
        ``(gamma, info)``; ``info["value"]`` is the criterion reached, ``info["interval"]``
        the γ interval that reaches it.
    """
    check_criterion(criterion)
    if isinstance(logits, SeenAbsentState):
        check_state(logits, labels, seen_classes, absent_classes, num_classes, sample_weight)
        y = logits.checked_columns("oracle")["label"]
        weights = logits.weights(average)
        check_groups(y, logits.seen_classes, logits.absent_classes, criterion, weights=weights)
        curve = logits.curve(average)
        weighted = logits.weighted
    else:
        z = check_logits(logits, values=False)  # values: checked by the curve's one pass
        check_width(num_classes, z.shape[1])
        y = check_labels(labels, z.shape[0], z.shape[1])
        seen, absent = check_classes(seen_classes, absent_classes, z.shape[1])
        weights = sample_weights(sample_weight, average, y)
        check_groups(y, seen, absent, criterion, weights=weights)
        curve = checked_curve(z, y, seen, absent, weights=weights)  # checked above: not again
        weighted = sample_weight is not None
    choice = maximise([(curve.gamma, criterion_values(curve, criterion))])
    return choice.gamma, {
        "method": "oracle",
        "criterion": criterion,
        "average": average,
        "weighted": weighted,
        "value": choice.value,
        "interval": choice.interval,
        "uses_absent_labels": True,
        "note": "upper bound: chosen with labelled absent-class data",
    }
