"""The premise check: did fine-tuning keep what γ needs, or can no γ help?

γ only moves samples between S and U; it cannot change which absent class wins among U. So
Acc U/U (argmax restricted to U) is the ceiling of Acc U/Y at every γ, and, like AUSUC, it is
the same at every γ. The paper's premise is that fine-tuning on S keeps (or improves) U/U:
the absent classes are still ranked right among themselves, only pushed below S. When U/U
falls after fine-tuning beyond what sampling noise explains, the features lost what γ needs,
and no selector can recover it: they then tend to disagree (one γ trades most of S away).

:func:`premise_check` compares the pre-trained and fine-tuned logits on the *same* test
samples. The noise bound is paired (McNemar): the two models score the same samples, so only
the samples where they disagree carry information about the difference. Let ``n_lost`` be the
U-test samples that the pre-trained model ranks right within U and the fine-tuned one wrong,
``n_gained`` the converse, and ``n_U`` the U-test samples. The drop in U/U is
``(n_lost - n_gained) / n_U``. If the two models were equally good on U, each disagreeing
sample would be as likely lost as gained, so the drop would have mean 0 and standard error
``sqrt(n_lost + n_gained) / n_U`` (given the disagreements). The premise fails when the drop
exceeds ``z`` such standard errors (default z = 3: one false alarm in ~700 runs whose
features were kept, by the normal approximation). The unpaired binomial bound
``sqrt(p1 (1 - p1) / n_U + p2 (1 - p2) / n_U)`` treats the two accuracies as independent and
overstates the noise when the models agree on most samples, as they do here.

AUSUC, NCM U/U (when the caller has it) and the selectors' disagreement are reported beside
the verdict, which rests on U/U alone: it is the one with an exact per-sample paired bound.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from calib.class_names import check_class_names, describe_classes, resolve_classes
from calib.metrics.accuracy import accuracy_report, restricted_hits
from calib.metrics.curve import seen_absent_curve
from calib.metrics.streaming import SeenAbsentState
from calib.validation import check_labels, check_logits, check_real

__all__ = ["PremiseCheck", "premise_check", "paired_drop_bound"]


@dataclass(frozen=True)
class PremiseCheck:
    """The verdict of :func:`premise_check`. Accuracies, drops and bounds are fractions in
    [0, 1] (the ``message`` prints them in %); γ in logit units.

    Attributes:
        holds: False when U/U fell by more than ``bound``: the features lost what γ needs.
        message: one line saying so, with the numbers.
        n_absent: test samples with a label in U (``n_U``).
        acc_absent_absent_pretrained, acc_absent_absent_finetuned: Acc U/U of each model.
        drop: pre-trained minus fine-tuned U/U (negative: fine-tuning improved it).
        n_lost, n_gained: U-test samples right within U before and wrong after, and converse.
        bound: ``z * sqrt(n_lost + n_gained) / n_absent``, the paired noise bound on ``drop``.
        z: the number of standard errors the bound spans.
        ausuc_pretrained, ausuc_finetuned: the area under each model's seen–absent curve.
        ncm_absent_absent_pretrained, ncm_absent_absent_finetuned: NCM U/U on the features,
            when given (None otherwise).
        selector_gamma: each selector's γ, when given; selector_acc_all: the fine-tuned
            model's Acc Y/Y at that γ.
        gamma_spread, acc_all_spread: max − min of those (NaN with fewer than two selectors).
    """

    holds: bool
    message: str
    n_absent: int
    acc_absent_absent_pretrained: float
    acc_absent_absent_finetuned: float
    drop: float
    n_lost: int
    n_gained: int
    bound: float
    z: float
    ausuc_pretrained: float
    ausuc_finetuned: float
    ncm_absent_absent_pretrained: float | None = None
    ncm_absent_absent_finetuned: float | None = None
    selector_gamma: dict[str, float] = field(default_factory=dict)
    selector_acc_all: dict[str, float] = field(default_factory=dict)
    gamma_spread: float = math.nan
    acc_all_spread: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (what ``results.json`` holds under ``"premise"``)."""
        return asdict(self)


def paired_drop_bound(n_lost: int, n_gained: int, n: int, z: float = 3.0) -> float:
    """``z * sqrt(n_lost + n_gained) / n``: the paired (McNemar) noise bound on a drop in
    accuracy of two models scored on the same ``n`` samples (a fraction; 0 when they agree
    on every sample). See the module docstring for why paired."""
    for value, name in ((n_lost, "n_lost"), (n_gained, "n_gained"), (n, "n")):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if n == 0:
        raise ValueError("n must be positive: no sample, no bound")
    if n_lost + n_gained > n:
        raise ValueError(f"n_lost + n_gained = {n_lost + n_gained} exceeds n = {n}")
    z = check_real(z, "z", finite=True)
    if z <= 0:
        raise ValueError(f"z must be positive, got {z!r}")
    return z * math.sqrt(n_lost + n_gained) / n


def _check_ncm(ncm_absent_absent: Any) -> tuple[float, float] | tuple[None, None]:
    if ncm_absent_absent is None:
        return None, None
    try:
        pre, ft = ncm_absent_absent
    except (TypeError, ValueError):
        raise ValueError(
            "ncm_absent_absent must be a (pre-trained, fine-tuned) pair of accuracies, got "
            f"{ncm_absent_absent!r}"
        ) from None
    pair = (
        check_real(pre, "ncm_absent_absent[0]"),
        check_real(ft, "ncm_absent_absent[1]"),
    )
    for i, v in enumerate(pair):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"ncm_absent_absent[{i}] must be an accuracy in [0, 1], got {v!r}")
    return pair


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _message(c: dict[str, Any]) -> str:
    uu = (
        f"U/U {_pct(c['acc_absent_absent_pretrained'])} → "
        f"{_pct(c['acc_absent_absent_finetuned'])} % (change {-100 * c['drop'] + 0.0:+.1f} pts; "
        f"noise bound on a drop {_pct(c['bound'])} pts, paired over n_U = {c['n_absent']})"
    )
    ausuc = f"AUSUC {_pct(c['ausuc_pretrained'])} → {_pct(c['ausuc_finetuned'])}"
    parts = [ausuc]
    if c["ncm_absent_absent_pretrained"] is not None:
        parts.append(
            f"NCM U/U {_pct(c['ncm_absent_absent_pretrained'])} → "
            f"{_pct(c['ncm_absent_absent_finetuned'])} %"
        )
    if len(c["selector_gamma"]) >= 2:
        gammas, accs = c["selector_gamma"].values(), c["selector_acc_all"].values()
        parts.append(
            f"selectors' γ {min(gammas):+.2f} to {max(gammas):+.2f} "
            f"(Acc Y/Y {_pct(min(accs))} to {_pct(max(accs))} %)"
        )
    context = "; ".join(parts)
    if c["holds"]:
        return f"premise holds: {uu}; {context}"
    return f"premise fails: {uu}; {context}: fine-tuning lost what γ needs, no γ can restore it"


def premise_check(
    pretrained_logits: Any,
    finetuned_logits: Any,
    labels: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    *,
    selector_gamma: Mapping[str, float] | None = None,
    ncm_absent_absent: tuple[float, float] | None = None,
    z: float = 3.0,
    class_names: Sequence[str] | None = None,
) -> PremiseCheck:
    """Does fine-tuning keep what γ needs? Compare the two models on what γ cannot change.

    Args:
        pretrained_logits, finetuned_logits: (N, C) scores of the same N test samples
            (numpy or torch, any float dtype); or two :class:`calib.SeenAbsentState` fed
            those samples in the same order, labelled, unweighted (the same verdict: U/U's hits
            are the states' ``hit_absent``, AUSUC and Acc Y/Y their own).
        labels: (N,) their integer labels in [0, C) (None with states: they hold them).
        seen_classes: S; absent_classes: U (default: every column not in S); column indices,
            or names of ``class_names`` (the two may be mixed).
        selector_gamma: optional ``{selector name: γ}`` fitted on the fine-tuned model; their
            spread, and that of the fine-tuned Acc Y/Y at each γ, is reported.
        ncm_absent_absent: optional (pre-trained, fine-tuned) NCM U/U accuracies on the
            features, reported beside (no per-sample data, so no bound of their own).
        z: standard errors the noise bound spans (default 3).
        class_names: (C,) one name per logit column (index = label), so that the classes
            may be given by name (:mod:`calib.class_names`) and errors show them.

    Returns:
        A :class:`PremiseCheck`; ``holds`` is False when U/U dropped by more than
        ``z * sqrt(n_lost + n_gained) / n_U`` (see the module docstring).

    Raises:
        ValueError: malformed logits, labels or class sets, logits of different shapes, no
            test sample with a label in U, a non-positive z, or a bad γ / NCM accuracy; a
            class name not in ``class_names`` (with a did-you-mean), names without
            ``class_names``, or ``class_names`` that are not C names (one per column).
    """
    states = [isinstance(v, SeenAbsentState) for v in (pretrained_logits, finetuned_logits)]
    if any(states):
        pre, ft, y, seen, absent, names = _check_states(
            pretrained_logits, finetuned_logits, labels, seen_classes, absent_classes,
            class_names, states,
        )  # fmt: skip
    else:
        pre = check_logits(pretrained_logits, "pretrained_logits")
        ft = check_logits(finetuned_logits, "finetuned_logits")
        if pre.shape != ft.shape:
            raise ValueError(
                "pretrained_logits and finetuned_logits must score the same samples and "
                f"classes: shapes {pre.shape} and {ft.shape}"
            )
        y = check_labels(labels, pre.shape[0], pre.shape[1])
        names = check_class_names(class_names, pre.shape[1])
        seen, absent = resolve_classes(seen_classes, absent_classes, pre.shape[1], names)
    z = check_real(z, "z", finite=True)
    if z <= 0:
        raise ValueError(f"z must be positive, got {z!r}")
    in_u = np.isin(y, absent)
    n_u = int(in_u.sum())
    if n_u == 0:
        raise ValueError(
            f"no test sample has a label in absent_classes ({describe_classes(absent, names)}): "
            "U/U is undefined, so the premise cannot be checked"
        )
    gammas = {
        str(name): check_real(g, f"selector_gamma[{name!r}]")
        for name, g in (selector_gamma or {}).items()
    }
    ncm_pre, ncm_ft = _check_ncm(ncm_absent_absent)

    hit_pre = _absent_hits(pre, y, absent)[in_u]
    hit_ft = _absent_hits(ft, y, absent)[in_u]
    n_lost = int((hit_pre & ~hit_ft).sum())
    n_gained = int((~hit_pre & hit_ft).sum())
    drop = (n_lost - n_gained) / n_u
    bound = paired_drop_bound(n_lost, n_gained, n_u, z)
    acc_all = {name: _acc_all(ft, y, seen, absent, g) for name, g in gammas.items()}
    fields = {
        "holds": not drop > bound,
        "n_absent": n_u,
        "acc_absent_absent_pretrained": float(hit_pre.mean()),
        "acc_absent_absent_finetuned": float(hit_ft.mean()),
        "drop": drop,
        "n_lost": n_lost,
        "n_gained": n_gained,
        "bound": bound,
        "z": z,
        "ausuc_pretrained": _ausuc(pre, y, seen, absent),
        "ausuc_finetuned": _ausuc(ft, y, seen, absent),
        "ncm_absent_absent_pretrained": ncm_pre,
        "ncm_absent_absent_finetuned": ncm_ft,
        "selector_gamma": gammas,
        "selector_acc_all": acc_all,
        "gamma_spread": max(gammas.values()) - min(gammas.values())
        if len(gammas) >= 2
        else math.nan,
        "acc_all_spread": max(acc_all.values()) - min(acc_all.values())
        if len(acc_all) >= 2
        else math.nan,
    }
    return PremiseCheck(message=_message(fields), **fields)


def _check_states(pre, ft, labels, seen_classes, absent_classes, class_names, states):
    """(pre, ft, labels, S, U, names) of two states of the same labelled, unweighted samples."""
    if not all(states):
        given = "pretrained_logits" if states[0] else "finetuned_logits"
        raise TypeError(
            f"{given} is a SeenAbsentState but the other is not: give two states or two "
            "logit matrices"
        )
    for name, state in (("pretrained_logits", pre), ("finetuned_logits", ft)):
        state.checked_columns(f"premise_check ({name})")
        if state.weighted:
            raise ValueError(
                f"premise_check counts samples, but {name} was fed sample_weight: build the "
                "states without weights"
            )
    if pre.num_classes != ft.num_classes:
        raise ValueError(
            "pretrained_logits and finetuned_logits must score the same classes: states of "
            f"{pre.num_classes} and {ft.num_classes} classes"
        )
    names = check_class_names(class_names, pre.num_classes)
    seen, absent = resolve_classes(seen_classes, absent_classes, pre.num_classes, names)
    for name, state in (("pretrained_logits", pre), ("finetuned_logits", ft)):
        if not (
            np.array_equal(state.seen_classes, seen)
            and np.array_equal(state.absent_classes, absent)
        ):
            raise ValueError(
                f"{name} was built for other classes than seen_classes/absent_classes "
                f"(S={state.seen_classes.tolist()[:10]}, U={state.absent_classes.tolist()[:10]})"
            )
    y = pre.columns()["label"]
    if not np.array_equal(y, ft.columns()["label"]):
        raise ValueError(
            "pretrained_logits and finetuned_logits must be states of the same samples in the "
            f"same order, but their labels differ ({pre.n_samples} and {ft.n_samples} samples)"
        )
    if labels is not None and not np.array_equal(check_labels(labels, y.size, None), y):
        raise ValueError("labels differ from the labels the states were fed")
    return pre, ft, y, seen, absent, names


def _absent_hits(scores, y, absent):
    """(N,) bool: the best U column is the label (argmax within U, ties to the lowest)."""
    if isinstance(scores, SeenAbsentState):
        return scores.columns()["hit_absent"]
    return restricted_hits(scores, y, absent)


def _ausuc(scores, y, seen, absent) -> float:
    if isinstance(scores, SeenAbsentState):
        return scores.ausuc()
    return seen_absent_curve(scores, y, seen, absent).ausuc


def _acc_all(scores, y, seen, absent, gamma: float) -> float:
    if isinstance(scores, SeenAbsentState):
        return scores.report(gamma, topk=())["acc_all"]
    return accuracy_report(scores, y, seen, absent, gamma=gamma, topk=(1,))["acc_all"]
