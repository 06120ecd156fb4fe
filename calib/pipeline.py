"""The main job, from plain Python: (source model →) fine-tune on S → extract → fit γ → report.

:func:`run_pipeline` takes built objects (domains, a class split, a model factory,
training configs) and leaves in ``run_dir``::

    source/            source-model training checkpoints (when a source domain is given)
    finetune/          fine-tuning checkpoints
    pcv/split_<j>/     pseudo-split fine-tuning checkpoints (when PCV is configured)
    extract/*.pt       extracted logits, features and labels (a rerun reuses them)
    calibrators/*.json one fitted LogitBiasCalibrator per selector
    results.json       {"pretrained", "finetuned", "calibrated", "meta"} (see calib.report)
    results.csv        the same, flattened to one row
    results.md         the printed table
    curve.png          seen–absent curves, pre-trained vs fine-tuned, chosen γ marked

Every stage is resumable: a killed run started again with the same arguments picks up
at its last checkpoint and skips finished stages. The Hydra app (``experiments/run.py``)
only turns a config into these arguments.

Under ``torchrun`` every rank runs :func:`run_pipeline` with the same arguments: all ranks
train (DDP, global batch sizes as configured) and extract their shard of each dataset (gathered
into dataset order on every rank), every rank computes the same results, and only rank 0
writes files and prints. ``run_dir`` must be the same path, on a shared file system, for all.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from . import distributed
from .calibrator import LogitBiasCalibrator
from .curve import seen_absent_curve
from .data import ClassSplit, Domain, dataset_targets
from .extract import Extracted, extract, extraction_loader
from .io import atomic_save
from .metrics import accuracy_report
from .ncm import ncm_report
from .report import format_table, write_results
from .selectors import SELECTORS, PseudoSplit
from .train import TrainConfig, resolve_device, train

__all__ = ["PCVConfig", "CalibrationConfig", "EvalConfig", "run_pipeline"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PCVConfig:
    """Pseudo Cross-Validation: k pseudo splits of S, no absent-class data touched.

    Attributes:
        num_splits: k, the number of random pseudo splits of S.
        absent_fraction: share of S's classes made pseudo-absent in each split.
        holdout_fraction: share of each S class's training samples held out to score γ.
        criterion: ``hmean`` (default) or ``acc_all`` of pseudo-seen vs pseudo-absent accuracy.
        seed: seed of the splits (split j uses ``seed + j``).
        finetune: training config of the pseudo runs; ``None`` = the main fine-tuning config.
    """

    num_splits: int = 3
    absent_fraction: float = 0.5
    holdout_fraction: float = 0.2
    criterion: str = "hmean"
    seed: int = 0
    finetune: TrainConfig | None = None

    def __post_init__(self) -> None:
        if self.num_splits < 1:
            raise ValueError(f"pcv.num_splits must be ≥ 1, got {self.num_splits}")
        if not 0 < self.absent_fraction < 1:
            raise ValueError(f"pcv.absent_fraction must be in (0, 1), got {self.absent_fraction}")
        if not 0 < self.holdout_fraction < 1:
            raise ValueError(f"pcv.holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.criterion not in ("hmean", "acc_all"):
            raise ValueError(f"pcv.criterion must be 'hmean' or 'acc_all', got {self.criterion!r}")


@dataclass(frozen=True)
class CalibrationConfig:
    """Which γ selectors a run fits, and their settings.

    Attributes:
        selectors: selector keys (``alg``, ``oracle``, ``pcv``, ``prior``, ``fixed``), in table order.
        oracle_criterion: ``acc_all`` or ``hmean``.
        fixed_gamma: γ for the ``fixed`` selector.
        prior: share of U that the label-free ``prior`` selector matches (None = |U|/(|S|+|U|)).
        pcv: settings of ``pcv`` (required when it is selected).
    """

    selectors: tuple[str, ...] = ("alg", "oracle")
    oracle_criterion: str = "acc_all"
    fixed_gamma: float | None = None
    prior: float | None = None
    pcv: PCVConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "selectors", tuple(self.selectors))
        for name in self.selectors:
            SELECTORS.get(name)  # unknown key -> KeyError listing the known ones
        if len(set(self.selectors)) != len(self.selectors):
            raise ValueError(f"calibration.selectors lists a selector twice: {self.selectors}")
        if "pcv" in self.selectors and self.pcv is None:
            raise ValueError("calibration.selectors has 'pcv' but no pcv settings were given")
        if "fixed" in self.selectors and self.fixed_gamma is None:
            raise ValueError(
                "calibration.selectors has 'fixed' but calibration.fixed_gamma is unset"
            )
        if self.oracle_criterion not in ("acc_all", "hmean"):
            raise ValueError(
                f"calibration.oracle_criterion must be 'acc_all' or 'hmean', got {self.oracle_criterion!r}"
            )


@dataclass(frozen=True)
class EvalConfig:
    """Extraction settings: batch size, loader workers, mixed precision on GPU."""

    batch_size: int = 256
    num_workers: int = 0
    amp: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"eval.batch_size must be ≥ 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"eval.num_workers must be ≥ 0, got {self.num_workers}")


def _weights_sha256(model: nn.Module) -> str:
    """A digest of the model's parameters and buffers (names, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous().reshape(-1)  # 0-d buffers cannot be viewed as bytes
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _subset(dataset: Dataset, mask: np.ndarray) -> Subset:
    return Subset(dataset, np.flatnonzero(mask).tolist())


class _Stages:
    """Cached, resumable pipeline steps under one run directory."""

    def __init__(self, run_dir: Path, device: torch.device, eval_cfg: EvalConfig, progress: bool):
        self.run_dir, self.device, self.eval_cfg, self.progress = (
            run_dir,
            device,
            eval_cfg,
            progress,
        )

    def loader(self, dataset: Dataset) -> torch.utils.data.DataLoader:
        """This rank's shard of ``dataset`` in order (all of it in one process)."""
        return extraction_loader(
            dataset,
            batch_size=self.eval_cfg.batch_size,
            num_workers=self.eval_cfg.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    def extract(self, tag: str, model: nn.Module, dataset: Dataset) -> Extracted:
        """Logits, features and labels of ``model`` on ``dataset``, from the cache when it was
        written by these very weights on a dataset of this size."""
        path = self.run_dir / "extract" / f"{tag}.pt"
        weights = _weights_sha256(model)
        if path.exists():
            try:
                data = torch.load(path, map_location="cpu", weights_only=True)
                if data["weights_sha256"] == weights and len(data["labels"]) == len(dataset):
                    return Extracted(
                        logits=data["logits"], labels=data["labels"], features=data["features"]
                    )
                log.warning("extraction cache %s is from other weights or data; recomputing", path)
            except Exception as err:  # a foreign or damaged cache is recomputed, never trusted
                log.warning("ignoring unreadable extraction cache %s (%s); recomputing", path, err)
        out = extract(
            model,
            self.loader(dataset),
            device=self.device,
            features=True,
            amp=self.eval_cfg.amp and self.device.type == "cuda",
            progress=self.progress,
            desc=f"extract {tag}",
        )
        if distributed.is_main():  # every rank holds the gathered rows; one writes them
            payload = {
                "logits": out.logits,
                "labels": out.labels,
                "features": out.features,
                "weights_sha256": weights,
            }
            atomic_save(path, lambda fh: torch.save(payload, fh))
        return out

    def train(self, tag: str, model: nn.Module, dataset: Dataset, cfg: TrainConfig) -> None:
        train(
            model,
            dataset,
            cfg,
            run_dir=self.run_dir / tag,
            device=self.device,
            progress=self.progress,
            desc=tag,
        )


def _model_metrics(
    test: Extracted, train: Extracted | None, split: ClassSplit, gamma: float = 0.0
) -> dict:
    logits, labels = test.logits.numpy(), test.labels.numpy()
    metrics = accuracy_report(logits, labels, split.seen, split.absent, gamma=gamma)
    metrics["ausuc"] = seen_absent_curve(logits, labels, split.seen, split.absent).ausuc
    if train is not None and train.features is not None and test.features is not None:
        metrics.update(_ncm_metrics(train, test, split, logits.shape[1]))
    return metrics


def _ncm_metrics(train: Extracted, test: Extracted, split: ClassSplit, num_classes: int) -> dict:
    """NCM accuracies (``ncm_*``) over the classes of S ∪ U that have training features.

    On the benchmarks every class of S ∪ U has training samples; where some do not (a tiny
    or partial dataset), NCM classifies among the others, with a RuntimeWarning, and only
    the test samples of those classes count. No seen or no absent class with samples: no
    NCM metrics.
    """
    train_y, test_y = train.labels.numpy(), test.labels.numpy()
    seen = np.intersect1d(np.asarray(split.seen), train_y)
    absent = np.intersect1d(np.asarray(split.absent), train_y)
    n_missing = len(split.seen) + len(split.absent) - seen.size - absent.size
    if n_missing:
        warnings.warn(
            f"NCM: {n_missing} class(es) of S ∪ U have no training sample to average; NCM "
            f"classifies among the other {seen.size + absent.size}",
            RuntimeWarning,
            stacklevel=2,
        )
    if seen.size == 0 or absent.size == 0:
        return {}
    keep = np.isin(test_y, np.concatenate([seen, absent]))
    ncm = ncm_report(
        train.features.numpy(),
        train_y,
        test.features.numpy()[keep],
        test_y[keep],
        seen,
        absent,
        num_classes=num_classes,
    )
    return {f"ncm_{k}": v for k, v in ncm.items() if k.startswith("acc_") or k == "hmean"}


def _pcv_splits(
    stages: _Stages,
    pcv: PCVConfig,
    base_cfg: TrainConfig,
    make_model: Callable[[], nn.Module],
    pretrained_state: Mapping[str, torch.Tensor],
    train_set: Dataset,
    train_eval_set: Dataset,
    split: ClassSplit,
) -> list[PseudoSplit]:
    """Fine-tune on pseudo-seen classes of S and score held-out S data, k times. No U data is used."""
    labels = dataset_targets(train_set)
    # a seen class without training samples can be neither fine-tuned on nor scored
    seen = np.intersect1d(np.asarray(split.seen), labels)
    if seen.size < 2:
        raise ValueError(
            "PCV splits the seen classes into pseudo-seen and pseudo-absent ones: it needs "
            f"training samples of at least 2 seen classes, found {seen.size}"
        )
    cfg = pcv.finetune or base_cfg
    splits = []
    for j in range(pcv.num_splits):
        rng = np.random.default_rng(pcv.seed + j)
        order = rng.permutation(seen)
        n_absent = min(max(1, round(pcv.absent_fraction * seen.size)), seen.size - 1)
        pseudo_absent, pseudo_seen = np.sort(order[:n_absent]), np.sort(order[n_absent:])
        heldout = np.zeros(labels.size, dtype=bool)
        for c in seen:
            idx = np.flatnonzero(labels == c)
            n_out = int(round(pcv.holdout_fraction * idx.size))
            if idx.size >= 2:
                n_out = min(max(1, n_out), idx.size - 1)
            heldout[rng.choice(idx, size=n_out, replace=False)] = True
        fit_mask = ~heldout & np.isin(labels, pseudo_seen)
        model = make_model()
        model.load_state_dict(pretrained_state)
        stages.train(f"pcv/split_{j}", model, _subset(train_set, fit_mask), cfg)
        scored = stages.extract(f"pcv_split_{j}_heldout", model, _subset(train_eval_set, heldout))
        splits.append(
            PseudoSplit(
                logits=scored.logits.numpy(),
                labels=scored.labels.numpy(),
                seen_classes=pseudo_seen,
                # γ goes to every column absent from this run's fine-tuning: pseudo-absent and U
                absent_classes=np.union1d(pseudo_absent, np.asarray(split.absent)),
            )
        )
    return splits


def _fit_selector(
    name: str,
    calibration: CalibrationConfig,
    split: ClassSplit,
    ft_train: Extracted,
    ft_test: Extracted,
    pseudo_splits: Sequence[PseudoSplit] | None,
) -> LogitBiasCalibrator:
    num_classes = ft_test.logits.shape[1]
    common = dict(seen_classes=split.seen, absent_classes=split.absent, num_classes=num_classes)
    if name == "alg":  # fine-tuning training data only: the S samples
        in_seen = np.isin(ft_train.labels.numpy(), split.seen)
        cal = LogitBiasCalibrator(method="alg")
        return cal.fit(ft_train.logits.numpy()[in_seen], ft_train.labels.numpy()[in_seen], **common)
    if name == "oracle":  # labelled test data with U: an upper bound, for analysis
        cal = LogitBiasCalibrator(method="oracle", criterion=calibration.oracle_criterion)
        return cal.fit(ft_test.logits.numpy(), ft_test.labels.numpy(), **common)
    if name == "prior":  # unlabelled test logits (transductive, label-free)
        cal = LogitBiasCalibrator(method="prior", prior=calibration.prior)
        return cal.fit(ft_test.logits.numpy(), None, **common)
    if name == "fixed":
        return LogitBiasCalibrator(method="fixed", gamma=calibration.fixed_gamma).fit(**common)
    if name == "pcv":
        assert calibration.pcv is not None and pseudo_splits is not None
        cal = LogitBiasCalibrator(method="pcv", criterion=calibration.pcv.criterion)
        return cal.fit(pseudo_splits=pseudo_splits, **common)
    raise KeyError(f"the pipeline does not know how to feed selector {name!r}")


def run_pipeline(
    *,
    target: Domain,
    split: ClassSplit,
    make_model: Callable[[], nn.Module],
    finetune: TrainConfig,
    run_dir: str | os.PathLike,
    calibration: CalibrationConfig = CalibrationConfig(),
    source: Domain | None = None,
    source_train: TrainConfig | None = None,
    eval: EvalConfig = EvalConfig(),  # noqa: A002 - mirrors the config group name
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    title: str | None = None,
    meta: Mapping[str, Any] | None = None,
    plot: bool = True,
) -> dict[str, Any]:
    """Run the whole experiment and write its results; returns the results dict.

    Args:
        target: the target domain; ``target.train`` (augmenting transform) is fine-tuned on,
            ``target.train_eval`` (same samples, evaluation transform) and ``target.test`` are scored.
        split: the seen (fine-tuning) classes S and absent classes U of the target domain.
        make_model: builds the (pre-trained or randomly initialised) model, a fresh one per call.
        finetune: training config of the fine-tuning on S.
        run_dir: where everything is written; rerunning with the same directory resumes.
        calibration: the γ selectors to fit.
        source: a source domain (all classes) to train on first, giving the "pre-trained" model.
        source_train: training config of the source model (required with ``source``).
        eval: extraction settings.
        device: ``"auto"`` (default), ``"cpu"``, ``"cuda"``, ...; under ``torchrun`` ``"auto"``
            and ``"cuda"`` mean this process's ``cuda:LOCAL_RANK``.
        seed: seeds the model's initialisation (training seeds come with the train configs).
        progress: show progress bars.
        title: table title.
        meta: settings to store under ``results["meta"]``.
        plot: draw ``curve.png``.
    """
    if source is not None and source_train is None:
        raise ValueError("a source domain needs a source_train config")
    if split.num_classes != target.num_classes:
        raise ValueError(
            f"the class split is for {split.num_classes} classes but {target.name} has {target.num_classes}"
        )
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device)
    with distributed.distributed_context(device) as ctx:
        stages = _Stages(run_dir, device, eval, progress and ctx.is_main)
        if ctx.is_main:
            log.info(
                "run dir: %s; device: %s (%d process(es)); S = %d classes, U = %d classes",
                run_dir,
                device,
                ctx.world_size,
                len(split.seen),
                len(split.absent),
            )

        # 1. the pre-trained model (optionally trained on the source domain first); seeded so
        #    that a randomly initialised model, or head, is the same in every run
        torch.manual_seed(seed)
        pretrained = make_model()
        if source is not None:
            stages.train("source", pretrained, source.train, source_train)
        pretrained_state = copy.deepcopy(pretrained.state_dict())

        # 2. fine-tune on the target's seen classes only
        train_labels = dataset_targets(target.train)
        in_seen = np.isin(train_labels, split.seen)
        if not in_seen.any():
            raise ValueError(f"{target.name} has no training sample of the seen classes")
        finetuned = make_model()
        finetuned.load_state_dict(pretrained_state)
        stages.train("finetune", finetuned, _subset(target.train, in_seen), finetune)

        # 3. logits and features on target train (for ALG and NCM means) and test
        pre_train = stages.extract("pretrained_train", pretrained, target.train_eval)
        pre_test = stages.extract("pretrained_test", pretrained, target.test)
        ft_train = stages.extract("finetuned_train", finetuned, target.train_eval)
        ft_test = stages.extract("finetuned_test", finetuned, target.test)

        # 4. γ selectors
        pseudo_splits = None
        if "pcv" in calibration.selectors:
            assert calibration.pcv is not None
            pseudo_splits = _pcv_splits(
                stages,
                calibration.pcv,
                finetune,
                make_model,
                pretrained_state,
                target.train,
                target.train_eval,
                split,
            )
        calibrators = {}
        for name in calibration.selectors:
            cal = _fit_selector(name, calibration, split, ft_train, ft_test, pseudo_splits)
            if ctx.is_main:
                cal.save(run_dir / "calibrators" / f"{name}.json")
            calibrators[name] = cal

        # 5. report
        results: dict[str, Any] = {
            "pretrained": _model_metrics(pre_test, pre_train, split),
            "finetuned": _model_metrics(ft_test, ft_train, split),
            "calibrated": {},
            "meta": {
                "target": target.name,
                "num_classes": target.num_classes,
                "seen_classes": list(map(int, split.seen)),
                "absent_classes": list(map(int, split.absent)),
                "device": str(device),
                "world_size": ctx.world_size,
                **(dict(meta) if meta else {}),
            },
        }
        for name, cal in calibrators.items():
            metrics = _model_metrics(ft_test, ft_train, split, gamma=cal.gamma_)
            metrics["gamma"] = cal.gamma_
            results["calibrated"][name] = metrics
        if ctx.is_main:  # every rank computed the same results; one writes and prints them
            write_results(results, run_dir)
            if plot:
                _plot(results, pre_test, ft_test, split, run_dir / "curve.png", title)
            print(format_table(results, title=title or target.name))
        distributed.barrier()  # the results exist when any rank returns
        return results


def _plot(
    results, pre_test: Extracted, ft_test: Extracted, split: ClassSplit, path: Path, title
) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .plotting import plot_seen_absent_curves, save_figure

    curves = {
        "pre-trained": seen_absent_curve(
            pre_test.logits, pre_test.labels, split.seen, split.absent
        ),
        "fine-tuned": seen_absent_curve(ft_test.logits, ft_test.labels, split.seen, split.absent),
    }
    points = {
        f"γ {name} = {m['gamma']:+.2f}": (m["acc_seen"], m["acc_absent"])
        for name, m in results["calibrated"].items()
    }
    fig, ax = plt.subplots(figsize=(5.5, 5))
    plot_seen_absent_curves(curves, points=points, ax=ax, title=title)
    save_figure(fig, path)
    plt.close(fig)
