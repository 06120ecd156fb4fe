"""Runner: its extractions compute in the precision the extraction stages are keyed by."""

from __future__ import annotations

import torch

from calib.run import runner as runner_module
from calib.run.runner import Runner
from calib.run.settings import EvalConfig
from calib.run.stages import StageStore


def _runner(tmp_path, amp: bool, device: str = "cpu") -> Runner:
    return Runner(tmp_path, torch.device(device), EvalConfig(amp=amp), False, StageStore(tmp_path))


def test_on_the_cpu_the_extractions_run_in_fp32(tmp_path):
    for amp in (True, False):
        runner = _runner(tmp_path, amp)
        assert runner.precision == "fp32" and runner.amp is False


def test_the_autocast_dtype_is_the_resolved_precisions(tmp_path, monkeypatch):
    seen = []

    def as_a_gpu(amp, device):
        seen.append((amp, str(device)))
        return "fp16" if amp else "fp32"

    monkeypatch.setattr(runner_module, "resolve_precision", as_a_gpu)
    assert _runner(tmp_path, True).amp == torch.float16
    assert _runner(tmp_path, False).amp is False
    assert seen == [(True, "cpu"), (False, "cpu")]
