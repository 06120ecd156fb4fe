"""A finished ``train()`` leaves no optimizer, optimizer state or gradients alive: with the garbage collector off, reference counting alone must free them, as in a
sweep whose jobs run in one process."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import calib.train.trainer as trainer_module
from calib.train import TrainConfig, train


@pytest.fixture
def no_gc():
    # torch's first optimizer of a process imports torch._dynamo, which leaves a reference
    # cycle through the frames of that call (collectable garbage, not ours): built here first
    torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@pytest.fixture
def recorded(monkeypatch):
    """Weak references to every optimizer and trainer that ``train`` builds."""
    refs: dict[str, list[weakref.ref]] = {"optimizer": [], "trainer": []}
    create = trainer_module.create_optimizer

    def recording_create(*args, **kwargs):
        optimizer = create(*args, **kwargs)
        refs["optimizer"].append(weakref.ref(optimizer))
        return optimizer

    init = trainer_module._Trainer.__init__

    def recording_init(self, *args, **kwargs):
        refs["trainer"].append(weakref.ref(self))
        init(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "create_optimizer", recording_create)
    monkeypatch.setattr(trainer_module._Trainer, "__init__", recording_init)
    return refs


def _data(n=16):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("with_run_dir", [False, True])
def test_nothing_of_the_training_outlives_train_without_the_collector(
    no_gc, recorded, tmp_path, label_smoothing, with_run_dir
):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    cfg = TrainConfig(
        epochs=2, batch_size=4, lr=0.1, optimizer="adamw", label_smoothing=label_smoothing
    )
    train(
        model,
        _data(),
        cfg,
        device="cpu",
        progress=False,
        run_dir=tmp_path / "run" if with_run_dir else None,
    )
    assert len(recorded["optimizer"]) == 1 and len(recorded["trainer"]) == 1
    assert recorded["trainer"][0]() is None, "the trainer is kept alive (a reference cycle)"
    assert recorded["optimizer"][0]() is None, "the optimizer (and its state) outlived train()"
    assert all(p.grad is None for p in model.parameters())


def test_the_trained_model_itself_is_freed_with_the_collector_off(no_gc, recorded):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    ref = weakref.ref(model)
    train(model, _data(), TrainConfig(epochs=1, batch_size=4), device="cpu", progress=False)
    del model
    assert ref() is None


def test_a_failed_training_keeps_no_optimizer_state_or_gradients(recorded):
    """The traceback of an error holds the trainer's frames; what it holds must be small."""
    calls = []

    def failing_loss(logits, y, x):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return nn.functional.cross_entropy(logits, y)

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    cfg = TrainConfig(epochs=2, batch_size=4, optimizer="adamw")
    with pytest.raises(RuntimeError, match="boom") as err:
        train(model, _data(), cfg, device="cpu", progress=False, loss_fn=failing_loss)
    optimizer = recorded["optimizer"][0]()
    assert optimizer is not None  # kept by the traceback's frames, as expected
    assert len(optimizer.state) == 0  # its moments are gone
    assert all(p.grad is None for p in model.parameters())
    del err
