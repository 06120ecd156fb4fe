"""A tiny real fine-tuning run with a per-epoch history, for the dynamics and figure tests.

Six Gaussian classes in 8-D: a source domain (all classes) trains the "pre-trained" model;
a shifted target domain is fine-tuned on S = {0, 1, 2} only, U = {3, 4, 5} absent. A
:class:`calib.models.Classifier` (backbone + linear head), so features, NCM and the head
statistics are all exercised. A run takes well under a second on one CPU core.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from calib.data import ClassSplit
from calib.dynamics import EpochEvaluator, HistoryWriter
from calib.models import Classifier
from calib.models.classifier import make_data_config
from calib.train import TrainConfig, train

N_FEATURES, N_CLASSES = 8, 6
SPLIT = ClassSplit(seen=(0, 1, 2), absent=(3, 4, 5), num_classes=N_CLASSES)
FINETUNE = dict(optimizer="sgd", lr=0.05, lr_head=0.2, epochs=4, batch_size=16, seed=3)


def make_model(seed: int = 0) -> Classifier:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        backbone = nn.Sequential(nn.Linear(N_FEATURES, 16), nn.ReLU())
        head = nn.Linear(16, N_CLASSES)
    config = make_data_config((1, 1, N_FEATURES), (0.5,), (0.5,))
    return Classifier(backbone, head, config, name="tiny")


def make_domain(n_per_class: int, shift: float, seed: int) -> TensorDataset:
    """``n_per_class`` samples per class around fixed class means, moved by ``shift``."""
    means = torch.randn(N_CLASSES, N_FEATURES, generator=torch.Generator().manual_seed(0)) * 2
    g = torch.Generator().manual_seed(seed)
    offset = shift * torch.randn(N_FEATURES, generator=torch.Generator().manual_seed(1))
    y = torch.arange(N_CLASSES).repeat_interleave(n_per_class)
    x = means[y] + offset + torch.randn(y.numel(), N_FEATURES, generator=g)
    return TensorDataset(x, y)


def pretrained_model() -> Classifier:
    model = make_model()
    cfg = TrainConfig(optimizer="sgd", lr=0.1, epochs=3, batch_size=32, seed=0)
    train(model, make_domain(40, 0.0, seed=10), cfg, progress=False, log=lambda line: None)
    return model


def target_sets() -> tuple[TensorDataset, TensorDataset, Subset]:
    """(train, test, the train samples of S) of the target domain."""
    target_train = make_domain(30, 1.0, seed=11)
    target_test = make_domain(20, 1.0, seed=12)
    in_seen = np.isin(target_train.tensors[1].numpy(), SPLIT.seen)
    return target_train, target_test, Subset(target_train, np.flatnonzero(in_seen).tolist())


def tiny_run(run_dir: Path, every: int = 1, epochs: int = 4, on_epoch=None, model=None):
    """Fine-tune a copy of the pre-trained model on S with an :class:`EpochEvaluator`.

    ``on_epoch(epoch, model)`` runs after the evaluator (e.g. to snapshot weights or to
    raise, simulating a kill). Returns (the fine-tuned model, the pre-trained model).
    """
    pre = model if model is not None else pretrained_model()
    ft = copy.deepcopy(pre)
    train_set, test_set, seen_train = target_sets()
    evaluator = EpochEvaluator(
        test_set,
        SPLIT,
        HistoryWriter(run_dir),
        train_set=train_set,
        epochs=epochs,
        every=every,
        batch_size=64,
        pretrained_head_weight=pre.head.weight.detach().clone(),
    )

    def callback(epoch, m):
        evaluator(epoch, m)
        if on_epoch is not None:
            on_epoch(epoch, m)

    cfg = TrainConfig(**{**FINETUNE, "epochs": epochs})
    train(ft, seen_train, cfg, run_dir=run_dir / "finetune", progress=False,
          log=lambda line: None, on_epoch_end=callback)  # fmt: skip
    return ft, pre
