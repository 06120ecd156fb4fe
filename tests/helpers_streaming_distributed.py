"""Group members for tests/metrics/test_streaming_distributed.py: each rank streams its shard of
one data set into a :class:`calib.metrics.streaming.SeenAbsentState`, syncs, and checks the
result against the state of the whole data set built in the same process (importable
module-level functions, as :func:`tests.helpers_distributed.run_group` needs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from calib.metrics.streaming import SeenAbsentState

N, C, SEEN = 23, 9, [0, 1, 2, 3]
SETTINGS = dict(topk=(1, 3), gammas=(0.0, 0.5), alg=True)


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(N, C)).round(1).astype(np.float32)
    y = rng.integers(0, 4, N)  # in S: ALG may read them
    y[::3] = rng.integers(4, C, len(y[::3]))  # and some in U for the curve
    w = rng.uniform(0, 2, N)
    return z, y, w


def feed(rows: np.ndarray, batch: int = 5, index: bool = False, weights: bool = True):
    z, y, w = data()
    state = SeenAbsentState(C, SEEN, **SETTINGS)
    for start in range(0, len(rows), batch):
        r = rows[start : start + batch]
        state.update(
            torch.from_numpy(z[r]),
            torch.from_numpy(y[r]),
            sample_weight=w[r] if weights else None,
            index=r if index else None,
        )
    return state


def assert_same_state(got: SeenAbsentState, want: SeenAbsentState) -> None:
    a, b = got.columns(), want.columns()
    assert sorted(a) == sorted(b)
    for key in b:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        assert a[key].dtype == b[key].dtype, key
    for average in ("micro", "macro"):
        assert got.report(0.5, average=average) == want.report(0.5, average=average)
        assert got.ausuc(average) == want.ausuc(average)


def sync_in_every_order(rank: int, world: int) -> None:
    """Interleaved shards (uneven), shuffled padded shards with indices, contiguous shards,
    and an empty shard: each synced state is the whole data set's, in data-set order."""
    ALL = np.arange(N)
    z, y, _ = data()
    whole = feed(ALL)
    # interleaved (ShardSampler): 12 and 11 rows, the default order
    mine = feed(ALL[rank::world])
    before = mine.n_samples
    assert_same_state(mine.sync(), whole)
    assert mine.n_samples == before  # sync returns a new state, this one is unchanged
    # shuffled, padded to 24 by repeating a sample (DistributedSampler): ordered by index,
    # the repeat dropped
    sampler = DistributedSampler(range(N), num_replicas=world, rank=rank, shuffle=True, seed=3)
    rows = np.array(list(sampler))
    assert len(rows) == 12
    assert_same_state(feed(rows, index=True).sync(), feed(ALL, index=True))
    # contiguous shards of 17 and 6 rows; then an empty shard and the whole set on rank 0
    cut = {0: ALL[:17], 1: ALL[17:]}[rank]
    assert_same_state(feed(cut).sync(order="contiguous"), whole)
    lone = ALL if rank == 0 else ALL[:0]
    assert_same_state(feed(lone).sync(order="contiguous"), whole)
    # the ALG terms alone (no gaps): the same
    light = SeenAbsentState(C, SEEN, alg=True, keep_gaps=False)
    light_whole = SeenAbsentState(C, SEEN, alg=True, keep_gaps=False).update(z, y)
    rows = ALL[rank::world]
    got = light.update(z[rows], y[rows]).sync().columns()
    for key, value in light_whole.columns().items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    # without weights anywhere: no weight column after the sync either
    plain = feed(ALL[rank::world], weights=False).sync()
    assert "weight" not in plain.columns()
    assert_same_state(plain, feed(ALL, weights=False))


def mismatches_are_named(rank: int, world: int) -> None:
    """Every rank raises the same one-line error, none hangs."""
    z, y, _ = data()
    other = SeenAbsentState(C, SEEN if rank == 0 else [0, 1], alg=False).update(z, y)
    with pytest.raises(ValueError, match=r"sync: rank 1's state was built with different seen"):
        other.sync()
    uneven = SeenAbsentState(C, SEEN).update(z[: 3 + 10 * rank], y[: 3 + 10 * rank])
    with pytest.raises(ValueError, match=r"shard sizes \[3, 13\] are not those of an interleaved"):
        uneven.sync()
    labelled = SeenAbsentState(C, SEEN).update(z, y if rank == 0 else None)
    with pytest.raises(ValueError, match="some ranks' states are labelled and others' are not"):
        labelled.sync()


def torchmetrics_sync(rank: int, world: int) -> None:
    """SeenAbsentMetric on 2 processes (uneven interleaved shards, batches of 4): compute()
    after torchmetrics' own gather equals one process over the whole data set."""
    from calib.metrics.lightning_metric import SeenAbsentMetric

    z, y, w = data()
    kwargs = dict(num_classes=C, seen_classes=SEEN, gamma=0.5, topk=(1, 3))
    rows = np.arange(N)[rank::world]
    for weighted in (False, True):
        for average in ("micro", "macro"):
            shard = SeenAbsentMetric(average=average, **kwargs)
            whole = SeenAbsentMetric(average=average, **kwargs)
            for start in range(0, len(rows), 4):
                r = rows[start : start + 4]
                shard.update(
                    torch.from_numpy(z[r]), torch.from_numpy(y[r]), w[r] if weighted else None
                )
            whole.update(torch.from_numpy(z), torch.from_numpy(y), w if weighted else None)
            got, want = shard.compute(), whole.compute()
            assert got.keys() == want.keys()
            for key in want:
                if weighted or average == "macro":
                    # the gathered samples come in rank order: sums of weights may round apart
                    assert torch.isclose(got[key], want[key], rtol=1e-12, atol=1e-15), key
                else:  # counts: exact
                    assert torch.equal(got[key], want[key]), key
