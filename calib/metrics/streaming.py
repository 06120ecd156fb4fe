"""The seen–absent metrics from a stream of logit batches: O(N) memory, whatever C, exact.

Everything the γ pipeline reads from a (N, C) logit matrix is O(1) per sample under the rule of
:mod:`calib.rules.gaps`: the gap g = max over the non-U columns − max over U, whether the label
wins among the non-U columns, among U and among S, the label (its group), a weight, and for
ALG one float64 term. :class:`SeenAbsentState` keeps exactly that, batch by batch, so the
logits never need to be held at once:

- :meth:`~SeenAbsentState.curve`, :meth:`~SeenAbsentState.ausuc` and the top-1
  :meth:`~SeenAbsentState.report` at any γ equal :func:`calib.seen_absent_curve`,
  :func:`calib.ausuc` and :func:`calib.accuracy_report` on the whole matrix bit for bit (the
  per-sample values come from the same one-pass scan, :func:`calib.rules.gaps.scan_checked`);
  top-k (k > 1) at the γ values declared when the state is built;
- the selectors ``alg``, ``prior`` and ``oracle`` (:mod:`calib.selectors`) take a state for
  their logits, ``pcv`` one per split, and give the γ of the logits (ALG to float rounding,
  the others exactly), :class:`calib.LogitBiasCalibrator` too;
- :meth:`~SeenAbsentState.merge` joins two states, :meth:`~SeenAbsentState.sync` gathers the
  per-sample state of every process of a ``torch.distributed`` group (not the logits).

Memory, bytes per sample whatever C: 8 (gap) + 8 (label) + 3 (flags) = 19 for the curve and
the top-1 reports (1.9 MB per 100,000 samples; their float32 logits at C = 21,843: 8.7 GB);
+ 8 with weights; + 9 with ALG terms (17 alone, ``keep_gaps=False``); + 8 per γ and 16 more
with top-k; + 8 with indices.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from calib.class_names import check_class_names, resolve_classes
from calib.metrics.accuracy import group_accuracies, warn_empty_groups
from calib.metrics.curve import SeenAbsentCurve, curve_of_samples
from calib.metrics.weights import effective_weights
from calib.rules.gaps import group_codes, scan_checked
from calib.rules.kernels import ABSENT, SEEN, alg_sums
from calib.validation import (
    as_numpy,
    check_average,
    check_int,
    check_labels,
    check_logits,
    check_num_classes,
    check_real,
    check_sample_weight,
    check_stats,
    is_tensor,
)

__all__ = [
    "SeenAbsentState",
    "alg_from_state",
    "alg_term",
    "alg_scale",
    "alg_gap_std",
    "alg_too_large",
    "check_alg_labels",
    "ALG_OK",
    "ALG_DEAD",
    "ALG_OVERFLOW",
]

#: Per-sample columns: name -> dtype (``rank`` has one column per tracked γ).
_COLUMNS = {
    "gap": np.float64,  # max over non-U − max over U (float64, as the scan gives it)
    "hit_other": np.bool_,  # the best non-U column is the label (right while γ ≤ gap)
    "hit_absent": np.bool_,  # the best U column is the label (right once γ > gap)
    "hit_seen": np.bool_,  # the best S column is the label (Acc S/S)
    "label": np.int64,
    "weight": np.float64,
    "alg": np.float64,  # the sample's ALG term (alg_term; calib.selectors.select_alg)
    "alg_flag": np.int8,  # 0 finite term; 1 a -inf logit in S or U; 2 the sums overflow
    "rank": np.int64,  # (n, G): columns beating the label under each tracked γ
    "rank_seen": np.int64,  # among S only (|C| when the label is not in S)
    "rank_absent": np.int64,  # among U only
    "index": np.int64,  # the caller's sample index (sync's order)
}

#: Flags of the ALG terms (column ``alg_flag``): a finite term; a -inf logit in S or U (no
#: term: ALG refuses); finite logits whose sums overflow (the term kept at :func:`alg_scale`).
ALG_OK, ALG_DEAD, ALG_OVERFLOW = 0, 1, 2

_ORDERS = ("interleaved", "contiguous")


class SeenAbsentState:
    """Per-sample O(1) state of the seen–absent metrics, filled batch by batch.

    Args:
        num_classes: C, the logits' width (every batch must have it).
        seen_classes: the fine-tuning classes S: column indices, or names of ``class_names``
            (the two may be mixed).
        absent_classes: the classes U that receive γ (indices or names); default every
            column not in S.
        topk: besides top-1 (always), the k > 1 whose accuracies :meth:`report` can give.
        gammas: the γ values (logit units) at which top-k accuracies are kept; one rank per
            sample and γ. Top-1 needs none: it is exact at every γ.
        alg: also keep each sample's ALG term (:func:`calib.selectors.select_alg` takes the
            state): one more pass over each batch.
        keep_gaps: keep the gaps and hit flags (the curve, reports, prior, oracle, PCV).
            ``keep_gaps=False`` with ``alg=True``: the ALG terms alone, one pass per batch (the
            state of the fine-tuning training data).
        class_names: (C,) one name per logit column (index = label), so that the classes
            may be given by name (:mod:`calib.class_names`); kept as the tuple
            ``class_names`` (None without), part of the settings that :meth:`merge` and
            :meth:`sync` compare, and shown in errors that name a class.

    The state grows by one row per sample; its arrays are numpy whatever the batches were.
    A state is either labelled or not (its first batch decides); an unlabelled state holds
    the gaps only (for ``prior``). Pickles as plain numpy.

    Raises:
        ValueError: malformed class sets, ``num_classes`` < 2, a k < 1, a NaN γ, nothing to
            keep, top-k without the gaps, a class name not in ``class_names`` (with a
            did-you-mean), names without ``class_names``, or ``class_names`` that are not C
            names (one per column).
    """

    #: the names of the columns (a tuple of C str), or None; a class attribute too, so that
    #: a state pickled before names existed loads with None
    class_names: tuple[str, ...] | None = None

    def __init__(
        self,
        num_classes: int,
        seen_classes: Any,
        absent_classes: Any = None,
        *,
        topk: Iterable[int] = (1,),
        gammas: Iterable[float] = (0.0,),
        alg: bool = False,
        keep_gaps: bool = True,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.num_classes = check_num_classes(num_classes)
        self.class_names = check_class_names(class_names, self.num_classes)
        self.seen_classes, self.absent_classes = resolve_classes(
            seen_classes, absent_classes, self.num_classes, self.class_names
        )
        self.topk = _check_topk(topk)
        for k in self.topk:
            if k > self.num_classes:  # as calib.accuracy_report says it
                warnings.warn(
                    f"topk={self.topk}: k={k} exceeds the {self.num_classes} classes, so every "
                    f"label is among the top {k} and the _top{k} accuracies are 1",
                    RuntimeWarning,
                    stacklevel=2,
                )
        self.gammas = tuple(sorted({check_real(g, "gammas") for g in _iterable(gammas, "gammas")}))
        if self.topk and not self.gammas:
            raise ValueError(f"topk={self.topk} needs at least one γ in gammas, got none")
        for name, value in (("alg", alg), ("keep_gaps", keep_gaps)):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        self.alg, self.keep_gaps = bool(alg), bool(keep_gaps)
        if not (self.keep_gaps or self.alg):
            raise ValueError("keep_gaps=False keeps nothing without alg=True")
        if self.topk and not self.keep_gaps:
            raise ValueError(f"topk={self.topk} needs keep_gaps=True (ranks come with the gaps)")
        #: the column every sample has (its length is the state's)
        self._count = "gap" if self.keep_gaps else "alg"
        self._codes = group_codes(self.num_classes, self.seen_classes, self.absent_classes)
        self.reset()

    # ------------------------------------------------------------------ filling

    def reset(self) -> SeenAbsentState:
        """Forget every sample (the settings stay)."""
        self._chunks: list[dict[str, np.ndarray]] = []
        self._joined: dict[str, np.ndarray] | None = None
        self.labelled: bool | None = None  # decided by the first batch
        self.weighted = False
        self.indexed: bool | None = None
        return self

    def update(
        self,
        logits: Any,
        labels: Any = None,
        sample_weight: Any = None,
        index: Any = None,
    ) -> SeenAbsentState:
        """Add one batch: its per-sample values are computed where the logits are.

        Args:
            logits: (n, C) scores, numpy array or torch tensor on any device (any real dtype;
                a tensor on a GPU is reduced there and only (n,) values come to the host).
            labels: (n,) integer labels in [0, C); None for an unlabelled state.
            sample_weight: (n,) finite weights ≥ 0 (a batch may be all zero); None: 1 each.
            index: (n,) the samples' positions in the data set, all distinct over the stream:
                :meth:`sync` then restores that order (and drops repeats, as
                ``DistributedSampler`` pads shards with). Every batch or none gives it.

        Returns:
            ``self``.

        Raises:
            ValueError: logits not (n, C) for the declared C, NaN/+inf or an all ``-inf`` row;
                labels out of range or of the wrong length; a batch labelled otherwise than
                the state; bad weights or indices.
        """
        self._add(self._reduce(logits, labels, sample_weight, index))
        return self

    def _reduce(
        self, logits: Any, labels: Any, sample_weight: Any, index: Any
    ) -> dict[str, np.ndarray]:
        """The per-sample columns of one batch (numpy, O(n))."""
        shape = tuple(getattr(logits, "shape", ()))
        if len(shape) == 2 and shape[0] == 0 and shape[1] == self.num_classes:
            n = 0  # an empty shard's batch: nothing to add, but its other arguments are checked
            z = None
        else:
            z = check_logits(logits, values=False, on_device=True)
            n = int(z.shape[0])
            if z.shape[1] != self.num_classes:
                raise ValueError(
                    f"logits have {z.shape[1]} columns but the state was built for "
                    f"num_classes={self.num_classes}"
                )
        labelled = labels is not None
        if self.labelled is not None and labelled != self.labelled:
            have = "labelled" if self.labelled else "unlabelled"
            raise ValueError(
                f"labels {'given' if labelled else 'missing'} for a batch of a {have} state: "
                "every batch of a state is labelled, or none is"
            )
        y = check_labels(labels, n, self.num_classes) if labelled else None
        w = _check_batch_weight(sample_weight, n)
        idx = None if index is None else _check_index(index, n)
        if self.indexed is not None and (idx is not None) != self.indexed:
            raise ValueError(
                "index given for some batches and not for others: give it for every batch "
                "(sync orders the samples by it) or for none"
            )
        out: dict[str, np.ndarray] = {self._count: np.empty(0, np.float64)}
        if n and self.alg and not labelled:
            raise ValueError("alg=True needs labels: the ALG term reads the label's logit")
        if n and self.keep_gaps:
            ks = y is not None and bool(self.topk)
            first_gamma = self.gammas[0] if ks else 0.0
            scanned = scan_checked(
                z, self.seen_classes, self.absent_classes, y if ks else None, first_gamma
            )
            out["gap"] = scanned["gap"]
            if y is not None:
                out["hit_other"] = scanned["pred_other"] == y
                out["hit_absent"] = scanned["pred_absent"] == y
                out["hit_seen"] = scanned["pred_seen"] == y
            if ks:
                ranks = [scanned["rank"]]
                for gamma in self.gammas[1:]:
                    ranks.append(
                        scan_checked(z, self.seen_classes, self.absent_classes, y, gamma)["rank"]
                    )
                out["rank"] = np.stack(ranks, axis=1)
                out["rank_seen"] = scanned["rank_seen"]
                out["rank_absent"] = scanned["rank_absent"]
        if n and self.alg:  # without the scan, its pass checks the values
            out["alg"], out["alg_flag"] = self._alg_terms(z, y, check=not self.keep_gaps)
        if y is not None:
            out["label"] = y
        if w is not None:
            out["weight"] = w
        if idx is not None:
            out["index"] = idx
        self.labelled = labelled
        self.indexed = idx is not None
        return out

    def _alg_terms(self, z: Any, y: np.ndarray, check: bool) -> tuple[np.ndarray, np.ndarray]:
        """(n,) ALG terms of a batch checked for shape and their flags (see
        ``alg_flag``); ``check``: the value checks of the scan in the same pass."""
        seen, absent = self.seen_classes, self.absent_classes
        if is_tensor(z):  # on its device: only (n,) sums come back
            import torch

            if check:
                lo, hi = z.amin(dim=1).cpu().numpy(), z.amax(dim=1).cpu().numpy()
                nan = z.isnan().any(dim=1).cpu().numpy()
                rare = nan.any() or hi.max() == np.inf or lo.min() >= 0
                # the values themselves only for an error message or the probability check
                values = as_numpy(z, "logits") if rare else np.empty((0, z.shape[1]))
                check_stats(values, "logits", lo, hi, nan)
            zd = z.to(torch.float64)
            s_idx = torch.as_tensor(seen, device=z.device)
            a_idx = torch.as_tensor(absent, device=z.device)
            y_t = torch.as_tensor(y, device=z.device)
            sum_seen = zd.index_select(1, s_idx).sum(dim=1).cpu().numpy()
            sum_absent = zd.index_select(1, a_idx).sum(dim=1).cpu().numpy()
            true_logit = zd.gather(1, y_t[:, None])[:, 0].cpu().numpy()
        else:
            sum_seen, sum_absent, lo, hi, nan = alg_sums(z, self._codes)
            if check:
                check_stats(z, "logits", lo, hi, nan)
            true_logit = z[np.arange(z.shape[0]), y].astype(np.float64)
        terms = alg_term(sum_seen, sum_absent, true_logit, seen.size, absent.size)
        flags = np.zeros(terms.shape, np.int8)
        bad = ~np.isfinite(terms)
        if bad.any():
            rows = np.flatnonzero(bad)
            used = np.concatenate([seen, absent])
            sub = z[rows] if not is_tensor(z) else as_numpy(z[rows], "logits")
            dead = np.isneginf(sub[:, used]).any(axis=1)
            flags[rows[dead]] = ALG_DEAD
            over = rows[~dead]
            if over.size:  # finite logits whose sums overflow: the terms at an exact scale
                flags[over] = ALG_OVERFLOW
                scale = alg_scale(seen.size, absent.size)
                zs = np.asarray(sub[~dead], dtype=np.float64) * scale
                s_sum, a_sum = alg_sums(zs, self._codes)[:2]
                t = zs[np.arange(over.size), y[over]]
                terms[over] = alg_term(s_sum, a_sum, t, seen.size, absent.size)
        return terms, flags

    def reduce(
        self, logits: Any, labels: Any = None, sample_weight: Any = None, index: Any = None
    ) -> dict[str, np.ndarray]:
        """The per-sample columns of one batch — what :meth:`update` adds — without adding
        them: for a container that keeps and gathers them itself (a ``torchmetrics.Metric``,
        :mod:`calib.metrics.lightning_metric`); :meth:`extend` takes them back.

        Same arguments and errors as :meth:`update`; (n,) numpy arrays (``rank``: (n, G)).
        """
        return self._reduce(logits, labels, sample_weight, index)

    def extend(self, columns: dict[str, Any]) -> SeenAbsentState:
        """Add per-sample columns made by :meth:`reduce` (numpy arrays or tensors on any
        device, possibly concatenated over batches and processes); returns ``self``.

        Raises:
            ValueError: unknown or missing columns, columns of different lengths, or columns
                of a labelled (indexed) state for one that is not.
        """
        cols = {key: np.asarray(as_numpy(value, key)) for key, value in columns.items()}
        unknown = sorted(set(cols) - set(_COLUMNS))
        if unknown or self._count not in cols:
            raise ValueError(
                f"columns must be those of SeenAbsentState.reduce, got {sorted(cols)}"
                + (f" (unknown: {unknown})" if unknown else f" (no {self._count!r})")
            )
        labelled, indexed = "label" in cols, "index" in cols
        want = {key for key, _ in _layout(self, labelled, "weight" in cols, indexed)}
        if set(cols) != want:
            raise ValueError(
                f"columns {sorted(cols)} are not those of this state's reduce: {sorted(want)}"
            )
        lengths = {key: value.shape[0] for key, value in cols.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns of different lengths: {lengths}")
        for mine, theirs, what in (
            (self.labelled, labelled, "labels"),
            (self.indexed, indexed, "indices"),
        ):
            if self.n_samples and mine != theirs:
                raise ValueError(
                    f"columns {'with' if theirs else 'without'} {what} for a state "
                    f"{'without' if theirs else 'with'} them"
                )
        if not lengths[self._count]:
            return self
        self.labelled, self.indexed = labelled, indexed
        self._add({key: value.astype(_COLUMNS[key], copy=False) for key, value in cols.items()})
        return self

    def _add(self, chunk: dict[str, np.ndarray]) -> None:
        if chunk[self._count].size == 0:
            return
        if "weight" in chunk and not self.weighted:
            self.weighted = True
        self._chunks.append(chunk)
        self._joined = None

    def merge(self, other: SeenAbsentState) -> SeenAbsentState:
        """Append ``other``'s samples after this state's (in place); returns ``self``.

        Raises:
            TypeError: ``other`` is not a :class:`SeenAbsentState`.
            ValueError: the two were built with different classes or settings (class names
                included: names and no names differ), or one is labelled (or indexed) and
                the other is not.
        """
        if not isinstance(other, SeenAbsentState):
            raise TypeError(f"merge needs a SeenAbsentState, got {type(other).__name__}")
        mismatch = _config_mismatch(self._config(), other._config())
        if mismatch:
            raise ValueError(f"cannot merge states built with different {mismatch}")
        for mine, theirs, what in (
            (self.labelled, other.labelled, "labelled"),
            (self.indexed, other.indexed, "indexed"),
        ):
            if mine is not None and theirs is not None and mine != theirs:
                raise ValueError(f"cannot merge a {what} state with one that is not")
        if other.n_samples:
            self.labelled = other.labelled
            self.indexed = other.indexed
            self.weighted |= other.weighted
            self._chunks.append(other.columns())
            self._joined = None
        return self

    # ------------------------------------------------------------------ reading

    @property
    def n_samples(self) -> int:
        return sum(int(c[self._count].size) for c in self._chunks)

    def __len__(self) -> int:
        return self.n_samples

    def __repr__(self) -> str:
        return (
            f"SeenAbsentState(num_classes={self.num_classes}, |S|={self.seen_classes.size}, "
            f"|U|={self.absent_classes.size}, n_samples={self.n_samples})"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_chunks"] = [self.columns()] if self._chunks else []
        state["_joined"] = None
        return state

    def columns(self) -> dict[str, np.ndarray]:
        """The per-sample state: name -> (N,) array (``rank``: (N, len(gammas))).

        ``weight`` is present when some batch had weights (1 for the others); the arrays
        are shared with the state: do not write into them.
        """
        if self._joined is None:
            if not self._chunks:
                self._joined = {}
            else:
                keys = set().union(*self._chunks)
                joined = {}
                for key in keys:
                    if key == "weight":
                        parts = [
                            c.get("weight", np.ones(c[self._count].size)) for c in self._chunks
                        ]
                    else:
                        parts = [c[key] for c in self._chunks]
                    joined[key] = np.concatenate(parts)
                self._joined = joined
                self._chunks = [joined]  # one chunk from now on: no copy at the next read
        return self._joined

    @property
    def gaps(self) -> np.ndarray:
        """(N,) float64 gaps: max over non-U − max over U per sample."""
        return self.columns().get("gap", np.empty(0))

    def checked_columns(self, what: str, gaps: bool = True) -> dict[str, np.ndarray]:
        """:meth:`columns` of a labelled state with samples (and the gaps unless ``gaps`` is
        False); a ValueError naming ``what`` otherwise."""
        if gaps and not self.keep_gaps:
            raise ValueError(
                f"{what} needs the gaps, but the state was built with keep_gaps=False "
                "(it keeps the ALG terms only)"
            )
        cols = self.columns()
        if not cols:
            raise ValueError(f"{what}: the state holds no sample yet (call update first)")
        if not self.labelled:
            raise ValueError(f"{what} needs labels, but the state was filled without them")
        return cols

    def label_groups(self) -> tuple[np.ndarray, np.ndarray]:
        """(N,) bool masks of the samples labelled in S and in U."""
        group = self._codes[self.checked_columns("label groups", gaps=False)["label"]]
        return group == SEEN, group == ABSENT

    def weights(self, average: str = "micro") -> np.ndarray | None:
        """(N,) effective weights of :mod:`calib.metrics.weights` (``sample_weight``, or per
        class ``w / W_class`` for ``average="macro"``); None for micro without weights.

        Raises:
            ValueError: an ``average`` other than micro/macro; weights that are 0 for every
                sample.
        """
        average = check_average(average)
        cols = self.checked_columns("weights", gaps=False)
        w = cols.get("weight")
        if w is not None and not w.any():
            raise ValueError("sample_weight is 0 for every sample: the weighted mean is undefined")
        return effective_weights(cols["label"], w, average)

    def curve(self, average: str = "micro") -> SeenAbsentCurve:
        """:func:`calib.seen_absent_curve` of every sample so far (numpy arrays), with the
        weights given to :meth:`update` and ``average`` (``"micro"`` or ``"macro"``).

        Equals the curve of the whole logit matrix (with the same ``sample_weight`` and
        ``average``) bit for bit.
        """
        cols = self.checked_columns("curve")
        label_seen, label_absent = self.label_groups()
        return curve_of_samples(
            cols["gap"],
            cols["hit_other"],
            cols["hit_absent"],
            label_seen,
            label_absent,
            self.weights(average),
        )

    def ausuc(self, average: str = "micro") -> float:
        """The area under :meth:`curve` (NaN, with a warning, without seen or absent samples)."""
        return self.curve(average).ausuc

    def report(
        self, gamma: float = 0.0, topk: Iterable[int] | None = None, average: str = "micro"
    ) -> dict[str, float]:
        """:func:`calib.accuracy_report` at ``gamma`` from the state, bit for bit.

        Args:
            gamma: the bias (±inf allowed). Top-1 at any γ; top-k only at a γ of ``gammas``.
            topk: the k to report (1 always); default the state's ``topk``.
            average: ``"micro"`` or ``"macro"`` (class-balanced), with the update's weights.

        Returns:
            The keys of :func:`calib.accuracy_report`.

        Raises:
            ValueError: a k > 1 not tracked, or a top-k at a γ not in ``gammas``.
        """
        cols = self.checked_columns("report")
        gamma = check_real(gamma, "gamma")
        ks = self.topk if topk is None else _check_topk(topk)
        untracked = [k for k in ks if k not in self.topk]
        if untracked:
            raise ValueError(
                f"topk={list(ks)}: the state tracks top-k for k in {list(self.topk)} only "
                "(declare topk when building the state)"
            )
        if ks and gamma not in self.gammas:
            raise ValueError(
                f"top-k at gamma={gamma!r}: the state keeps ranks at gammas={list(self.gammas)} "
                "only (declare gammas when building the state); top-1 works at any γ"
            )
        weights = self.weights(average)
        label_seen, label_absent = self.label_groups()
        n_seen, n_absent = warn_empty_groups(label_seen, label_absent, weights)
        # the rule of calib.rules.gaps.Gaps.predict: γ > gap moves the sample to U
        hit_all = np.where(gamma > cols["gap"], cols["hit_absent"], cols["hit_other"])
        report = group_accuracies(
            hit_all, cols["hit_seen"], cols["hit_absent"], label_seen, label_absent, "", weights
        )
        for k in ks:
            j = self.gammas.index(gamma)
            report |= group_accuracies(
                cols["rank"][:, j] < k,
                cols["rank_seen"] < k,
                cols["rank_absent"] < k,
                label_seen,
                label_absent,
                f"_top{k}",
                weights,
            )
        n = int(cols["gap"].size)
        return report | {"gamma": gamma, "n_samples": n, "n_seen": n_seen, "n_absent": n_absent}

    # ------------------------------------------------------------------ processes

    def _config(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "seen_classes": self.seen_classes.tolist(),
            "absent_classes": self.absent_classes.tolist(),
            "topk": self.topk,
            "gammas": self.gammas,
            "alg": self.alg,
            "keep_gaps": self.keep_gaps,
            "class_names": self.class_names,
        }

    def _empty_like(self) -> SeenAbsentState:
        new = SeenAbsentState.__new__(SeenAbsentState)
        new.__dict__.update(
            {k: v for k, v in self.__dict__.items() if k not in ("_chunks", "_joined")}
        )
        return new.reset()

    def sync(self, group: Any = None, order: str = "interleaved") -> SeenAbsentState:
        """Every process's samples, on every process: a new state (this one is unchanged).

        The per-sample state is all-gathered (O(N) numbers, shards of any sizes), never the
        logits. The samples come back in data-set order:

        - with ``index`` given to :meth:`update`: sorted by it; a repeated index (the padding
          of ``DistributedSampler``) is kept once, from the lowest rank;
        - else ``order="interleaved"``: rank r's j-th sample is sample r + j·W of W processes
          (:class:`calib.distributed.ShardSampler`, ``DistributedSampler(shuffle=False)``
          without padding); the shard sizes must be those of such a split;
        - ``order="contiguous"``: rank 0's samples, then rank 1's, ...

        Args:
            group: the ``torch.distributed`` process group (default: the world).
            order: ``"interleaved"`` (default) or ``"contiguous"``; unused with indices.

        Raises:
            RuntimeError: no initialised ``torch.distributed`` process group.
            ValueError: the processes' states were built with different settings (class names
                included; or one is labelled and another not), or shard sizes that no
                interleaved split gives.
        """
        import torch
        import torch.distributed as dist

        if order not in _ORDERS:
            raise ValueError(f"order must be one of {_ORDERS}, got {order!r}")
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "sync() needs an initialised torch.distributed process group "
                "(torch.distributed.init_process_group, or torchrun); in one process the "
                "state is already complete"
            )
        world = dist.get_world_size(group)
        cols = self.columns()
        meta = {
            "config": self._config(),
            "labelled": self.labelled,
            "indexed": self.indexed,
            "weighted": self.weighted,
            "n": self.n_samples,
        }
        metas: list[Any] = [None] * world
        dist.all_gather_object(metas, meta, group=group)
        for r, m in enumerate(metas[1:], start=1):  # the same message on every rank
            mismatch = _config_mismatch(metas[0]["config"], m["config"])
            if mismatch:
                raise ValueError(
                    f"sync: rank {r}'s state was built with different {mismatch} than rank 0's"
                )
        labelled = {m["labelled"] for m in metas if m["n"]}
        indexed = {m["indexed"] for m in metas if m["n"]}
        if len(labelled) > 1 or len(indexed) > 1:
            what = "labelled" if len(labelled) > 1 else "indexed"
            raise ValueError(f"sync: some ranks' states are {what} and others' are not")
        sizes = [int(m["n"]) for m in metas]
        new = self._empty_like()
        total = sum(sizes)
        if total == 0:
            return new
        new.labelled = labelled.pop()
        new.indexed = indexed.pop()
        new.weighted = any(m["weighted"] for m in metas)
        layout = _layout(self, new.labelled, new.weighted, new.indexed)
        width = sum(w for _, w in layout)
        local = np.zeros((sizes[dist.get_rank(group)], width))
        at = 0
        for key, w in layout:
            if cols:
                value = cols.get(key, np.ones(local.shape[0]) if key == "weight" else None)
                local[:, at : at + w] = np.asarray(value, np.float64).reshape(local.shape[0], w)
            at += w
        backend = dist.get_backend(group)
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else None
        padded = torch.zeros((max(sizes), width), dtype=torch.float64, device=device)
        padded[: local.shape[0]] = torch.from_numpy(local).to(padded.device)
        buffers = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(buffers, padded, group=group)
        parts = [b[:n].cpu().numpy() for b, n in zip(buffers, sizes, strict=True)]
        rows = _restore_order(parts, sizes, layout, new.indexed, order)
        joined: dict[str, np.ndarray] = {}
        at = 0
        for key, w in layout:
            block = rows[:, at : at + w]
            dtype = _COLUMNS[key]
            joined[key] = (block if key == "rank" else block[:, 0]).astype(dtype)
            at += w
        new._chunks = [joined]
        return new


# ---------------------------------------------------------------------------- ALG from a state


def alg_scale(n_seen: int, n_absent: int) -> float:
    """ALG's exact rescaling: a power of two so small that no sum of |S| or |U| scaled logits
    overflows float64 (scaling by it is exact, away from the subnormals)."""
    return 2.0 ** -(math.ceil(math.log2(max(n_seen, n_absent))) + 2)


def alg_term(
    sum_seen: np.ndarray, sum_absent: np.ndarray, true_logit: np.ndarray, n_seen: int, n_absent: int
) -> np.ndarray:
    """(n,) float64 ALG terms (Σ_S − z_y)/(|S| − 1) − Σ_U/|U| from each sample's sums of its
    S and U logits and its label's logit (float64; logit units). The one formula of
    :func:`calib.selectors.select_alg` and of the state's terms; overflow gives ±inf/NaN."""
    with np.errstate(over="ignore", invalid="ignore"):
        return (sum_seen - true_logit) / (n_seen - 1) - sum_absent / n_absent


def check_alg_labels(
    y: np.ndarray,
    seen: np.ndarray,
    absent: np.ndarray,
    class_names: Sequence[str] | None = None,
) -> None:
    """|S| ≥ 2, and every label in S: ALG may only see fine-tuning data. ``class_names``
    (one per column, or None): the error names the first stray label's class."""
    if seen.size < 2:
        raise ValueError(
            f"ALG needs at least 2 seen classes (it averages the non-true ones), got {seen.size}"
        )
    outside = ~np.isin(y, seen)
    if outside.any():
        where = "absent classes U" if np.isin(y[outside], absent).any() else "non-seen columns"
        first = int(y[outside][0])
        shown = f"{first}" if class_names is None else f"{first} ({class_names[first]})"
        raise ValueError(
            f"ALG may only see fine-tuning (S) data, but {int(outside.sum())} label(s) lie in the "
            f"{where}, e.g. {shown}; pass the fine-tuning training samples only"
        )


def alg_gap_std(terms: np.ndarray, scale: float) -> float:
    """The spread of the ALG terms (given times ``scale``), in logit units."""
    big = float(np.abs(terms).max())  # the squares of the std overflow from 1.3e154 on
    return float((terms / big).std() * big / scale) if big > 1e150 else float(terms.std() / scale)


def alg_too_large(top: str) -> ValueError:
    """The error of logits whose mean ALG term overflows float64 (``top``: what they reach)."""
    return ValueError(
        f"logits too large for ALG: {top}the mean gap between the S and U logits overflows "
        f"float64 (max {np.finfo(np.float64).max:.4g}); rescale the logits"
    )


def alg_from_state(state: SeenAbsentState) -> tuple[float, dict[str, Any]]:
    """(γ, info) of :func:`calib.selectors.select_alg` from a state built with ``alg=True``
    (which ``select_alg`` calls when given a state): the mean of the per-sample terms, to float
    rounding that of the logits (each term from the same kernel, :func:`alg_term`).

    Raises:
        ValueError: no ALG terms, no labels or samples, sample weights (ALG weighs every
            sample alike), |S| < 2, a label outside S, a -inf logit in S or U, or terms too
            large for float64.
    """
    if not state.alg:
        raise ValueError("ALG needs the state's per-sample terms: build it with alg=True")
    cols = state.checked_columns("ALG", gaps=False)
    if "weight" in cols:
        raise ValueError(
            "ALG weighs every fine-tuning sample alike, but the state was fed sample_weight"
        )
    check_alg_labels(cols["label"], state.seen_classes, state.absent_classes, state.class_names)
    terms, flags = cols["alg"], cols["alg_flag"]
    if (flags == ALG_DEAD).any():
        i = int(np.flatnonzero(flags == ALG_DEAD)[0])
        raise ValueError(
            f"ALG averages logits, but sample {i} holds -inf in a column of S or U (a class "
            "that can never be predicted): leave it out of seen_classes/absent_classes"
        )
    scale = 1.0
    overflow = bool((flags == ALG_OVERFLOW).any())
    with np.errstate(over="ignore", invalid="ignore"):
        gamma = float("inf") if overflow else float(terms.mean())
    if not math.isfinite(gamma):
        # as below: the terms at the exact scale (those rows were kept so by the state)
        scale = alg_scale(state.seen_classes.size, state.absent_classes.size)
        terms = np.where(flags == ALG_OVERFLOW, terms, terms * scale)
        with np.errstate(over="ignore"):
            gamma = float(terms.mean() / scale)
        if not math.isfinite(gamma):
            raise alg_too_large("")
    gap_std = alg_gap_std(terms, scale)
    return gamma, {"method": "alg", "n_samples": int(terms.size), "gap_std": gap_std}


# ---------------------------------------------------------------------------- internals


def _iterable(values: Any, name: str) -> list[Any]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a collection of numbers, got {values!r}")
    return list(values)


def _check_topk(topk: Any) -> tuple[int, ...]:
    """The distinct k > 1 of ``topk``, ascending (top-1 is always there)."""
    return tuple(sorted({check_int(k, "topk", 1) for k in _iterable(topk, "topk")} - {1}))


def _check_batch_weight(sample_weight: Any, n: int) -> np.ndarray | None:
    """:func:`calib.validation.check_sample_weight` for one batch, which may be all zero
    (padding): the whole stream's weights must not be, which the metrics check."""
    if sample_weight is None:
        return None
    w = as_numpy(sample_weight, "sample_weight")
    if w.ndim == 1 and w.shape[0] == n and w.dtype.kind in "iuf" and n and not w.any():
        return np.zeros(n)
    return check_sample_weight(w, n)


def _check_index(index: Any, n: int) -> np.ndarray:
    idx = check_labels(index, n, None, name="index")
    if np.unique(idx).size != idx.size:
        raise ValueError("index repeats a sample within one batch")
    return idx


def _config_mismatch(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The names of the settings in which two states' configs differ ('' when none)."""
    return ", ".join(f"{k} ({a[k]!r} vs {b[k]!r})"[:200] for k in a if a[k] != b[k])


def _layout(
    state: SeenAbsentState, labelled: bool, weighted: bool, indexed: bool
) -> list[tuple[str, int]]:
    """(column, width) of the float64 rows that :meth:`SeenAbsentState.sync` gathers.

    Every column is exact in float64: labels, ranks and indices are below 2**53."""
    layout = [("gap", 1)] if state.keep_gaps else []
    if labelled:
        if state.keep_gaps:
            layout += [("hit_other", 1), ("hit_absent", 1), ("hit_seen", 1)]
        layout.append(("label", 1))
        if state.topk:
            layout += [("rank", len(state.gammas)), ("rank_seen", 1), ("rank_absent", 1)]
        if state.alg:
            layout += [("alg", 1), ("alg_flag", 1)]
    if weighted:
        layout.append(("weight", 1))
    if indexed:
        layout.append(("index", 1))
    return layout


def _restore_order(
    parts: list[np.ndarray],
    sizes: list[int],
    layout: list[tuple[str, int]],
    indexed: bool,
    order: str,
) -> np.ndarray:
    """The gathered rows of every rank, in data-set order (see :meth:`SeenAbsentState.sync`)."""
    rows = np.concatenate(parts)
    if indexed:
        at = sum(w for key, w in layout if key != "index")  # index: the last column
        index = rows[:, at]
        _, first = np.unique(index, return_index=True)  # sorted, first occurrence (lowest rank)
        return rows[first]
    if order == "contiguous":
        return rows
    world, n = len(parts), sum(sizes)
    expected = [len(range(r, n, world)) for r in range(world)]
    if sizes != expected:
        raise ValueError(
            f"sync: shard sizes {sizes} are not those of an interleaved split of {n} samples "
            f"over {world} processes ({expected}); pass index= to update() or "
            "sync(order='contiguous')"
        )
    out = np.empty_like(rows)
    for r, part in enumerate(parts):
        out[r::world] = part
    return out
