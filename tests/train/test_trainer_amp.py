"""``amp: auto`` chooses bf16 only where the target GPU has it natively.

No GPU here: torch.cuda's device queries are monkeypatched to describe one.
"""

from __future__ import annotations

import pytest
import torch

from calib.train.trainer import _amp_dtype


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
