"""``amp`` resolves to the precision the target device computes in: ``auto`` is bf16 only where
the target GPU has it natively, fp16 on an older one, fp32 on the CPU.

No GPU here: torch.cuda's device queries are monkeypatched to describe one.
"""

from __future__ import annotations

import pytest
import torch

from calib.train import autocast_dtype, resolve_precision


def _amp_dtype(amp, device):
    return autocast_dtype(resolve_precision(amp, device))


@pytest.fixture
def gpus(monkeypatch):
    """Two fake CUDA devices: 0 an Ampere (8.0), 1 a Volta (7.0, bf16 only emulated);
    the current device is 0, and torch's own check would count emulation as support."""
    capability = {0: (8, 0), 1: (7, 0)}
    current = {"index": 0}
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current["index"])
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: capability[d])
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    return current


@pytest.mark.parametrize("amp", ["auto", True])
def test_auto_is_fp16_on_a_pre_ampere_target_and_bf16_on_ampere(gpus, amp):
    assert _amp_dtype(amp, torch.device("cuda:1")) == torch.float16
    assert _amp_dtype(amp, torch.device("cuda:0")) == torch.bfloat16


def test_auto_without_an_index_asks_the_current_device(gpus):
    gpus["index"] = 1
    assert _amp_dtype("auto", torch.device("cuda")) == torch.float16
    gpus["index"] = 0
    assert _amp_dtype("auto", torch.device("cuda")) == torch.bfloat16


def test_explicit_modes_and_cpu_are_unchanged(gpus):
    assert _amp_dtype("bf16", torch.device("cuda:1")) == torch.bfloat16  # asked for: given
    assert _amp_dtype("fp16", torch.device("cuda:0")) == torch.float16
    assert _amp_dtype("off", torch.device("cuda:0")) is None
    assert _amp_dtype("auto", torch.device("cpu")) is None


def test_rocm_counts_as_native(gpus, monkeypatch):
    monkeypatch.setattr(torch.version, "hip", "6.0")
    assert _amp_dtype("auto", torch.device("cuda:1")) == torch.bfloat16


def test_the_resolved_names():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32" == resolve_precision(False, cpu)
    assert resolve_precision("off", "cpu") == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16" and resolve_precision("fp16", cpu) == "fp16"


def test_a_bad_amp_or_precision_is_named():
    with pytest.raises(ValueError, match=r"amp must be one of .* got 'half'"):
        resolve_precision("half", "cpu")
    with pytest.raises(ValueError, match=r"precision must be one of .* got 'fp64'"):
        autocast_dtype("fp64")


def test_the_settings_hold_the_resolved_precision_in_place_of_amp():
    from calib.train import TrainConfig

    settings = TrainConfig(amp="auto").settings("bf16")
    assert settings["precision"] == "bf16" and "amp" not in settings
    assert TrainConfig(amp="auto").settings()["amp"] == "auto"  # no device: as asked


def test_a_checkpoint_is_fingerprinted_by_the_resolved_precision(tmp_path):
    """amp auto and off both compute in fp32 on the CPU: the finished run is the same run;
    bf16 is another one, refused naming the precision."""
    from calib.train import ConfigMismatchError, TrainConfig, train
    from tests.helpers_train import make_dataset, make_model

    data = make_dataset()

    def config(amp):
        return TrainConfig(epochs=1, batch_size=16, lr=0.01, amp=amp)

    train(make_model(), data, config("auto"), run_dir=tmp_path, device="cpu", progress=False)
    again = train(make_model(), data, config("off"), run_dir=tmp_path, device="cpu", progress=False)
    assert again.already_done
    with pytest.raises(ConfigMismatchError, match=r"precision: 'fp32' -> 'bf16'"):
        train(make_model(), data, config("bf16"), run_dir=tmp_path, device="cpu", progress=False)
