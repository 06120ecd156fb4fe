"""The cached, resumable steps of a run: training and extraction, each keyed by its stage.

:class:`Runner` holds what every step needs (run folder, device, extraction settings, the
stage records, the shared source cache) and runs one stage at a time:

- :meth:`Runner.train` trains a model in the stage's folder (``run_dir/<stage>``, or the
  shared cache entry for the source model), resuming from its last epoch checkpoint;
- :meth:`Runner.extract` returns logits, features and labels from ``run_dir/<stage>.pt`` when
  that file was written for this very stage key by these very weights, else computes them;
- :meth:`Runner.extract_state` (``eval.logits=state``) likewise, but streams the logits into a
  :class:`calib.SeenAbsentState` of the stage's settings (:class:`~calib.run.stage_plan.StateSpec`)
  and caches its per-sample columns (O(N)), never the logits; under ``torchrun`` each rank
  streams its shard and the state is synced.

A stage is recorded (:meth:`calib.run.stages.StageStore.record`) before it starts, so a
resumed run checks its key before touching its checkpoints.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from calib import distributed
from calib.extract import Extracted, extract, extract_state, extraction_loader
from calib.io import atomic_save
from calib.metrics.streaming import SeenAbsentState
from calib.run.settings import EvalConfig
from calib.run.source_cache import SourceCache
from calib.run.stage_plan import StateSpec
from calib.run.stages import Stage, StageStore
from calib.train import (
    EpochCallback,
    LossFn,
    TrainConfig,
    autocast_dtype,
    resolve_precision,
    train,
)

__all__ = ["Runner", "weights_sha256"]

log = logging.getLogger(__name__)


def weights_sha256(model: nn.Module) -> str:
    """A digest of the model's parameters and buffers (names, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous().reshape(-1)  # 0-d buffers cannot be viewed as bytes
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@dataclass
class Runner:
    """Runs the stages of one run folder (see the module docstring)."""

    run_dir: Path
    device: torch.device
    eval_cfg: EvalConfig
    progress: bool
    store: StageStore
    cache: SourceCache | None = None

    @property
    def precision(self) -> str:
        """What the extractions compute in: ``eval.amp`` resolved on the device (the
        extraction stages are keyed by it, :func:`calib.run.stage_plan.plan_stages`)."""
        return resolve_precision(self.eval_cfg.amp, self.device)

    @property
    def amp(self) -> bool | torch.dtype:
        """``extract``'s ``amp``: the autocast dtype of :attr:`precision`, or ``False``."""
        return autocast_dtype(self.precision) or False

    def loader(self, dataset: Dataset) -> DataLoader:
        """This rank's shard of ``dataset`` in order (all of it in one process)."""
        return extraction_loader(
            dataset,
            batch_size=self.eval_cfg.batch_size,
            num_workers=self.eval_cfg.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    def extract(self, stage: Stage, model: nn.Module, dataset: Dataset) -> Extracted:
        """Logits, features and labels of ``model`` on ``dataset`` for ``stage``, cached."""
        path = self.run_dir / f"{stage.name}.pt"
        weights = weights_sha256(model)
        cached = self._cached(
            path, stage, weights, len(dataset),
            count=lambda data: len(data["labels"]),
            build=lambda data: Extracted(
                logits=data["logits"], labels=data["labels"], features=data["features"]
            ),
        )  # fmt: skip
        if cached is not None:
            return cached
        self.store.record(stage)
        out = extract(
            model,
            self.loader(dataset),
            device=self.device,
            features=True,
            amp=self.amp,
            channels_last="auto",  # as the training left the model
            progress=self.progress,
            desc=stage.name,
        )
        payload = {"logits": out.logits, "labels": out.labels, "features": out.features}
        self._save(path, stage, weights, payload)  # every rank holds the gathered rows
        return out

    def extract_state(
        self, stage: Stage, model: nn.Module, dataset: Dataset, spec: StateSpec
    ) -> SeenAbsentState:
        """The :class:`calib.SeenAbsentState` (settings ``spec``) of ``model``'s logits on
        ``dataset`` for ``stage``, cached in ``run_dir/<stage>.pt`` as its per-sample columns
        (the stage key holds ``spec``: cached columns are of its state)."""
        path = self.run_dir / f"{stage.name}.pt"
        weights = weights_sha256(model)
        cached = self._cached(
            path, stage, weights, len(dataset),
            count=lambda data: data["n_samples"],
            build=lambda data: spec.build().extend(
                {k: v.numpy() for k, v in data["state"].items()}
            ),
        )  # fmt: skip
        if cached is not None:
            return cached
        self.store.record(stage)
        state = extract_state(
            model,
            self.loader(dataset),
            spec.build(),
            device=self.device,
            amp=self.amp,
            channels_last="auto",  # as the training left the model
            progress=self.progress,
            desc=stage.name,
        )
        payload = {
            "state": {k: torch.from_numpy(v) for k, v in state.columns().items()},
            "n_samples": state.n_samples,
        }
        self._save(path, stage, weights, payload)  # every rank holds the synced state
        return state

    @staticmethod
    def _save(path: Path, stage: Stage, weights: str, payload: dict[str, Any]) -> None:
        """Rank 0 writes an extraction stage's ``payload`` with what it was computed from."""
        if distributed.is_main():
            payload = {**payload, "weights_sha256": weights, "stage_key": stage.key}
            atomic_save(path, lambda fh: torch.save(payload, fh))

    @staticmethod
    def _cached(
        path: Path,
        stage: Stage,
        weights: str,
        n: int,
        count: Callable[[dict[str, Any]], int],
        build: Callable[[dict[str, Any]], Any],
    ) -> Any:
        """``build(payload)`` of the file at ``path`` when it was written for ``stage`` by these
        ``weights`` on ``n`` samples (``count(payload)``); None otherwise (recompute): a cache of
        other weights or data, or a foreign or damaged one, is never trusted."""
        if not path.exists():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            fits = (
                data.get("stage_key") == stage.key
                and data["weights_sha256"] == weights
                and count(data) == n
            )
            if fits:
                return build(data)
            log.warning("extraction cache %s is from other weights or data; recomputing", path)
        except Exception as err:
            log.warning("ignoring unreadable extraction cache %s (%s); recomputing", path, err)
        return None

    def train(
        self,
        stage: Stage,
        model: nn.Module,
        dataset: Dataset,
        cfg: TrainConfig,
        *,
        loss_fn: LossFn | None = None,
        on_epoch_end: EpochCallback | None = None,
    ) -> None:
        """Train ``model`` in place for ``stage`` in ``run_dir/<stage>`` (resumable)."""
        self.store.record(stage)
        self._train(stage, self.run_dir / stage.name, model, dataset, cfg, loss_fn, on_epoch_end)

    def train_in(
        self,
        stage: Stage,
        run_dir: Path,
        model: nn.Module,
        dataset: Dataset,
        cfg: TrainConfig,
        loss_fn: LossFn | None = None,
        on_epoch_end: EpochCallback | None = None,
    ) -> Any:
        """One training call of ``stage`` (already recorded) in ``run_dir`` (a folder of the
        stage: a method with several phases trains each in its own)."""
        return self._train(stage, run_dir, model, dataset, cfg, loss_fn, on_epoch_end)

    def train_source(
        self, stage: Stage, model: nn.Module, dataset: Dataset, cfg: TrainConfig
    ) -> None:
        """Train (or load) the source model: in the shared cache when there is one."""
        self.store.record(stage, cache=None if self.cache is None else str(self.cache.root))
        if self.cache is None:
            self._train(stage, self.run_dir / stage.name, model, dataset, cfg, None, None)
            return
        with self.cache.hold(stage) as entry:
            log.info("source model: %s", entry)
            self._train(stage, entry, model, dataset, cfg, None, None)

    def _train(self, stage, run_dir, model, dataset, cfg, loss_fn, on_epoch_end) -> Any:
        return train(
            model,
            dataset,
            cfg,
            run_dir=run_dir,
            device=self.device,
            progress=self.progress,
            desc=stage.name,
            loss_fn=loss_fn,
            on_epoch_end=on_epoch_end,
        )
