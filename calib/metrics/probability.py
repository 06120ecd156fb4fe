"""Calibrated probabilities after the bias γ: softmax((z + γ·1_U) / T) and how good they are.

γ fixes the decision between the seen classes S and the absent classes U; this module asks
whether the confidences that come with it mean anything. All numbers are fractions or nats.

Probabilities. For one sample with logits z (C,), the shifted scores are s_c = z_c + γ·1(c ∈ U)
and p = softmax(s / T), computed as exp(s/T − logsumexp(s/T)) in float64. ``temperature`` is
one T > 0, or a pair (T_S, T_U) from :func:`calib.estimator.temperature.fit_temperature` with
``per_group=True``: then a sample whose prediction (under γ) is an absent column is scaled by
T_U, every other sample by T_S. One temperature per row never moves the argmax, so the
prediction is always that of :func:`calib.accuracy_report` at the same γ.

Metrics (:func:`probability_report`), over the N test samples of a group:

- **Top-label confidence and prediction.** The prediction ŷ is the decision rule of
  :mod:`calib.rules.gaps` at γ (the rule every accuracy in calib uses; between-group ties stay
  out of U, within-group ties go to the lowest index); its confidence is p_ŷ.
- **ECE** (``ece``; Guo et al., *On Calibration of Modern Neural Networks*, ICML 2017):
  M equal-width bins I_m = ((m−1)/M, m/M], m = 1..M, closed on the right as in Guo et al.
  (edges m/M as correctly rounded float64 divisions; a confidence exactly on an edge goes to
  the lower bin; 0 would go to the first). ECE = Σ_m |B_m|/N · |acc(B_m) − conf(B_m)|, with
  acc the share of correct predictions and conf the mean confidence of the bin; empty bins
  contribute nothing. torchmetrics' ``multiclass_calibration_error`` and netcal's ``ECE`` use
  bins closed on the left ([a, b)) instead: they agree except for confidences exactly on an edge
  (and torchmetrics puts confidence 1.0 in a bin of its own).
- **Adaptive ECE** (``ece_adaptive``): the same sum over M equal-mass bins (the adaptive
  binning of Nguyen & O'Connor, EMNLP 2015, used for the weighted "adaptive ECE" after Nixon
  et al., CVPR-W 2019 — top-label and weighted by bin size, not Nixon's class-wise ACE). Rule:
  sort the group's confidences c_(1) ≤ … ≤ c_(N); bin m has the upper edge u_m = c_(⌈mN/M⌉)
  and holds the samples with u_{m−1} < confidence ≤ u_m (u_0 = 0). Without ties bin m holds
  the ranks ⌈(m−1)N/M⌉+1 … ⌈mN/M⌉, so sizes differ by at most one; tied confidences always
  share a bin (the lowest whose upper edge reaches them), so ties can leave later bins
  empty, and N < M leaves M − N bins empty. The bins are those of the group's own samples;
  a diagram's edges are 0, u_1, …, u_{M−1}, 1.
- **NLL** (``nll``): mean of −log p_y, computed as logsumexp(s/T) − s_y/T (no log of 0).
- **Brier** (``brier``): mean over samples of Σ_c (p_c − 1[c = y])², the multiclass form of
  Brier (1950), in [0, 2] (scikit-learn's ``brier_score_loss`` with multiclass ``labels``).
- **confidence** (``confidence``): mean top-label confidence, to compare with the accuracy.

Weights (``sample_weight=``, ``average="macro"``; :mod:`calib.metrics.weights`): every mean
above becomes a weighted mean (NLL, Brier, confidence, and each bin's accuracy and confidence),
|B_m|/N becomes the bin's share of the total weight, and the equal-mass edges split the total
weight (a weight of k counts as k copies of the sample). ``macro`` weighs each sample
1/n_class (times its weight): NLL, Brier and confidence become means over the classes of the
per-class means; ECE is that of the class-balanced sample, not a mean of per-class ECEs.

Groups: the unsuffixed keys use every test sample; ``*_seen`` those with a label in S,
``*_absent`` those with a label in U (samples labelled in neither count in the overall
keys only). A group without samples gets NaN with a RuntimeWarning, never 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from calib.class_names import check_class_names, class_ids, resolve_classes
from calib.metrics.binning import bin_edges, bin_statistics
from calib.metrics.weights import sample_weights, weighted_mean
from calib.rules.gaps import compute_gaps
from calib.validation import (
    GROUPS,
    check_absent,
    check_gamma,
    check_group,
    check_labels,
    check_logits,
    check_n_bins,
    like_input,
    temperature_pair,
)

__all__ = [
    "GROUPS",
    "ReliabilityDiagram",
    "shifted_probabilities",
    "probability_report",
    "reliability_diagram",
]

_METRICS = ("ece", "ece_adaptive", "nll", "brier", "confidence")


# ----------------------------------------------------------------------------- probabilities


def _shifted_scores(z: np.ndarray, absent: np.ndarray, gamma: float) -> np.ndarray:
    """(N, C) float64 scores z + γ·1_U (a new array)."""
    s = z.astype(np.float64, copy=True)
    if gamma != 0.0:
        s[:, absent] += gamma
    return s


def _row_temperatures(
    pred: np.ndarray, absent: np.ndarray, temps: tuple[float, float]
) -> np.ndarray:
    """(N, 1) temperature of each row: T_U where the prediction is an absent column, else T_S."""
    t_seen, t_absent = temps
    if t_seen == t_absent:
        return np.full((pred.size, 1), t_seen)
    return np.where(np.isin(pred, absent), t_absent, t_seen)[:, None]


def _log_softmax_(
    scores: np.ndarray, z: np.ndarray, absent: np.ndarray, gamma: float, t: np.ndarray
) -> np.ndarray:
    """Row-wise log-softmax of the float64 scores z + γ·1_U (N, C) divided by the row
    temperatures ``t`` (N, 1), in place.

    The row maximum is subtracted before dividing by T, so that finite logits never overflow
    however small T is (1e306 / 1e-3 would be +inf). Where z + γ itself overflows (finite
    logits and γ near the float64 maximum) the row is formed at half scale, exactly: halving
    is exact in binary floating point, so the differences to the row maximum are the same.
    """
    top = scores.max(axis=1, keepdims=True)
    over = np.flatnonzero(~np.isfinite(top[:, 0]))
    if over.size:
        half = z[over].astype(np.float64) / 2
        half[:, absent] += gamma / 2
        half_top = half.max(axis=1, keepdims=True)
        if not np.isfinite(half_top).all():
            row = int(over[np.flatnonzero(~np.isfinite(half_top[:, 0]))[0]])
            raise ValueError(f"logits row {row} has no finite score: no probability is defined")
        with np.errstate(over="ignore"):  # a difference beyond float64 is -inf: p = 0 there
            scores[over] = (half - half_top) * 2
        top[over] = 0.0
    with np.errstate(over="ignore"):  # (s - max) / T below -1.8e308 is -inf: exp gives 0
        scores -= top
        scores /= t
    scores -= np.log(np.exp(scores).sum(axis=1, keepdims=True))
    return scores


@dataclass(frozen=True)
class _Probabilities:
    log_p: np.ndarray  # (N, C) float64
    pred: np.ndarray  # (N,) int64, the prediction under γ


def _probabilities(
    z: np.ndarray, absent: np.ndarray, gamma: float, temps: tuple[float, float]
) -> _Probabilities:
    pred = compute_gaps(z, absent).predict(gamma)
    with np.errstate(over="ignore"):  # an overflow of z + γ is handled by _log_softmax_
        scores = _shifted_scores(z, absent, gamma)
    log_p = _log_softmax_(scores, z, absent, gamma, _row_temperatures(pred, absent, temps))
    return _Probabilities(log_p=log_p, pred=pred)


def shifted_probabilities(
    logits: Any,
    absent_classes: Any,
    gamma: float = 0.0,
    temperature: Any = 1.0,
    *,
    class_names: Sequence[str] | None = None,
) -> Any:
    """softmax((z + γ·1_U) / T) of every sample: (N, C) float64, rows summing to 1.

    Args:
        logits: (N, C) scores, numpy array or torch tensor (any device, any float dtype).
        absent_classes: the columns U that receive γ (non-empty, not every column): indices,
            or names of ``class_names`` (the two may be mixed).
        gamma: the bias added to the absent columns, in logit units; finite.
        temperature: T > 0 (1 = none), or a pair (T_S, T_U): a sample predicted in U is
            divided by T_U, any other by T_S (see the module docstring).
        class_names: (C,) one name per logit column (index = label), so that U may be given
            by name (:mod:`calib.class_names`); None: indices only.

    Returns:
        The probabilities as float64, a numpy array or a tensor on the input's device.

    Raises:
        ValueError / TypeError: malformed logits or class set, a non-finite gamma, a
            temperature that is not finite and > 0, a class name not in ``class_names``
            (with a did-you-mean), names without ``class_names``, or ``class_names`` that
            are not C names (one per column).
    """
    z = check_logits(logits)
    names = check_class_names(class_names, z.shape[1])
    absent = check_absent(class_ids(absent_classes, names, "absent_classes"), z.shape[1])
    probs = _probabilities(z, absent, check_gamma(gamma), temperature_pair(temperature))
    return like_input(np.exp(probs.log_p), logits)


# ----------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class _Scored:
    """Per-sample quantities that every metric is a mean or a binning of; all (N,)."""

    confidence: np.ndarray
    correct: np.ndarray  # bool
    nll: np.ndarray
    brier: np.ndarray


def _score(log_p: np.ndarray, pred: np.ndarray, y: np.ndarray) -> _Scored:
    rows = np.arange(y.size)
    residual = np.exp(log_p)
    confidence = residual[rows, pred]
    residual[rows, y] -= 1.0  # p − onehot(y), in place
    return _Scored(
        confidence=confidence,
        correct=pred == y,
        nll=-log_p[rows, y],
        brier=np.einsum("ij,ij->i", residual, residual),
    )


def _group_metrics(
    scored: _Scored, rows: np.ndarray | None, n_bins: int, weights: np.ndarray | None = None
) -> dict[str, float]:
    """The metrics over the selected rows (all when None); NaN for an empty selection (or one
    whose weights are all 0)."""
    conf = scored.confidence if rows is None else scored.confidence[rows]
    w = weights if weights is None or rows is None else weights[rows]
    if conf.size == 0 or (w is not None and not w.any()):
        return dict.fromkeys(_METRICS, float("nan"))
    correct = scored.correct if rows is None else scored.correct[rows]
    equal = bin_statistics(conf, correct, bin_edges(conf, n_bins, adaptive=False), w)
    mass = bin_statistics(conf, correct, bin_edges(conf, n_bins, adaptive=True, weights=w), w)
    return {
        "ece": equal.ece(),
        "ece_adaptive": mass.ece(),
        "nll": weighted_mean(scored.nll, weights, rows),
        "brier": weighted_mean(scored.brier, weights, rows),
        "confidence": weighted_mean(scored.confidence, weights, rows),
    }


@dataclass(frozen=True)
class _Prepared:
    scored: _Scored
    label_seen: np.ndarray
    label_absent: np.ndarray
    temps: tuple[float, float]
    gamma: float
    weights: np.ndarray | None = None  # the effective weights (calib.metrics.weights)


def _prepare(
    logits: Any,
    labels: Any,
    seen_classes: Any,
    absent_classes: Any,
    gamma: Any,
    temperature: Any,
    n_bins: Any,
    sample_weight: Any = None,
    average: Any = "micro",
    class_names: Sequence[str] | None = None,
) -> tuple[_Prepared, int]:
    z = check_logits(logits)
    y = check_labels(labels, z.shape[0], z.shape[1])
    seen, absent = resolve_classes(seen_classes, absent_classes, z.shape[1], class_names)
    gamma = check_gamma(gamma)
    temps = temperature_pair(temperature)
    n_bins = check_n_bins(n_bins)
    weights = sample_weights(sample_weight, average, y)
    probs = _probabilities(z, absent, gamma, temps)
    prepared = _Prepared(
        scored=_score(probs.log_p, probs.pred, y),
        label_seen=np.isin(y, seen),
        label_absent=np.isin(y, absent),
        temps=temps,
        gamma=gamma,
        weights=weights,
    )
    return prepared, n_bins


def _warn_empty(group: str, what: str) -> None:
    warnings.warn(
        f"no test sample has a label in the {group} classes: its {what} NaN",
        RuntimeWarning,
        stacklevel=3,
    )


def probability_report(
    logits: Any,
    labels: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    gamma: float = 0.0,
    temperature: Any = 1.0,
    n_bins: int = 15,
    *,
    sample_weight: Any = None,
    average: str = "micro",
    class_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """ECE, adaptive ECE, NLL, Brier and mean confidence of softmax((z + γ·1_U)/T), per group.

    Definitions (bins, ties, groups): the module docstring.

    Args:
        logits: (N, C) scores, numpy array or torch tensor (any device, any float dtype).
        labels: (N,) integer labels in [0, C).
        seen_classes: the fine-tuning classes S: column indices, or names of ``class_names``
            (the two may be mixed).
        absent_classes: the classes U that receive γ (indices or names); default every
            column not in S.
        gamma: the bias added to the absent columns, in logit units; finite.
        temperature: T > 0, or a pair (T_S, T_U) (see :func:`shifted_probabilities`).
        n_bins: M, the number of bins of both ECEs; an int >= 1.
        sample_weight: (N,) weights of the test samples (finite, ≥ 0, not all 0); None: 1 each.
        average: ``"micro"`` (default) or ``"macro"``: class-balanced (see the module
            docstring: each class weighs the same in total).
        class_names: (C,) one name per logit column (index = label), so that the classes
            may be given by name (:mod:`calib.class_names`); None: indices only.

    Returns:
        A dict of Python numbers: ``ece ece_adaptive nll brier confidence`` over every
        sample, the same keys suffixed ``_seen`` (label in S) and ``_absent`` (label in U),
        plus ``gamma``, ``temperature_seen``, ``temperature_absent`` (T_S and T_U, equal for one
        T), ``n_bins``, ``n_samples``, ``n_seen``, ``n_absent`` (counts, whatever the weights).
        ECE and Brier are fractions (Brier in [0, 2]), NLL in nats. A group without samples (or
        whose weights are all 0) gets NaN, with a RuntimeWarning.

    Raises:
        ValueError / TypeError: malformed logits, labels or class sets, a non-finite gamma, a
            temperature that is not finite and > 0, n_bins that is not an int >= 1, a class
            name not in ``class_names`` (with a did-you-mean), names without ``class_names``,
            or ``class_names`` that are not C names (one per column).
    """
    prep, n_bins = _prepare(
        logits,
        labels,
        seen_classes,
        absent_classes,
        gamma,
        temperature,
        n_bins,
        sample_weight,
        average,
        class_names,
    )
    w = prep.weights
    report = _group_metrics(prep.scored, None, n_bins, w)
    for group, rows in (("seen", prep.label_seen), ("absent", prep.label_absent)):
        if not rows.any():
            _warn_empty(group, "probability metrics are")
        elif w is not None and not w[rows].any():
            warnings.warn(
                f"sample_weight is 0 for every test sample of the {group} classes: its "
                "probability metrics are NaN",
                RuntimeWarning,
                stacklevel=2,
            )
        group_metrics = _group_metrics(prep.scored, rows, n_bins, w)
        report |= {f"{k}_{group}": v for k, v in group_metrics.items()}
    return report | {
        "gamma": prep.gamma,
        "temperature_seen": prep.temps[0],
        "temperature_absent": prep.temps[1],
        "n_bins": n_bins,
        "n_samples": int(prep.scored.confidence.size),
        "n_seen": int(prep.label_seen.sum()),
        "n_absent": int(prep.label_absent.sum()),
    }


# ----------------------------------------------------------------------------- the diagram


@dataclass(frozen=True, eq=False)  # arrays inside: compare by identity
class ReliabilityDiagram:
    """The numbers of a reliability diagram: top-label accuracy against confidence, per bin.

    Attributes:
        edges: (M + 1,) bin edges, 0 … 1; bin m holds edges[m] < confidence ≤ edges[m + 1].
        confidence: (M,) mean confidence of each bin's samples (NaN where the bin is empty).
        accuracy: (M,) share of correct predictions in each bin (NaN where empty).
        count: (M,) int64 number of samples in each bin.
        adaptive: equal-mass bins (True) or equal-width bins (False).
        weight: (M,) float64 total weight of each bin with ``sample_weight`` or
            ``average="macro"`` (accuracy and confidence are then weighted means); None
            without weights (every sample weighs 1).
        group: the samples: ``all``, ``seen`` (label in S) or ``absent`` (label in U).
        gamma: the bias applied.
        temperature: (T_S, T_U), equal for a single T.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray
    adaptive: bool
    group: str
    gamma: float
    temperature: tuple[float, float]
    weight: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        return int(self.count.sum())

    @property
    def ece(self) -> float:
        """Σ_m count_m / N · |accuracy_m − confidence_m| over non-empty bins (with weights: the
        bins' weights over the total weight); NaN with no sample (or no weight)."""
        mass = self.count if self.weight is None else self.weight
        total = mass.sum()
        if total == 0:
            return float("nan")
        full = mass > 0
        gaps = mass[full] * np.abs(self.accuracy[full] - self.confidence[full])
        return float(gaps.sum() / total)


def reliability_diagram(
    logits: Any,
    labels: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    gamma: float = 0.0,
    temperature: Any = 1.0,
    n_bins: int = 15,
    adaptive: bool = False,
    group: str = "all",
    *,
    sample_weight: Any = None,
    average: str = "micro",
    class_names: Sequence[str] | None = None,
) -> ReliabilityDiagram:
    """The bins behind ``probability_report``'s ECE (``adaptive`` → ``ece_adaptive``) of ``group``.

    Arguments as in :func:`probability_report`; ``adaptive`` picks equal-mass bins, ``group``
    the samples (``all``, ``seen``: label in S, ``absent``: label in U); ``sample_weight``,
    ``average`` and ``class_names`` (S and U by name) as in :func:`probability_report`
    (weighted bins). The diagram's ``ece``
    equals the report's key for the same group to float rounding (the same bins, summed as
    count × |accuracy − confidence| instead of |hits − Σ confidence|). An empty group gives
    zero counts, NaN bins and a RuntimeWarning.
    """
    group = check_group(group)
    if not isinstance(adaptive, (bool, np.bool_)):
        raise TypeError(f"adaptive must be a bool, got {adaptive!r}")
    prep, n_bins = _prepare(
        logits,
        labels,
        seen_classes,
        absent_classes,
        gamma,
        temperature,
        n_bins,
        sample_weight,
        average,
        class_names,
    )
    rows = {"all": None, "seen": prep.label_seen, "absent": prep.label_absent}[group]
    conf = prep.scored.confidence if rows is None else prep.scored.confidence[rows]
    correct = prep.scored.correct if rows is None else prep.scored.correct[rows]
    w = prep.weights if prep.weights is None or rows is None else prep.weights[rows]
    if conf.size == 0:
        _warn_empty(group, "reliability bins are")
    edges = bin_edges(conf, n_bins, adaptive=bool(adaptive), weights=w)
    bins = bin_statistics(conf, correct, edges, w)
    mass = bins.count if bins.weight is None else bins.weight
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(mass > 0, bins.confidence_sum / mass, np.nan)
        accuracy = np.where(mass > 0, bins.hits / mass, np.nan)
    return ReliabilityDiagram(
        edges=edges,
        confidence=mean_conf,
        accuracy=accuracy,
        count=bins.count,
        adaptive=bool(adaptive),
        group=group,
        gamma=prep.gamma,
        temperature=prep.temps,
        weight=bins.weight,
    )
