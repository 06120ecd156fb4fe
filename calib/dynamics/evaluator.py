"""``EpochEvaluator``: the ``on_epoch_end`` callback of :func:`calib.train.train` that writes the history.

::

    writer = HistoryWriter(run_dir)
    evaluator = EpochEvaluator(target.test, split, writer, train_set=target.train_eval,
                               epochs=cfg.epochs, every=2,
                               pretrained_head_weight=model.head.weight.detach().clone())
    train(model, finetune_set, cfg, run_dir=run_dir / "finetune", on_epoch_end=evaluator)

Any ``nn.Module`` works (see :mod:`calib.extract`): a model whose output is a mapping or a
Hugging Face ``ModelOutput`` (``output_key``), dict batches with other keys (``batch_keys``),
and the NCM keys for a model without features of its own: ``features_from="classifier"``
takes the input of that submodule (its head) as the features, and the submodule's weight,
when it is an ``nn.Linear``, is the head of the head statistics.

Under ``torchrun`` every rank calls it (the extraction shards the datasets and gathers the
rows, a collective); every rank computes the same row and rank 0 writes it.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from calib import distributed
from calib.data import ClassSplit
from calib.dynamics.history import HistoryWriter
from calib.dynamics.record import epoch_evaluation
from calib.extract import (
    Extracted,
    check_batch_keys,
    extract,
    extraction_loader,
    feature_module,
    has_features,
    model_device,
)

__all__ = ["EpochEvaluator", "linear_head_weight"]

log = logging.getLogger("calib.dynamics")

HeadAccessor = Callable[[nn.Module], Any]


def linear_head_weight(model: nn.Module) -> torch.Tensor | None:
    """The (C, D) weight of the model's linear head: ``model.head`` when it is an ``nn.Linear``,
    else timm's ``model.get_classifier()`` when that is one; None otherwise."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear) and callable(getattr(model, "get_classifier", None)):
        head = model.get_classifier()
    return head.weight if isinstance(head, nn.Linear) else None


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


class EpochEvaluator:
    """Evaluates the model at epoch 0, every ``every`` epochs and at the last epoch.

    Args:
        test_set: the target test dataset (evaluation transform), ``(image, label)`` items.
        split: the class split (S, U) of the head.
        writer: where the rows go (:class:`HistoryWriter` of the run folder).
        train_set: the target training dataset with the evaluation transform (all classes):
            its S samples give the ALG γ, its features the NCM class means. None: ALG keys
            NaN, NCM means from the test features.
        epochs: the run's number of epochs; that last epoch is always evaluated.
        every: evaluate at epochs 0, k, 2k, ... (k ≥ 1; to switch the history off, pass no
            callback to ``train``).
        batch_size, num_workers: per-process extraction loader settings.
        device: where to run the model; None = where it is (the training device).
        amp: autocast during extraction: ``True`` (torch's default dtype of the device
            type), a dtype (``torch.bfloat16``), or ``False`` (results float32 either way).
        pretrained_head_weight: (C, D) the pre-trained head, for the update statistics; None:
            taken from the model at epoch 0 (a resumed run without it gets NaN update keys).
        head: ``head(model)`` → the (C, D) head weight, or None for a model without a linear
            head (then the head statistics are NaN). Default: the ``features_from`` submodule's
            weight when it is an ``nn.Linear`` (None when it is not), else
            :func:`linear_head_weight`.
        progress: show extraction progress bars.
        features_from: the name of the submodule whose input is the feature vector of NCM
            (a dotted path, e.g. ``"classifier"``, ``"fc"``, ``"model.head"``), for a model
            with no ``forward_features_logits`` (:class:`calib.models.Classifier`) nor timm's
            ``forward_features``/``forward_head``; None: such a model gets NaN NCM keys.
        output_key: the entry of the model's output holding the logits (a mapping's key,
            default ``"logits"``; a tuple's index, default 0).
        batch_keys: dict-batch keys ``{"input": ..., "label": ...}`` when they are not the
            defaults of :func:`calib.extract.split_batch`.
    """

    def __init__(
        self,
        test_set: Dataset,
        split: ClassSplit,
        writer: HistoryWriter,
        *,
        train_set: Dataset | None = None,
        epochs: int | None = None,
        every: int = 1,
        batch_size: int = 256,
        num_workers: int = 0,
        device: str | torch.device | None = None,
        amp: bool | torch.dtype = False,
        pretrained_head_weight: Any = None,
        head: HeadAccessor | None = None,
        progress: bool = False,
        features_from: str | None = None,
        output_key: str | int | None = None,
        batch_keys: Mapping[str, str | None] | None = None,
    ) -> None:
        if not isinstance(split, ClassSplit):
            raise TypeError(f"split must be a calib.data.ClassSplit, got {type(split).__name__}")
        if not isinstance(writer, HistoryWriter):
            raise TypeError(f"writer must be a HistoryWriter, got {type(writer).__name__}")
        self.every = _check_positive_int(every, "every")
        self.epochs = None if epochs is None else _check_positive_int(epochs, "epochs")
        self.test_set, self.train_set, self.split, self.writer = test_set, train_set, split, writer
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        self.num_workers, self.amp, self.progress = num_workers, amp, progress
        if features_from is not None and (not isinstance(features_from, str) or not features_from):
            raise ValueError(
                "features_from must be the name of a submodule (e.g. 'classifier'), "
                f"got {features_from!r}"
            )
        check_batch_keys(batch_keys)
        self.features_from, self.output_key, self.batch_keys = features_from, output_key, batch_keys
        if head is None:
            head = linear_head_weight if features_from is None else self._named_head_weight
        elif not callable(head):
            raise TypeError(f"head must be a function model -> weight or None, got {head!r:.80}")
        self.head = head
        self.device = None if device is None else torch.device(device)
        self.pretrained_head_weight = (
            None if pretrained_head_weight is None else _as_cpu(pretrained_head_weight)
        )
        self._warned_no_pretrained = False

    def should_evaluate(self, epoch: int) -> bool:
        """Epoch 0, every multiple of ``every``, and the last epoch."""
        return epoch == 0 or epoch % self.every == 0 or epoch == self.epochs

    def __call__(self, epoch: int, model: nn.Module) -> dict[str, Any] | None:
        """Evaluate ``model`` after ``epoch`` epochs (when due) and write the row; returns it."""
        if not self.should_evaluate(epoch):
            return None
        start = time.perf_counter()
        test = self._extract(model, self.test_set, f"history test e{epoch}")
        train = None
        if self.train_set is not None:
            train = self._extract(model, self.train_set, f"history train e{epoch}")
        if test.logits.shape[1] != self.split.num_classes:
            raise ValueError(
                f"the model gives {test.logits.shape[1]} logit columns but the class split is "
                f"for {self.split.num_classes} classes"
            )
        head_weight = self._head_weight(model, epoch, test.logits.shape[1])
        row, arrays = epoch_evaluation(
            epoch,
            test.logits.numpy(),
            test.labels.numpy(),
            self.split.seen,
            self.split.absent,
            test_features=None if test.features is None else test.features.numpy(),
            train_logits=None if train is None else train.logits.numpy(),
            train_labels=None if train is None else train.labels.numpy(),
            train_features=None
            if train is None or train.features is None
            else train.features.numpy(),
            head_weight=head_weight,
            pretrained_head_weight=self.pretrained_head_weight if head_weight is not None else None,
        )
        row["eval_seconds"] = time.perf_counter() - start
        self.writer.write(row, arrays)
        if distributed.is_main():
            log.info(
                "history epoch %d: Acc S/Y %.3f, U/Y %.3f, U/U %.3f, AUSUC %.3f (%.1f s)",
                epoch, row["acc_seen"], row["acc_absent"], row["acc_absent_absent"],
                row["ausuc"], row["eval_seconds"],
            )  # fmt: skip
        return row

    def _extract(self, model: nn.Module, dataset: Dataset, desc: str) -> Extracted:
        device = self.device or model_device(model)
        loader = extraction_loader(
            dataset,
            self.batch_size,
            num_workers=self.num_workers,
            pin_memory=device.type == "cuda",
        )
        out = extract(
            model,
            loader,
            device=self.device,
            features=self.features_from is not None or has_features(model),
            amp=self.amp,
            progress=self.progress,
            desc=desc,
            features_from=self.features_from,
            output_key=self.output_key,
            batch_keys=self.batch_keys,
        )
        if out.labels is None:
            raise ValueError(f"{desc}: the dataset gives no labels; the history needs them")
        return out

    def _named_head_weight(self, model: nn.Module) -> torch.Tensor | None:
        """The weight of the ``features_from`` submodule when it is an ``nn.Linear``."""
        assert self.features_from is not None
        head = feature_module(model, self.features_from)
        return head.weight if isinstance(head, nn.Linear) else None

    def _head_weight(self, model: nn.Module, epoch: int, num_columns: int) -> np.ndarray | None:
        weight = self.head(model)
        if weight is None:
            return None
        weight = _as_cpu(weight)
        if weight.ndim != 2 or weight.shape[0] != num_columns:
            warnings.warn(
                f"the head weight has shape {tuple(weight.shape)}, not ({num_columns}, D) for "
                f"{num_columns} logit columns: head statistics skipped",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        if self.pretrained_head_weight is None:
            if epoch == 0:
                self.pretrained_head_weight = weight.copy()
            elif not self._warned_no_pretrained:
                self._warned_no_pretrained = True
                warnings.warn(
                    "no pre-trained head weight (the run resumed after epoch 0 and none was "
                    "given): the update statistics are NaN",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return weight


def _as_cpu(weight: Any) -> np.ndarray:
    if isinstance(weight, torch.Tensor):
        return weight.detach().float().cpu().numpy().astype(np.float64)
    return np.asarray(weight, dtype=np.float64)
