"""``device=cuda:0`` under torchrun is refused, not run with every rank on GPU 0. The launch is described by the environment torchrun sets, monkeypatched."""

from __future__ import annotations

import pytest
import torch

from calib import distributed
from calib.train import resolve_device


def _launch(monkeypatch, rank: int, world: int, local_rank: int) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))


def test_one_process_keeps_an_explicit_index(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert distributed.local_device("cuda:0") == torch.device("cuda", 0)
    assert distributed.local_device("cuda:3") == torch.device("cuda", 3)


@pytest.mark.parametrize("resolve", [distributed.local_device, resolve_device])
def test_an_explicit_index_of_another_gpu_is_refused_under_torchrun(monkeypatch, resolve):
    _launch(monkeypatch, rank=1, world=2, local_rank=1)
    with pytest.raises(ValueError, match=r"device=cuda:0: this run has 2 processes") as err:
        resolve("cuda:0")
    assert "Use device=cuda (or auto)" in str(err.value)
    assert "cuda:1 (LOCAL_RANK)" in str(err.value)
    assert resolve("cuda") == torch.device("cuda", 1)
    assert resolve(resolve("cuda")) == torch.device("cuda", 1)  # a resolved device passes again


def test_one_gpu_per_node_may_name_cuda_0(monkeypatch):
    """Two nodes with one process each: LOCAL_RANK is 0 on both, cuda:0 is each one's GPU."""
    _launch(monkeypatch, rank=1, world=2, local_rank=0)
    assert distributed.local_device("cuda:0") == torch.device("cuda", 0)


def test_init_distributed_refuses_before_joining(monkeypatch):
    _launch(monkeypatch, rank=1, world=4, local_rank=1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: pytest.fail("set_device called"))
    monkeypatch.setattr(
        torch.distributed, "init_process_group", lambda *a, **k: pytest.fail("group joined")
    )
    with pytest.raises(ValueError, match="device=cuda:0: this run has 4 processes"):
        distributed.init_distributed("cuda:0")


def test_calib_run_refuses_it_before_any_work(monkeypatch):
    """The dry run's device check (every rank of calib-run) gives the same refusal, one line."""
    from calib.run import ConfigError
    from calib.run.plan import check_device

    _launch(monkeypatch, rank=0, world=2, local_rank=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device("cuda:0")  # rank 0's own GPU
    check_device("cuda")
    _launch(monkeypatch, rank=1, world=2, local_rank=1)
    with pytest.raises(ConfigError, match=r"device=cuda:0: .*Use device=cuda"):
        check_device("cuda:0")
