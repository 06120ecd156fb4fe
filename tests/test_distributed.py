"""calib.distributed and the multi-process paths of train / extract / run_pipeline (CPU, gloo).

The multi-process tests run 2 or 3 processes (:func:`tests.helpers_distributed.run_group`) that
join a gloo group through the same environment variables torchrun sets; an assertion failing in
a child fails the test with the child's traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from calib import distributed
from calib.data import ClassSplit, Domain
from calib.data.tensor_dataset import TensorImageDataset
from calib.distributed import ShardSampler, interleave_shards, launch_env
from calib.extract import extract, extraction_loader
from calib.run.pipeline import RunPlan, run_pipeline
from calib.run.settings import CalibrationConfig, EvalConfig, PCVConfig
from calib.train import TrainConfig, train
from calib.train.loop import convert_sync_batchnorm
from calib.train.sampling import EpochBatchSampler, derive_seed
from tests.helpers_distributed import run_group

# -- the launch environment ------------------------------------------------------------------


def test_launch_env_reads_torchrun_variables():
    assert launch_env({}) == distributed.DistributedContext()
    ctx = launch_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main) == (3, 4, 1, False)
    assert not ctx.is_distributed  # no group joined yet


@pytest.mark.parametrize(
    "env, match",
    [
        ({"RANK": "0", "WORLD_SIZE": "2"}, "not LOCAL_RANK"),
        ({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "inconsistent"),
        ({"RANK": "0", "WORLD_SIZE": "0", "LOCAL_RANK": "0"}, "inconsistent"),
        ({"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "RANK='x' is not an integer"),
    ],
)
def test_launch_env_rejects_partial_or_inconsistent_variables(env, match):
    with pytest.raises(ValueError, match=match):
        launch_env(env)


def test_an_unjoined_multi_process_launch_is_refused(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(RuntimeError, match="has not joined the process group"):
        distributed.context()
    assert not distributed.is_main()  # never raises: the launcher's rank
    with pytest.raises(RuntimeError, match="has not joined"):
        train(nn.Linear(2, 2), _blobs(8, 2, 2), TrainConfig(batch_size=4), progress=False)


def test_local_device_gives_each_rank_its_gpu(monkeypatch):
    assert distributed.local_device("cpu") == torch.device("cpu")
    assert distributed.local_device("cuda") == torch.device("cuda")  # one process: as given
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.local_device("cuda") == torch.device("cuda", 1)
    assert distributed.local_device("cuda:1") == torch.device("cuda", 1)  # its own: kept
    with pytest.raises(ValueError, match="device=cuda:0: .* Use device=cuda"):
        distributed.local_device(
            "cuda:0"
        )  # every rank on GPU 0 (tests/test_distributed_device_index.py)
    assert distributed.local_device("cpu") == torch.device("cpu")


def test_one_process_helpers_are_no_ops():
    x = torch.arange(6.0).reshape(3, 2)
    assert distributed.context().world_size == 1 and distributed.is_main()
    distributed.barrier()
    assert torch.equal(distributed.all_reduce_sum(x), x)
    assert distributed.all_gather_object({"a": 1}) == [{"a": 1}]
    assert [t.tolist() for t in distributed.all_gather_rows(x)] == [x.tolist()]
    with distributed.distributed_context("cpu") as ctx:
        assert not ctx.is_distributed and ctx.backend is None


# -- shards and their order ------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 7, 10, 11])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_cover_every_index_once_and_interleave_back(n, world):
    shards = [list(ShardSampler(n, rank=r, world_size=world)) for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(n))  # no duplicates, no gaps
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [len(ShardSampler(n, r, world)) for r in range(world)] == list(map(len, shards))
    parts = [torch.tensor(s, dtype=torch.int64).reshape(-1, 1) * 10 for s in shards]
    assert interleave_shards(parts, n).flatten().tolist() == [10 * i for i in range(n)]


def test_interleave_refuses_shards_of_the_wrong_size():
    parts = [torch.zeros(3, 2), torch.zeros(3, 2)]  # 6 rows cannot come from 5 samples
    with pytest.raises(ValueError, match="shard 1 of 2 has 3 rows"):
        interleave_shards(parts, 5)
    with pytest.raises(ValueError, match="rank"):
        ShardSampler(5, rank=2, world_size=2)


def test_rank_slices_of_each_global_batch_make_up_the_one_process_batch():
    for iters in (None, 5):
        whole = list(EpochBatchSampler(10, 4, seed=3, epoch=1, iters=iters))
        ranks = [
            list(EpochBatchSampler(10, 4, 3, 1, iters, rank=r, world_size=2)) for r in range(2)
        ]
        assert all(len(r) == len(whole) for r in ranks)
        for i, batch in enumerate(whole):
            assert ranks[0][i] + ranks[1][i] == batch  # disjoint halves, in order
            assert len(ranks[0][i]) == len(ranks[1][i]) == 2


def test_epoch_sampler_refuses_uneven_global_batches():
    with pytest.raises(ValueError, match="divisible"):
        EpochBatchSampler(10, 5, 0, 0, None, rank=0, world_size=2)
    with pytest.raises(ValueError, match="smaller than one global batch"):
        EpochBatchSampler(3, 4, 0, 0, None, rank=0, world_size=2)


def test_rank_zero_draws_the_one_process_seeds():
    one = derive_seed(7, 2, 0)
    assert derive_seed(7, 2, 0, rank=0) == one
    assert len({one, derive_seed(7, 2, 0, rank=1), derive_seed(7, 2, 0, rank=2)}) == 3


def test_sync_batchnorm_conversion_is_undone_keeping_trained_values():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Sequential(nn.BatchNorm1d(4)))
    bn_a, bn_b = model[1], model[2][0]
    undo = convert_sync_batchnorm(model)
    assert isinstance(model[1], nn.SyncBatchNorm) and isinstance(model[2][0], nn.SyncBatchNorm)
    assert model[1].weight is bn_a.weight and model[2][0].running_mean is bn_b.running_mean
    with torch.no_grad():
        model[1].weight.add_(1.0)  # "training" writes into the shared tensors
        model[2][0].running_mean.add_(2.0)
    model.eval()
    undo()
    assert model[1] is bn_a and model[2][0] is bn_b and not bn_a.training
    assert torch.equal(bn_a.weight, torch.full((4,), 2.0))
    assert torch.equal(bn_b.running_mean, torch.full((4,), 2.0))


# -- several processes -----------------------------------------------------------------------


class IndexNet(nn.Module):
    """Features = the input; logits = input row index copied into 3 columns (plus a linear part)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(2, 3)

    def forward_features_logits(self, x):
        return x, self.head(x) * 0 + x[:, :1]

    def forward(self, x):
        return self.forward_features_logits(x)[1]


class Recording(torch.utils.data.Dataset):
    """Wraps a dataset, recording the indices fetched from it."""

    def __init__(self, base) -> None:
        self.base, self.fetched = base, []

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        self.fetched.append(int(i))
        return self.base[i]


def _gather_worker(rank: int, world: int) -> None:
    # variable-sized rows, an empty rank, and a rank that does not know the shape
    local = torch.full((rank, 2), float(rank))
    parts = distributed.all_gather_rows(local if rank else None)
    assert [p.shape[0] for p in parts] == list(range(world))
    assert all(torch.equal(p, torch.full((r, 2), float(r))) for r, p in enumerate(parts))
    total = distributed.all_reduce_sum(torch.tensor([1.0, rank]))
    assert total.tolist() == [world, sum(range(world))]

    # extraction: N not divisible by W, and N < W (an empty shard)
    for n in (11, world - 1):
        x = torch.arange(n, dtype=torch.float32).reshape(-1, 1).repeat(1, 2)
        data = torch.utils.data.TensorDataset(x, torch.arange(n) % 3)
        out = extract(
            IndexNet(), extraction_loader(data, batch_size=2), features=True, progress=False
        )
        assert out.logits[:, 0].tolist() == list(range(n))  # dataset order, no dup, no gap
        assert torch.equal(out.labels, torch.arange(n) % 3) and torch.equal(out.features, x)

    data = torch.utils.data.TensorDataset(torch.arange(11.0).reshape(-1, 1).repeat(1, 2))
    mine = extract(IndexNet(), extraction_loader(data, batch_size=2), gather=False, progress=False)
    assert mine.logits[:, 0].tolist() == list(range(rank, 11, world)) and mine.labels is None

    # training: each rank loads only its slice of every global batch
    data = Recording(_blobs(12, 2, 2))
    train(nn.Linear(2, 2), data, TrainConfig(batch_size=6), device="cpu", progress=False)
    fetched = distributed.all_gather_object(data.fetched)
    assert all(len(f) == 4 for f in fetched)  # 2 batches x 6 / 3 ranks
    assert sorted(i for f in fetched for i in f) == list(range(12))  # one pass, nothing twice

    # BatchNorm statistics: after training every rank holds rank 0's (those of the checkpoint),
    # not those of its own last batch slice, so that a fresh run evaluates as a resumed one
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    train(net, _blobs(12, 2, 2), TrainConfig(batch_size=6, epochs=2), device="cpu", progress=False)
    states = distributed.all_gather_object({k: v.clone() for k, v in net.state_dict().items()})
    for key, value in states[0].items():
        assert all(torch.equal(other[key], value) for other in states[1:]), key

    with pytest.raises(ValueError, match="divisible by the 3 processes"):
        train(nn.Linear(2, 2), _blobs(12, 2, 2), TrainConfig(batch_size=4), progress=False)
    with pytest.raises(ValueError, match="sync_batchnorm needs CUDA"):
        cfg = TrainConfig(batch_size=6, sync_batchnorm=True)
        train(nn.Linear(2, 2), _blobs(12, 2, 2), cfg, device="cpu", progress=False)


def test_gather_and_sharded_extraction_in_three_processes():
    run_group(_gather_worker, 3)


def _timeout_worker(rank: int, world: int, minutes: float) -> None:
    import datetime

    assert distributed.process_group_timeout() == datetime.timedelta(minutes=minutes)


def test_the_timeout_reaches_the_process_group():
    """The group's collectives wait as long as asked, and calib's default is an hour, not
    NCCL's 10 minutes (a rank may wait while another job trains the shared source model)."""
    import datetime

    assert distributed.DEFAULT_TIMEOUT == datetime.timedelta(minutes=60)
    assert distributed.process_group_timeout() is None  # no group in this process
    run_group(_timeout_worker, 2, 7.0, timeout=datetime.timedelta(minutes=7))
    run_group(_timeout_worker, 2, 60.0)


def _calib_run_group_member(rank: int, port: int) -> None:
    import datetime
    import os

    from experiments.run import process_group

    os.environ.update(
        RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )  # fmt: skip
    with process_group({"device": "cpu", "dist_timeout_min": 9}) as ctx:
        assert ctx.is_distributed
        assert distributed.process_group_timeout() == datetime.timedelta(minutes=9)


def test_calib_run_joins_the_group_with_dist_timeout_min():
    from tests.helpers_distributed import free_port, run_processes

    run_processes(_calib_run_group_member, 2, free_port())


@pytest.mark.parametrize("timeout", [0, -5, "60"])
def test_a_bad_timeout_is_refused(timeout):
    import datetime

    bad = datetime.timedelta(minutes=timeout) if isinstance(timeout, int) else timeout
    with pytest.raises(ValueError, match=r"timeout must be a positive datetime.timedelta, got"):
        distributed.init_distributed("cpu", timeout=bad)


# -- the same run on 1 and 2 processes -------------------------------------------------------

N_CLASSES, SEEN = 6, (0, 1, 2)


class MLP(nn.Module):
    """No BatchNorm, no dropout: W processes on the same global batch compute what 1 does."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(16, 24), nn.ReLU())
        self.head = nn.Linear(24, N_CLASSES)

    def forward_features_logits(self, x):
        features = self.backbone(x)
        return features, self.head(features)

    def forward(self, x):
        return self.forward_features_logits(x)[1]


def _blobs(n: int, n_classes: int, dim: int, seed: int = 0, shift: float = 0.0):
    """Gaussian class blobs (``dim`` features, or 1x4x4 images when ``dim == 16``)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, dim, generator=torch.Generator().manual_seed(99)) * 1.5
    labels = torch.arange(n) % n_classes
    x = centres[labels] + shift + torch.randn(n, dim, generator=g)
    if dim == 16:
        return TensorImageDataset(x.reshape(n, 1, 4, 4), labels.numpy())
    return torch.utils.data.TensorDataset(x, labels)


def _pipeline_plan(run_dir: Path) -> RunPlan:
    target_train = _blobs(240, N_CLASSES, 16, seed=1, shift=0.5)  # a shifted target domain
    target = Domain(
        train=target_train,
        test=_blobs(61, N_CLASSES, 16, seed=2, shift=0.5),  # 61: not divisible by 2
        num_classes=N_CLASSES,
        class_names=[str(c) for c in range(N_CLASSES)],
        name="blobs",
    )
    source = Domain(
        train=_blobs(192, N_CLASSES, 16, seed=3),
        test=_blobs(12, N_CLASSES, 16, seed=4),
        num_classes=N_CLASSES,
        class_names=[str(c) for c in range(N_CLASSES)],
        name="blobs_source",
    )
    finetune = TrainConfig(optimizer="sgd", lr=0.05, epochs=3, batch_size=16, seed=5)
    return RunPlan(
        target=target,
        split=ClassSplit.explicit(list(SEEN), None, num_classes=N_CLASSES),
        make_model=MLP,
        finetune=finetune,
        run_dir=run_dir,
        calibration=CalibrationConfig(
            selectors=("alg", "pcv", "prior", "oracle"), pcv=PCVConfig(num_splits=2, seed=1)
        ),
        source=source,
        source_train=TrainConfig(optimizer="sgd", lr=0.1, epochs=2, batch_size=32, seed=6),
        # per process; 61 rows -> uneven shards
        eval=EvalConfig(batch_size=8, amp=False, figures=False),
        device="cpu",
        progress=False,
    )


def _pipeline_worker(rank: int, world: int, run_dir: str, out_dir: str) -> None:
    results = run_pipeline(_pipeline_plan(Path(run_dir)))
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")


def _metric_rows(results: dict) -> dict[str, dict]:
    rows = {"pretrained": results["pretrained"], "finetuned": results["finetuned"]}
    rows.update({f"calibrated/{k}": v for k, v in results["calibrated"].items()})
    return rows


@pytest.mark.slow
def test_two_gloo_processes_give_the_one_process_metrics_and_gamma(tmp_path):
    """Same data, same global batches: metrics and every selector's γ agree.

    Tolerance: DDP averages the two half-batch gradients in another order of float32
    additions than one process, so the weights differ by rounding only (measured here: at
    most 6e-8; logits 1.5e-6; γ 4e-7). γ, AUSUC and the logits may differ by 1e-4; an
    accuracy could flip by one sample only if a decision margin were below that, which the
    seeded data here does not have, so accuracies must agree exactly. The model has no
    BatchNorm (per-rank batch statistics would differ from whole-batch ones on the CPU, where
    SyncBatchNorm is unavailable) and no dropout (its masks are drawn per rank).
    """
    one = run_pipeline(_pipeline_plan(tmp_path / "one"))
    run_group(_pipeline_worker, 2, str(tmp_path / "two"), str(tmp_path))
    two, two_rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert two == two_rank1  # every rank computes the same results from the gathered rows
    assert two["meta"]["world_size"] == 2 and one["meta"]["world_size"] == 1

    # only rank 0 wrote, and what it wrote is what it returned
    written = json.loads((tmp_path / "two" / "results.json").read_text())
    assert written["calibrated"]["alg"]["gamma"] == pytest.approx(two["calibrated"]["alg"]["gamma"])

    rows_one, rows_two = _metric_rows(one), _metric_rows(two)
    assert rows_one.keys() == rows_two.keys()
    assert set(one["calibrated"]) == {"alg", "pcv", "prior", "oracle"}
    for row, m1 in rows_one.items():
        m2 = rows_two[row]
        assert m1.keys() == m2.keys(), row
        for key, v1 in m1.items():
            tol = 1e-4 if key in ("gamma", "ausuc") else 0.0
            assert m2[key] == pytest.approx(v1, abs=tol, nan_ok=True), (row, key)
    assert 0.2 < one["finetuned"]["acc_seen"]  # the run learned something: not a trivial match

    for tag in ("finetuned_train", "finetuned_test", "pretrained_test", "pcv_split_1_heldout"):
        a, b = (torch.load(tmp_path / d / "extract" / f"{tag}.pt") for d in ("one", "two"))
        assert torch.equal(a["labels"], b["labels"]), tag  # same rows in the same order
        torch.testing.assert_close(b["logits"], a["logits"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(b["features"], a["features"], atol=1e-4, rtol=1e-4)

    for stage in ("source", "finetune", "pcv/split_0"):
        w1, w2 = (
            torch.load(tmp_path / d / stage / "checkpoints" / "final.pt") for d in ("one", "two")
        )
        for key in w1:
            torch.testing.assert_close(w2[key], w1[key], atol=1e-5, rtol=1e-5)
        h1, h2 = (
            json.loads((tmp_path / d / stage / "checkpoints" / "done").read_text())["history"]
            for d in ("one", "two")
        )
        for e1, e2 in zip(h1, h2, strict=True):  # loss and accuracy over the global batches
            assert e2["loss"] == pytest.approx(e1["loss"], rel=1e-5)
            assert e2["acc"] == e1["acc"]
    assert np.isfinite(one["calibrated"]["pcv"]["gamma"])
