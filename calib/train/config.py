"""Hyperparameters of one training run: :class:`TrainConfig`, validated at construction.

The optimizer fields left ``None`` are resolved at construction to the defaults of the
optimizer's :data:`~calib.train.optim.OPTIMIZERS` entry, the one place those numbers live
(:func:`~calib.train.optim.resolve_optimizer_settings`), so a config holds the numbers it trains
with. :meth:`TrainConfig.settings` is what a run is fingerprinted by (checkpoints refuse to
resume under other settings); the fields that change speed but not the numbers are left out.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from calib.train.optim import (
    OPTIMIZERS,
    check_momentum,
    describe_arguments,
    refused_arguments,
    resolve_optimizer_settings,
)
from calib.train.precision import AMP_MODES
from calib.train.schedule import SCHEDULERS

__all__ = ["TrainConfig", "AMP_MODES", "NOT_FINGERPRINTED"]

# Settings that change speed or run-to-run rounding, not the numbers the run computes in
# expectation; left out of the fingerprint so a run can resume on a machine with another core
# count, or with deterministic kernels switched on.
NOT_FINGERPRINTED = ("num_workers", "deterministic", "cudnn_benchmark", "compile")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


@dataclass
class TrainConfig:
    """Hyperparameters of one training run; validated and resolved at construction.

    The optimizer fields given as ``None`` hold the registry's defaults after construction:
    ``TrainConfig(optimizer="sgd").lr_head`` is ``OPTIMIZERS.get("sgd").lr_head``. Since the
    resolved numbers are fields, build a new config (not ``dataclasses.replace``) to change
    ``optimizer``: a replaced config keeps the old optimizer's numbers and kwargs.

    Attributes:
        optimizer: an :data:`~calib.train.optim.OPTIMIZERS` key.
        lr: backbone learning rate; ``None`` = the optimizer's default ``spec.lr``.
        lr_head: head learning rate; ``None`` = the optimizer's ``spec.lr_head`` when ``lr`` is
            ``None`` too, else ``lr`` (one given lr is one lr for the whole model).
        weight_decay: ``None`` = the optimizer's default (never applied to biases and norms).
        momentum: for sgd / rmsprop; ``None`` = the optimizer's default (stays ``None`` for the
            optimizers without momentum).
        epochs: number of epochs (checkpoint and log line after each).
        iters_per_epoch: iterations per epoch; ``None`` = one pass over the data in full
            batches (the remainder, < batch_size samples, is left out of that epoch).
        batch_size: samples per iteration.
        scheduler: a :data:`~calib.train.schedule.SCHEDULERS` key, stepped every iteration.
        warmup_iters: linear warm-up iterations.
        min_lr: the cosine schedule's floor.
        seed: sample order, worker seeds and the global RNGs at the start of a fresh run.
        amp: "auto" (on CUDA bf16 where the GPU computes it natively, compute capability ≥ 8,
            else fp16 with a grad scaler; off on the CPU), "bf16", "fp16", "off";
            ``True``/``False`` mean "auto"/"off" (:func:`calib.train.resolve_precision`). The
            head computes in float32 either way (:meth:`calib.models.Classifier.logits`).
        channels_last: "auto" (on CUDA), ``True`` or ``False``.
        num_workers: DataLoader worker processes.
        grad_clip: max global gradient norm; ``None`` = no clipping.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        optimizer_kwargs: further optimizer arguments (``nesterov``, ``betas``, ``eps``, ...),
            merged over the optimizer's default kwargs (e.g. sgd's ``nesterov=True``). An
            argument the optimizer's constructor does not take is refused here, naming what it
            takes (:func:`~calib.train.optim.optimizer_arguments`).
        sync_batchnorm: in a multi-process run, convert BatchNorm layers to
            ``torch.nn.SyncBatchNorm`` for the run (statistics over the global batch, as in one
            process; CUDA only); restored to the original layers afterwards. No effect in one
            process.
        deterministic: deterministic kernels for the run (cuDNN deterministic, no cuDNN
            autotuning, ``torch.use_deterministic_algorithms(True, warn_only=True)``, cuBLAS's
            ``CUBLAS_WORKSPACE_CONFIG=:4096:8``; see :func:`calib.train.backend_flags`): a
            resumed GPU run then ends bit-identical to an uninterrupted one (on the CPU it
            always does). Slower; the flags are put back when :func:`train` returns.
        cudnn_benchmark: let cuDNN time its convolution algorithms for the input size (fixed
            crops: one timing, then the fastest); ignored with ``deterministic``.
        compile: train through ``torch.compile(model)`` (the first steps compile; the model
            itself, its state dict and checkpoints stay the plain module's).
    """

    optimizer: str = "sgd"
    lr: float | None = None
    lr_head: float | None = None
    weight_decay: float | None = None
    momentum: float | None = None
    epochs: int = 1
    iters_per_epoch: int | None = None
    batch_size: int = 64
    scheduler: str = "cosine"
    warmup_iters: int = 0
    min_lr: float = 0.0
    seed: int = 0
    amp: str | bool = "auto"
    channels_last: str | bool = "auto"
    num_workers: int = 0
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    sync_batchnorm: bool = False
    deterministic: bool = False
    cudnn_benchmark: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.optimizer_kwargs, Mapping):
            self.optimizer_kwargs = dict(self.optimizer_kwargs)
        self.validate()
        self._resolve_optimizer_defaults()

    def _resolve_optimizer_defaults(self) -> None:
        resolved = resolve_optimizer_settings(
            self.optimizer,
            lr=self.lr,
            lr_head=self.lr_head,
            weight_decay=self.weight_decay,
            momentum=self.momentum,
            kwargs=self.optimizer_kwargs,
        )
        self.lr = float(resolved["lr"])
        self.lr_head = float(resolved["lr_head"])
        self.weight_decay = float(resolved["weight_decay"])
        self.momentum = None if resolved["momentum"] is None else float(resolved["momentum"])
        self.optimizer_kwargs = resolved["kwargs"]

    def with_lr_scale(self, scale: float) -> TrainConfig:
        """A new, validated config with ``lr`` and ``lr_head`` multiplied by ``scale`` (> 0).

        Raises:
            ValueError: ``scale`` is not a finite number > 0 (or a scaled lr is not finite).
        """
        if not (_is_real(scale) and scale > 0):
            raise ValueError(f"lr_scale must be a number > 0, got {scale!r}")
        return replace(self, lr=self.lr * scale, lr_head=self.lr_head * scale)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""

        def bad(name: str, need: str) -> ValueError:
            return ValueError(f"TrainConfig.{name} must be {need}, got {getattr(self, name)!r}")

        for name, kind in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS)):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise bad(name, f"a {kind.kind} name ({', '.join(kind.names())})")
            if value not in kind:
                try:
                    kind.get(value)
                except KeyError as err:
                    raise ValueError(f"TrainConfig.{name}: {err.args[0]}") from None
        for name in ("lr", "lr_head", "grad_clip"):
            value = getattr(self, name)
            if value is not None and not (_is_real(value) and value > 0):
                raise bad(name, "a number > 0 or None")
        if self.weight_decay is not None and not (
            _is_real(self.weight_decay) and self.weight_decay >= 0
        ):
            raise bad("weight_decay", "a number >= 0 or None")
        if not (_is_real(self.min_lr) and self.min_lr >= 0):
            raise bad("min_lr", "a number >= 0")
        if not (_is_real(self.label_smoothing) and 0 <= self.label_smoothing < 1):
            raise bad("label_smoothing", "a number in [0, 1)")
        try:
            check_momentum(self.optimizer, self.momentum)
        except ValueError as err:
            raise ValueError(f"TrainConfig.momentum: {err}") from None
        for name in ("epochs", "batch_size"):
            if not (_is_int(getattr(self, name)) and getattr(self, name) >= 1):
                raise bad(name, "an int >= 1")
        if self.iters_per_epoch is not None and not (
            _is_int(self.iters_per_epoch) and self.iters_per_epoch >= 1
        ):
            raise bad("iters_per_epoch", "an int >= 1 or None (one pass over the data)")
        for name in ("warmup_iters", "seed", "num_workers"):
            if not (_is_int(getattr(self, name)) and getattr(self, name) >= 0):
                raise bad(name, "an int >= 0")
        if not (isinstance(self.amp, bool) or self.amp in AMP_MODES):
            raise bad("amp", f"one of {AMP_MODES} or a bool")
        if not (isinstance(self.channels_last, bool) or self.channels_last == "auto"):
            raise bad("channels_last", "'auto' or a bool")
        if not isinstance(self.optimizer_kwargs, dict):
            raise bad("optimizer_kwargs", "a mapping")
        for name in ("sync_batchnorm", "deterministic", "cudnn_benchmark", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "a bool")
        taken = {"lr", "lr_head", "weight_decay", "momentum"} & set(self.optimizer_kwargs)
        if taken:
            raise ValueError(
                f"TrainConfig.optimizer_kwargs sets {sorted(taken)}: use the TrainConfig fields"
            )
        refused = refused_arguments(self.optimizer, kwargs=self.optimizer_kwargs)
        if refused:
            raise ValueError(
                f"TrainConfig.optimizer_kwargs: optimizer {self.optimizer!r} does not take "
                f"{', '.join(refused)} (it takes {describe_arguments(self.optimizer)})"
            )

    def settings(self, precision: str | None = None, **extra: Any) -> dict[str, Any]:
        """The fields that determine the trained weights, plus ``extra``, as plain JSON values.

        ``precision``: the precision ``amp`` resolves to on the training's device
        (:func:`calib.train.resolve_precision`); given, it stands in for ``amp`` (what the
        run asked for) as ``"precision"``: what it computes in is what its numbers depend on.
        """
        values = {k: v for k, v in asdict(self).items() if k not in NOT_FINGERPRINTED}
        if precision is not None:
            del values["amp"]
            values["precision"] = precision
        return json.loads(json.dumps({**values, **extra}, sort_keys=True, default=repr))
