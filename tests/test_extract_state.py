"""calib.extract.extract_state: the batch loop of extract, each batch reduced into a
SeenAbsentState on the model's device instead of kept. Checked against the state fed the
logits that extract returns (an independent path: the whole matrix, then one update), on
tuple and dict batches, with and without labels and ALG terms; its errors; and on 2 processes
(gloo), where each rank streams its shard and the synced state is the whole data set's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from calib.extract import extract, extract_state, extraction_loader
from calib.metrics.streaming import SeenAbsentState
from tests.helpers_distributed import run_group

N, D, C, SEEN = 37, 6, 9, [0, 1, 2, 3]


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g)
    y = torch.randint(0, C, (N,), generator=g)
    return x, y


def _model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(D, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, C))


def _assert_same(got: SeenAbsentState, want: SeenAbsentState) -> None:
    a, b = got.columns(), want.columns()
    assert sorted(a) == sorted(b)
    for key in b:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize(
    "settings",
    [dict(topk=(5,), gammas=(0.0, 1.5)), dict(alg=True, keep_gaps=False, topk=())],
    ids=["gaps-topk", "alg-only"],
)
def test_equals_the_state_of_the_extracted_logits(settings):
    x, y = _data()
    rows = torch.isin(y, torch.tensor(SEEN)) if settings.get("alg") else torch.ones(N, dtype=bool)
    loader = DataLoader(TensorDataset(x[rows], y[rows]), batch_size=8)
    model = _model()
    whole = extract(model, loader, progress=False)
    want = SeenAbsentState(C, SEEN, **settings).update(whole.logits, whole.labels)
    state = SeenAbsentState(C, SEEN, **settings)
    got = extract_state(model, loader, state, progress=False)
    assert got is state and got.n_samples == int(rows.sum())
    _assert_same(got, want)
    assert model.training  # the model's modes come back (dropout was off while streaming)


def test_dict_batches_unlabelled_and_appending():
    x, y = _data(2)
    batches = [{"image": x[i : i + 10], "label": y[i : i + 10]} for i in range(0, N, 10)]
    model = _model()
    want = SeenAbsentState(C, SEEN).update(extract(model, batches, progress=False).logits, y)
    got = extract_state(model, batches, SeenAbsentState(C, SEEN), progress=False)
    _assert_same(got, want)
    # no labels: an unlabelled state (the gaps, for prior)
    bare = [b["image"] for b in batches]
    free = extract_state(model, bare, SeenAbsentState(C, SEEN), progress=False)
    assert free.labelled is False
    np.testing.assert_array_equal(free.gaps, want.gaps)
    # a state with samples already: the loader's are appended
    twice = extract_state(model, batches, got, progress=False)
    assert twice.n_samples == 2 * N
    np.testing.assert_array_equal(twice.gaps[N:], want.gaps)


def test_errors_name_what_is_wrong():
    x, y = _data()
    model = _model()
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    with pytest.raises(TypeError, match="state must be a calib.SeenAbsentState, got dict"):
        extract_state(model, loader, {}, progress=False)
    with pytest.raises(ValueError, match="built for num_classes=5"):
        extract_state(model, loader, SeenAbsentState(5, [0, 1]), progress=False)
    empty = DataLoader(TensorDataset(x[:0], y[:0]), batch_size=8)
    with pytest.raises(ValueError, match="the loader yielded no samples"):
        extract_state(model, empty, SeenAbsentState(C, SEEN), progress=False)
    with pytest.raises(ValueError, match="alg=True needs labels"):
        extract_state(model, [x], SeenAbsentState(C, SEEN, alg=True), progress=False)
    shuffled = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    with pytest.warns(UserWarning, match="the loader shuffles"):
        extract_state(model, shuffled, SeenAbsentState(C, SEEN), progress=False)


def _shards_sync(rank: int, world: int) -> None:
    """Each rank streams its ShardSampler shard (19 and 18 rows, batches of 4); the returned
    state is the whole data set's, in data-set order, on every rank; the given state holds
    this rank's shard only."""
    x, y = _data(3)
    model = _model()
    loader = extraction_loader(TensorDataset(x, y), batch_size=4, pin_memory=False)
    mine = SeenAbsentState(C, SEEN, topk=(3,), alg=False)
    got = extract_state(model, loader, mine, progress=False)
    assert mine.n_samples == len(range(rank, N, world))
    with torch.no_grad():
        want = SeenAbsentState(C, SEEN, topk=(3,)).update(model.eval()(x), y)
    # the logits of other batch compositions may round apart: the gaps within float32's
    # tolerance, the labels exactly (data-set order), the hits and ranks alike here
    a, b = got.columns(), want.columns()
    assert sorted(a) == sorted(b)
    np.testing.assert_array_equal(a["label"], b["label"])
    np.testing.assert_allclose(a["gap"], b["gap"], rtol=1e-5, atol=1e-6)
    for key in ("hit_other", "hit_absent", "hit_seen", "rank", "rank_seen", "rank_absent"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.slow  # two processes: ~5 s
def test_two_processes_sync_their_shards():
    run_group(_shards_sync, 2)
