"""SeenAbsentMetric (torchmetrics) tested as torchmetrics tests its metrics: per-batch forward
against the whole-matrix functions on that batch, accumulated compute against them on every
sample, reset, pickling, float16/bfloat16/float64 inputs, and a 2-process gloo run against one
process (tests/helpers_streaming_distributed.py)."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("torchmetrics")

from calib.metrics import accuracy_report, ausuc  # noqa: E402
from calib.metrics.lightning_metric import SeenAbsentMetric  # noqa: E402
from tests.helpers_distributed import run_group  # noqa: E402
from tests.helpers_streaming_distributed import torchmetrics_sync  # noqa: E402

C, SEEN, GAMMA, TOPK = 15, list(range(6)), 0.25, (1, 3)
KEYS = ("acc_all", "acc_seen", "acc_absent", "acc_seen_seen", "acc_absent_absent", "hmean")


def batches(dtype=torch.float32, n=200, size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, C, generator=g) * 2).to(dtype)
    y = torch.randint(0, C, (n,), generator=g)
    return [(z[i : i + size], y[i : i + size]) for i in range(0, n, size)], z, y


def expected(z, y, **kwargs) -> dict[str, float]:
    """The whole-matrix numbers the metric must give, in its keys."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        report = accuracy_report(z, y, SEEN, gamma=GAMMA, topk=TOPK, **kwargs)
        area = ausuc(z, y, SEEN, **kwargs)
    keys = list(KEYS) + [key + f"_top{k}" for k in TOPK if k > 1 for key in KEYS]
    return {key: report[key] for key in keys} | {"ausuc": area}


def assert_equal(got: dict[str, torch.Tensor], want: dict[str, float]):
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key].dtype == torch.float64 and got[key].ndim == 0
        have = got[key].item()
        assert have == value or (math.isnan(have) and math.isnan(value)), key


def metric(**kwargs) -> SeenAbsentMetric:
    return SeenAbsentMetric(C, SEEN, gamma=GAMMA, topk=TOPK, **kwargs)


def test_forward_gives_each_batch_and_compute_all_of_them():
    parts, z, y = batches()
    m = metric()
    for zb, yb in parts:
        assert_equal(m(zb, yb), expected(zb, yb))  # forward: this batch alone
    assert_equal(m.compute(), expected(z, y))  # compute: every batch so far
    for zb, yb in parts:  # update and forward accumulate alike
        m.update(zb, yb)
    zz, yy = torch.cat([z, z]), torch.cat([y, y])
    assert_equal(m.compute(), expected(zz, yy))


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_sample_weight_and_macro_equal_the_whole_matrix(average):
    parts, z, y = batches(seed=1)
    w = torch.rand(len(y), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    m = metric(average=average)
    start = 0
    for zb, yb in parts:
        m.update(zb, yb, sample_weight=w[start : start + len(yb)])
        start += len(yb)
    got, want = m.compute(), expected(z, y, sample_weight=w, average=average)
    assert_equal(got, want)  # same samples, same order: the same sums


def test_reset_forgets_every_sample():
    parts, _, _ = batches()
    m = metric()
    for zb, yb in parts:
        m.update(zb, yb)
    m.reset()
    assert m.gap == [] and m.label == []
    zb, yb = parts[1]
    m.update(zb, yb)
    assert_equal(m.compute(), expected(zb, yb))


def test_a_pickled_metric_goes_on_where_it_stopped():
    parts, z, y = batches()
    m = metric()
    for zb, yb in parts[:2]:
        m.update(zb, yb)
    copy = pickle.loads(pickle.dumps(m))
    for zb, yb in parts[2:]:
        copy.update(zb, yb)
    assert_equal(copy.compute(), expected(z, y))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_high_precision_inputs(dtype):
    parts, z, y = batches(dtype)
    m = metric()
    for zb, yb in parts:
        m.update(zb, yb)
    assert_equal(m.compute(), expected(z, y))  # the same logits in that dtype, whole


def test_bad_input_is_named():
    m = metric()
    with pytest.raises(ValueError, match="logits have 4 columns but the state was built"):
        m.update(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels out of range"):
        m.update(torch.zeros(2, C), torch.tensor([0, C]))
    with pytest.raises(ValueError, match="non-finite"):
        m.update(torch.full((2, C), float("nan")), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="average must be one of"):
        metric(average="weighted")
    with pytest.raises(ValueError, match="the state holds no sample yet"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchmetrics: compute before update
            metric().compute()


@pytest.mark.slow  # two processes: ~5 s
def test_two_gloo_processes_equal_one():
    run_group(torchmetrics_sync, 2)


def test_uint8_flags_and_device_of_the_states():
    parts, _, _ = batches()
    m = metric()
    m.update(*parts[0])
    assert m.hit_other[0].dtype == torch.uint8 and m.gap[0].dtype == torch.float64
    assert all(t.device == m.device for name in m._defaults for t in getattr(m, name))
    np.testing.assert_array_equal(m.weight[0].numpy(), np.ones(len(parts[0][1])))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_states_stay_there_and_the_numbers_are_the_hosts():
    parts, z, y = batches(n=1000, size=256)
    m = metric().to("cuda")
    for zb, yb in parts:
        m.update(zb.cuda(), yb.cuda())
    assert m.gap[0].device.type == "cuda"
    got = m.compute()
    assert all(t.device.type == "cuda" for t in got.values())
    assert_equal({k: v.cpu() for k, v in got.items()}, expected(z, y))
