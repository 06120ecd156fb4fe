"""backend_flags: deterministic kernels or cuDNN autotuning for a block, every flag put back;
train() runs under the flags its config asks for, and through torch.compile when asked."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from calib.train import TrainConfig, backend_flags, train
from calib.train.backend_flags import CUBLAS_WORKSPACE
from tests.helpers_train import make_dataset, make_model

cudnn = torch.backends.cudnn


def _flags() -> tuple[bool, bool, bool, bool]:
    return (
        cudnn.benchmark,
        cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )


@pytest.fixture
def no_cublas_setting(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)


def test_deterministic_mode_sets_every_switch_and_puts_them_back(no_cublas_setting):
    before = _flags()
    assert before == (False, False, False, False)  # torch's defaults in a fresh test process
    with backend_flags(deterministic=True, cudnn_benchmark=True):
        assert _flags() == (False, True, True, True)  # benchmark off: it would pick at random
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE
    assert _flags() == before


def test_the_flags_come_back_when_the_block_raises(no_cublas_setting):
    before = _flags()
    with pytest.raises(RuntimeError, match="boom"), backend_flags(deterministic=True):
        raise RuntimeError("boom")
    assert _flags() == before


def test_cudnn_benchmark_alone_and_nested_blocks():
    before = _flags()
    with backend_flags(cudnn_benchmark=True):
        assert cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
        with backend_flags(deterministic=True):
            assert not cudnn.benchmark and cudnn.deterministic
        assert cudnn.benchmark and not cudnn.deterministic
    assert _flags() == before
    with backend_flags(cudnn_benchmark=False):  # False leaves the process's setting alone
        assert _flags() == before


def test_a_cublas_setting_of_the_users_is_kept(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    with backend_flags(deterministic=True):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def _train_recording(config: TrainConfig, dropout: bool = True, **kwargs):
    seen = []

    def loss_fn(logits, y, x):
        seen.append(_flags())
        return F.cross_entropy(logits, y)

    model = make_model()
    if not dropout:  # a compiled dropout draws its masks from another generator
        model.backbone[3] = torch.nn.Identity()
    train(model, make_dataset(), config, device="cpu", progress=False, loss_fn=loss_fn, **kwargs)
    return model, seen


def test_train_runs_under_the_configs_flags_and_restores_them(no_cublas_setting):
    before = _flags()
    _, seen = _train_recording(TrainConfig(epochs=1, batch_size=16, lr=0.01, deterministic=True))
    assert seen and all(s[1:] == (True, True, True) for s in seen)
    assert _flags() == before
    # cuDNN autotuning is for CUDA inputs: on the CPU the flag stays as it was
    _, seen = _train_recording(TrainConfig(epochs=1, batch_size=16, lr=0.01))
    assert all(s == before for s in seen)


def test_the_switches_are_not_fingerprinted(tmp_path):
    """A run resumes with deterministic kernels or compile switched on: same numbers."""
    base = dict(epochs=1, batch_size=16, lr=0.01)
    train(make_model(), make_dataset(), TrainConfig(**base), run_dir=tmp_path, device="cpu",
          progress=False)  # fmt: skip
    other = TrainConfig(**base, deterministic=True, cudnn_benchmark=False, compile=True)
    result = train(make_model(), make_dataset(), other, run_dir=tmp_path, device="cpu",
                   progress=False)  # fmt: skip
    assert result.already_done


def test_compile_trains_through_the_compiled_model(monkeypatch):
    """torch.compile is replaced by a pass-through that records what goes through it (the real
    compiler takes a minute on this CPU: see the slow test); the weights are those of a run
    without it, bit for bit (the same computation)."""
    compiled = []

    class PassThrough(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net, self.calls = net, 0

        def forward(self, x):
            self.calls += 1
            return self.net(x)

    def fake_compile(net, **kwargs):
        compiled.append(PassThrough(net))
        return compiled[-1]

    monkeypatch.setattr(torch, "compile", fake_compile)
    config = TrainConfig(epochs=2, batch_size=16, lr=0.01, compile=True)
    model, _ = _train_recording(config)
    assert len(compiled) == 1 and compiled[0].net is model and compiled[0].calls == 8
    plain, _ = _train_recording(TrainConfig(epochs=2, batch_size=16, lr=0.01))
    for (name, a), b in zip(model.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_compile_with_the_real_compiler_trains_the_same_model():
    config = dict(epochs=1, batch_size=16, lr=0.01)
    model, _ = _train_recording(TrainConfig(**config, compile=True), dropout=False)
    plain, _ = _train_recording(TrainConfig(**config), dropout=False)
    for (name, a), b in zip(model.state_dict().items(), plain.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)  # fused kernels round


def _conv_data(n: int = 64):
    g = torch.Generator().manual_seed(0)
    return torch.utils.data.TensorDataset(
        torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 5, (n,), generator=g)
    )


class _ConvNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2), torch.nn.Conv2d(16, 16, 3), torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
        )  # fmt: skip
        self.head = torch.nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.backbone(x))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_deterministic_training_is_bit_identical_and_benchmark_is_scoped():
    seen, weights = [], []
    for deterministic in (True, True, False):
        torch.manual_seed(0)
        model = _ConvNet()

        def loss_fn(logits, y, x):
            seen.append((deterministic, torch.backends.cudnn.benchmark))
            return F.cross_entropy(logits, y)

        config = TrainConfig(epochs=2, batch_size=16, lr=0.05, amp="off",
                             deterministic=deterministic)  # fmt: skip
        train(model, _conv_data(), config, device="cuda", progress=False, loss_fn=loss_fn)
        weights.append({k: v.cpu() for k, v in model.state_dict().items()})
    for name, a in weights[0].items():
        assert torch.equal(a, weights[1][name]), name
    assert {b for d, b in seen if d} == {False} and {b for d, b in seen if not d} == {True}
    assert torch.backends.cudnn.benchmark is False  # put back after each train()
