"""A FinetuneContext for the method tests: calib.train.train in tmp/<tag>, with a kill switch.

``make_context(tmp, "wise_ft", {"alpha": 0.3})`` gives a context around a TinyNet (5 classes,
S = {0, 1, 2}, U = {3, 4}) and the S samples of a small synthetic set. ``kill=(tag, epoch)``
makes the training of stage ``tag`` raise :class:`Killed` from its epoch-end hook at
``epoch`` (1-based): epochs before it are checkpointed, that one is not, as after a kill.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from calib.data import ClassSplit
from calib.methods import METHODS, FinetuneContext
from calib.methods.parts import state_copy
from calib.train import TrainConfig, train
from tests.helpers_train import make_dataset, make_model

SPLIT = ClassSplit(seen=(0, 1, 2), absent=(3, 4), num_classes=5)

# 3 epochs of 3 batches of 8: crosses pass boundaries (the S subset has fewer than 24 samples
# per pass for some seeds), with momentum, warm-up, dropout and BatchNorm
CONFIG = dict(
    optimizer="sgd",
    lr=0.05,
    lr_head=0.1,
    epochs=3,
    iters_per_epoch=3,
    batch_size=8,
    warmup_iters=2,
    seed=3,
)


def runnable_methods() -> list[str]:
    """Every registered method whose optional dependency is installed (lora needs peft)."""
    names = METHODS.names()
    if importlib.util.find_spec("peft") is None:
        names = [n for n in names if n != "lora"]
    return names


class Killed(RuntimeError):
    """Raised by the kill switch."""


def labelled(x: torch.Tensor, y: torch.Tensor) -> TensorDataset:
    """A TensorDataset that exposes ``.targets`` (as calib's datasets do)."""
    ds = TensorDataset(x, y)
    ds.targets = y.clone()
    return ds


def dataset(classes=SPLIT.seen, n: int = 96, seed: int = 0) -> TensorDataset:
    """The samples of ``classes`` among ``n`` synthetic TinyNet points."""
    base = make_dataset(n, seed)
    x, y = base.tensors
    keep = torch.from_numpy(np.isin(y.numpy(), list(classes)))
    return labelled(x[keep], y[keep])


def pretrained(seed: int = 0) -> torch.nn.Module:
    """A TinyNet whose head and BatchNorm statistics are not at their initial values."""
    model = make_model(seed)
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        bn = model.backbone[1]
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.1)
        bn.running_var.copy_(1 + torch.rand(bn.num_features, generator=g))
        bn.num_batches_tracked.fill_(17)
    return model


def make_context(
    tmp: Path,
    params: dict | None = None,
    *,
    model: torch.nn.Module | None = None,
    make: Callable[[], torch.nn.Module] = make_model,
    data: TensorDataset | None = None,
    config: dict | None = None,
    split: ClassSplit = SPLIT,
    kill: tuple[str, int] | None = None,
    on_epoch_end=None,
    calls: list | None = None,
) -> FinetuneContext:
    """A context whose ``train`` runs calib.train.train in ``tmp/<tag>`` on the CPU.

    ``calls`` (a list) receives ``(tag, trainable parameter names)`` of every train call.
    """
    model = pretrained() if model is None else model
    cfg = TrainConfig(**{**CONFIG, **(config or {})})

    def train_fn(m, ds, c, tag="finetune", loss_fn=None, on_epoch_end=None):
        hook = on_epoch_end
        if kill is not None and kill[0] == tag:

            def hook(epoch, net, inner=on_epoch_end):
                if inner is not None:
                    inner(epoch, net)
                if epoch == kill[1]:
                    raise Killed(f"killed in {tag} epoch {epoch}")

        if calls is not None:
            calls.append((tag, [n for n, p in m.named_parameters() if p.requires_grad]))
        return train(
            m,
            ds,
            c,
            run_dir=Path(tmp) / tag,
            device="cpu",
            progress=False,
            log=lambda line: None,
            loss_fn=loss_fn,
            on_epoch_end=hook,
        )

    return FinetuneContext(
        model=model,
        pretrained_state=state_copy(model),
        make_model=make,
        dataset=dataset() if data is None else data,
        config=cfg,
        split=split,
        params=dict(params or {}),
        train=train_fn,
        device=torch.device("cpu"),
        on_epoch_end=on_epoch_end,
    )


def same_state(a: dict, b: dict) -> bool:
    """Same keys, and every tensor equal (torch.equal: bitwise up to the sign of zero)."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
