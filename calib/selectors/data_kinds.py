"""The kinds of data a γ selector may declare: one :class:`DataKind` record per kind.

A selector declares the kind of data it takes (``register_selector(data="finetune_train")``);
everything that depends on that kind reads it from the kind's record, here, and nowhere else:

=====================  ==================  ======  ======  =====================================
record (key)           fit inputs          labels  U rows  ``temperature="fit"``
=====================  ==================  ======  ======  =====================================
``finetune_train``     logits, labels      yes     no      on the S rows it holds (biased low)
``target_labelled``    logits, labels      yes     yes     on it, U included (an upper bound)
``target_unlabelled``  logits              no      yes     refused: label-free, T = 1
``pseudo_splits``      pseudo_splits       yes     no      on the held-out S data of the splits
None (``NO_DATA``)     —                   no      no      refused: no data, T = 1
=====================  ==================  ======  ======  =====================================

"U rows": whether the data may hold samples of the absent classes U (the run hands
``finetune_train`` the S rows only). Where a run finds each kind is the run's business:
:data:`calib.run.selector_data.SELECTOR_DATA`, keyed by these records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "DataKind",
    "FINETUNE_TRAIN",
    "TARGET_LABELLED",
    "TARGET_UNLABELLED",
    "PSEUDO_SPLITS",
    "NO_DATA",
    "DATA_KIND_RECORDS",
    "DATA_KINDS",
    "DATA_INPUTS",
    "FIT_INPUTS",
    "data_kind",
]

#: Every data input of ``LogitBiasCalibrator.fit`` that a selector may take or refuse.
FIT_INPUTS = ("logits", "labels", "pseudo_splits")


@dataclass(frozen=True, eq=False)  # one record per kind: compared and hashed by identity
class DataKind:
    """One kind of data a selector may declare.

    Attributes:
        name: the key selectors declare (``SelectorSpec.data``); None for :data:`NO_DATA`.
        inputs: the ``fit`` inputs it consists of, in :data:`FIT_INPUTS`.
        holds: what it holds, in words (``"method 'x' needs labels: it reads <holds>"``).
        labels: whether it carries labels (so NLL can fit a temperature on it).
        absent_rows: whether it may hold samples of the absent classes U.
        temperature_data: what ``temperature="fit"`` fits T on, in words; for a kind without
            labels, why T stays 1.
        no_fit_reason: for a kind without labels, why a fit is refused (``"label-free"``).
        refusals: fit input -> why a selector of this kind refuses it (default: "it reads
            <holds>").
    """

    name: str | None
    inputs: tuple[str, ...]
    holds: str
    labels: bool
    absent_rows: bool
    temperature_data: str
    no_fit_reason: str = ""
    refusals: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.inputs) - set(FIT_INPUTS)
        if unknown:
            raise ValueError(f"data kind {self.name!r}: unknown fit input(s) {sorted(unknown)}")
        if not self.labels and not self.no_fit_reason:
            raise ValueError(f"data kind {self.name!r} has no labels: say why T is not fitted")
        object.__setattr__(self, "refusals", MappingProxyType(dict(self.refusals)))

    @property
    def fits_temperature(self) -> bool:
        """Whether ``temperature="fit"`` may fit T on this kind: NLL needs labels."""
        return self.labels

    @property
    def absent_labels(self) -> bool:
        """Whether labels of U samples reach a selector of this kind (an upper bound)."""
        return self.labels and self.absent_rows

    def refusal(self, name: str) -> str:
        """Why a selector of this kind refuses the ``fit`` input ``name``."""
        return self.refusals.get(name, f"it reads {self.holds}")

    def __repr__(self) -> str:
        return f"DataKind({self.name!r})"


_SPLITS_ONLY = "it scores the held-out S data inside pseudo_splits"

FINETUNE_TRAIN = DataKind(
    "finetune_train",
    ("logits", "labels"),
    holds="the logits and labels of the fine-tuning training samples (labels in S)",
    labels=True,
    absent_rows=False,
    temperature_data="the fine-tuning training logits and labels of S (no U row; the model was "
    "trained on them, so T is biased low)",
)
TARGET_LABELLED = DataKind(
    "target_labelled",
    ("logits", "labels"),
    holds="labelled target logits, absent classes included",
    labels=True,
    absent_rows=True,
    temperature_data="the labelled target data, U included: an upper bound for analysis, like "
    "the oracle's γ (in-sample when that data is also the test set)",
)
TARGET_UNLABELLED = DataKind(
    "target_unlabelled",
    ("logits",),
    holds="unlabelled target logits (labels never reach it)",
    labels=False,
    absent_rows=True,
    temperature_data="none: the selector is label-free and NLL needs labels, so T = 1",
    no_fit_reason="label-free",
    refusals={"labels": "it is label-free: labels never reach it; pass unlabelled logits only"},
)
PSEUDO_SPLITS = DataKind(
    "pseudo_splits",
    ("pseudo_splits",),
    holds="pseudo_splits: held-out S data scored by pseudo-split models",
    labels=True,
    absent_rows=False,
    temperature_data="the held-out S data of the PCV pseudo splits (each split's pseudo-absent "
    "classes shifted by γ stand in for U; no U row)",
    refusals={"logits": _SPLITS_ONLY, "labels": _SPLITS_ONLY},
)
NO_DATA = DataKind(
    None,
    (),
    holds="no data (num_classes gives the head's width)",
    labels=False,
    absent_rows=False,
    temperature_data="none: the selector takes no data, so T = 1",
    no_fit_reason="fed no data",
    refusals={
        "logits": "it takes no data: pass num_classes to say how many columns the head has",
        "labels": "it takes no data",
    },
)

#: Every record, keyed by the name a selector declares (None: :data:`NO_DATA`).
DATA_KIND_RECORDS: Mapping[str | None, DataKind] = MappingProxyType(
    {
        k.name: k
        for k in (FINETUNE_TRAIN, TARGET_LABELLED, TARGET_UNLABELLED, PSEUDO_SPLITS, NO_DATA)
    }
)

#: The names a selector may declare as ``data`` (or None for no data).
DATA_KINDS: tuple[str, ...] = tuple(n for n in DATA_KIND_RECORDS if n is not None)

#: The ``fit`` inputs of each kind, by name (a view of the records).
DATA_INPUTS: Mapping[str | None, tuple[str, ...]] = MappingProxyType(
    {n: k.inputs for n, k in DATA_KIND_RECORDS.items()}
)


def data_kind(kind: Any) -> DataKind:
    """The record of ``kind``: a :class:`DataKind`, a name in :data:`DATA_KINDS`, or None.

    Raises:
        ValueError: any other value (a record built elsewhere included), naming it and the
            kinds there are.
    """
    if isinstance(kind, DataKind):
        if DATA_KIND_RECORDS.get(kind.name) is not kind:
            raise ValueError(f"data must be one of {DATA_KINDS} or None, got {kind!r}")
        return kind
    try:
        return DATA_KIND_RECORDS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"data must be one of {DATA_KINDS} or None, got {kind!r}") from None
