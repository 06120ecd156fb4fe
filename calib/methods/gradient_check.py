"""Before a run: every parameter a method trains receives a gradient.

A trainable parameter (``requires_grad``) that the forward pass never uses gets no gradient:
on one process it silently never trains, and under DDP (which expects a gradient for every
trainable parameter, ``find_unused_parameters=False``) the run fails at its second step with
"Expected to have finished reduction in the prior iteration". A LoRA adapter on the
``out_proj`` of an ``nn.MultiheadAttention`` was one (its forward reads the weight directly).

:func:`check_gradients` runs a method as it would run, with each of its training calls
(``ctx.train``) replaced by one forward/backward on a couple of samples, and refuses the first
call after which a trainable parameter has no gradient, naming the parameters. Every method
goes through it, so a new method or model cannot bring the failure back unnoticed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset, default_collate

from calib.data.split import ClassSplit
from calib.methods.parts import state_copy
from calib.methods.spec import FinetuneContext, MethodSpec, dataset_labels
from calib.train import TrainConfig, TrainResult

__all__ = ["check_gradients", "parameters_without_gradient"]


def parameters_without_gradient(
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    loss_fn: Any = None,
    label_smoothing: float = 0.0,
) -> list[str]:
    """The names of ``model``'s trainable parameters that one forward/backward leaves without
    a gradient.

    The model runs in train mode (``model.train()``, so the modules a method keeps in eval stay
    there) on ``batch = (x, y)``, ``x`` of shape ``(N, ...)``, ``y`` ``(N,)`` class indices;
    the loss is ``loss_fn(logits, y, x)`` (a :data:`calib.train.LossFn`) or the training's
    default cross-entropy. Gradients and the model's mode are as before when it returns.
    """
    x, y = batch
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x, y = x.to(device), y.to(device)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    saved = [(p, p.grad) for _, p in trainable]
    modes = [(m, m.training) for m in model.modules()]
    try:
        for _, p in trainable:
            p.grad = None
        model.train()
        logits = model(x)
        loss = (
            loss_fn(logits, y, x)
            if loss_fn is not None
            else F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        )
        if not loss.requires_grad:  # no trainable parameter reaches the loss at all
            return [n for n, _ in trainable]
        loss.backward()
        return [n for n, p in trainable if p.grad is None]
    finally:
        for p, grad in saved:
            p.grad = grad
        for m, mode in modes:
            m.training = mode


def check_gradients(
    spec: MethodSpec,
    params: Mapping[str, Any] | None,
    model: nn.Module,
    dataset: Dataset,
    split: ClassSplit,
    config: TrainConfig,
    *,
    samples: int = 2,
) -> None:
    """Run method ``spec`` on a copy of ``model`` with every training call replaced by one
    forward/backward; each must give every trainable parameter a gradient.

    Args:
        spec: the method (``METHODS.get(name)``); ``params`` its parameters.
        model: the pre-trained model (not changed: the method runs on a copy).
        dataset: the target training set; the samples of the classes the method trains on
            (S, or S ∪ U for a ``"seen+absent"`` method) are taken from it.
        split: the class split; ``config``: the fine-tuning settings.
        samples: the batch of each forward/backward: the first ``samples`` items of the data
            the method trains on (2: BatchNorm in train mode needs more than one).

    Raises:
        ValueError: a training call leaves trainable parameters without a gradient (named,
            with the method and the call's tag); or what the method itself raises.
    """
    labels = dataset_labels(dataset)
    if labels is not None:
        allowed = split.seen + split.absent if spec.uses_absent_data else split.seen
        rows = np.flatnonzero(np.isin(labels, allowed)).tolist()
        if isinstance(dataset, TensorDataset):  # a Subset of one would hide its labels
            dataset = TensorDataset(*(t[rows] for t in dataset.tensors))
        else:
            dataset = Subset(dataset, rows)
    pristine = model
    model = copy.deepcopy(model)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))

    def probe(model, data, config, tag="finetune", loss_fn=None, on_epoch_end=None):
        n = min(samples, len(data))
        x, y = default_collate([tuple(data[i][:2]) for i in range(n)])
        missing = parameters_without_gradient(
            model, (x, torch.as_tensor(y)), loss_fn, config.label_smoothing
        )
        if missing:
            shown = ", ".join(missing[:8]) + (
                f" and {len(missing) - 8} more" if len(missing) > 8 else ""
            )
            raise ValueError(
                f"fine-tuning method {spec.name!r} (training {tag!r}): {len(missing)} trainable "
                f"parameter(s) receive no gradient in a forward/backward: {shown}. They would "
                "never train (under DDP the run fails at its second step: 'Expected to have "
                "finished reduction'); the forward must use every parameter that requires grad"
            )
        return TrainResult(history=[])

    ctx = FinetuneContext(
        model=model,
        pretrained_state=state_copy(pristine),
        make_model=lambda: copy.deepcopy(pristine),
        dataset=dataset,
        config=config,
        split=split,
        params=dict(params or {}),
        train=probe,
        device=device,
    )
    spec.run(ctx)
