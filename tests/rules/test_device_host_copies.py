"""The "computed on device" path (CUDA tensors; here a CPU tensor through the same code) brings
O(N) numbers to the host, never the N × C logits — also for non-negative logits (CLIP's), where
the probability-looking check used to copy them all — and its checks say what the numpy path says.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from calib.rules.gaps import scan_checked
from calib.validation import check_classes

N, C = 300, 40


@pytest.fixture
def host_copies(monkeypatch):
    """The sizes of every tensor that ``.cpu()`` or ``.numpy()`` is called on."""
    sizes: list[int] = []
    cpu, numpy = torch.Tensor.cpu, torch.Tensor.numpy

    def recording_cpu(self, *args, **kwargs):
        sizes.append(self.numel())
        return cpu(self, *args, **kwargs)

    def recording_numpy(self, *args, **kwargs):
        sizes.append(self.numel())
        return numpy(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", recording_cpu)
    monkeypatch.setattr(torch.Tensor, "numpy", recording_numpy)
    return sizes


def clip_like(seed: int = 0) -> torch.Tensor:
    """CLIP's logits: 100 × cosine similarities, here all non-negative (as many rows are)."""
    g = torch.Generator().manual_seed(seed)
    return 100 * torch.rand(N, C, generator=g, dtype=torch.float32)


def scan(z, name: str = "logits", labels=None):
    seen, absent = check_classes(range(0, C, 2), None, C)
    return scan_checked(z, seen, absent, labels, 0.5, name=name)


def test_non_negative_logits_copy_no_matrix_to_the_host(host_copies):
    z = clip_like()
    y = np.arange(N) % C
    got = scan(z, labels=y)
    assert host_copies and max(host_copies) <= N  # (N,) results only
    want = scan(z.numpy(), labels=y)
    for key in ("gap", "pred_other", "pred_absent", "rank", "rank_seen", "rank_absent"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_probabilities_are_still_recognised_on_the_device(host_copies):
    p = (clip_like(1) / 100).softmax(dim=1)
    with pytest.warns(UserWarning, match="logits look like probabilities"):
        scan(p)
    assert max(host_copies) <= N
    with pytest.warns(UserWarning, match="logits look like probabilities"):
        scan(p.numpy())  # the numpy path says the same


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_bad_value_is_named_as_on_the_numpy_path(host_copies, bad):
    z = clip_like(2)
    z[7, 3] = bad
    z[9, 1] = bad
    with pytest.raises(ValueError) as on_device:
        scan(z, name="x")
    assert max(host_copies) <= N
    with pytest.raises(ValueError) as on_host:
        scan(z.numpy(), name="x")
    assert str(on_device.value) == str(on_host.value)
    assert re.search(
        r"x has 2 non-finite value\(s\).*first at sample 7, class 3", str(on_host.value)
    )


def test_a_dead_row_is_named_without_a_copy(host_copies):
    z = clip_like(3)
    z[5] = -float("inf")
    with pytest.raises(ValueError, match="sample 5 has -inf in every column"):
        scan(z)
    assert max(host_copies) <= N


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_clip_logits_come_back_as_row_results_only(host_copies):
    from calib import accuracy_report, seen_absent_curve

    z, y = clip_like(4), torch.arange(N) % C
    seen = list(range(0, C, 2))
    want = accuracy_report(z, y, seen, gamma=0.5)
    want_curve = seen_absent_curve(z, y, seen)
    host_copies.clear()
    assert accuracy_report(z.cuda(), y.cuda(), seen, gamma=0.5) == want
    curve = seen_absent_curve(z.cuda(), y.cuda(), seen)
    assert curve.ausuc == want_curve.ausuc
    assert max(host_copies) <= N
