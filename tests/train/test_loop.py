"""train(): config validation, what an epoch is, determinism, in-process resume, finished runs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from calib.train import TrainConfig, train
from calib.train.sampling import EpochBatchSampler
from tests.helpers_train import make_dataset, make_model


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _run(config: TrainConfig, run_dir=None, model=None, dataset=None, **kwargs):
    model = make_model() if model is None else model
    dataset = make_dataset() if dataset is None else dataset
    kwargs.setdefault("log", lambda line: None)
    result = train(model, dataset, config, run_dir=run_dir, progress=False, **kwargs)
    return model, result


# -- config validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("optimizer", "adamx"),
        ("scheduler", "step"),
        ("lr", 0.0),
        ("lr", -1.0),
        ("lr_head", math.inf),
        ("weight_decay", -1e-4),
        ("momentum", 1.5),
        ("epochs", 0),
        ("epochs", 2.5),
        ("iters_per_epoch", 0),
        ("batch_size", 0),
        ("warmup_iters", -1),
        ("seed", -1),
        ("amp", "fp8"),
        ("channels_last", "yes"),
        ("num_workers", -1),
        ("grad_clip", 0.0),
        ("label_smoothing", 1.0),
        ("min_lr", -0.1),
        ("optimizer_kwargs", {"lr": 0.1}),
    ],
)
def test_bad_config_values_fail_at_construction_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_unknown_optimizer_error_lists_the_known_ones():
    with pytest.raises(ValueError, match="Known: adabelief, adadelta.*Did you mean 'adam'"):
        TrainConfig(optimizer="adamm")


def test_momentum_with_adam_is_rejected():
    with pytest.raises(ValueError, match="takes no momentum"):
        TrainConfig(optimizer="adam", momentum=0.9)


def test_warmup_longer_than_the_run_fails_before_training():
    model = make_model()
    before = _weights(model)
    with pytest.raises(ValueError, match=r"warmup_iters \(100\) exceeds the run's 16 iterations"):
        _run(TrainConfig(epochs=2, batch_size=8, warmup_iters=100), model=model)
    _assert_same_weights(before, _weights(model))


def test_config_mutated_after_construction_is_revalidated():
    cfg = TrainConfig()
    cfg.batch_size = 0
    with pytest.raises(ValueError, match="batch_size"):
        _run(cfg)


# -- epochs and sample order ----------------------------------------------------------------


def test_one_pass_epoch_is_full_batches_of_distinct_samples():
    sampler = EpochBatchSampler(n=10, batch_size=4, seed=3, epoch=2, iters=None)
    batches = list(sampler)
    assert [len(b) for b in batches] == [4, 4] and len(sampler) == 2
    drawn = [i for b in batches for i in b]
    assert len(set(drawn)) == 8 and set(drawn) <= set(range(10))
    left_out = [
        set(range(10)) - {i for b in EpochBatchSampler(10, 4, 3, e, None) for i in b}
        for e in range(6)
    ]
    assert len({frozenset(s) for s in left_out}) > 1  # a different remainder each epoch
    assert sorted(i for b in EpochBatchSampler(12, 4, 3, 0, None) for i in b) == list(range(12))


def test_dataset_smaller_than_a_batch_is_one_batch():
    assert [sorted(b) for b in EpochBatchSampler(3, 8, 0, 0, None)] == [[0, 1, 2]]


def test_one_pass_never_ends_with_a_single_sample_batch_norm_cannot_take():
    # 17 = 2 x 8 + 1: a full pass would end with one sample, which BatchNorm refuses in training
    _, result = _run(TrainConfig(batch_size=8), dataset=make_dataset(17))
    assert result.history[0]["images_per_s"] * result.history[0]["seconds"] == pytest.approx(16)


def test_epoch_order_depends_only_on_seed_and_epoch():
    a = [list(EpochBatchSampler(10, 4, seed=3, epoch=e, iters=5)) for e in range(4)]
    b = list(EpochBatchSampler(10, 4, seed=3, epoch=2, iters=5))
    assert a[2] == b
    assert a[1] != a[2]
    assert list(EpochBatchSampler(10, 4, seed=4, epoch=2, iters=5)) != b


def test_iteration_stream_reshuffles_and_draws_samples_evenly():
    # 3 epochs x 5 iters x 4 = 60 draws from 10 samples: 6 full shuffled passes.
    stream = [i for e in range(3) for b in EpochBatchSampler(10, 4, 0, e, iters=5) for i in b]
    passes = [stream[k : k + 10] for k in range(0, 60, 10)]
    assert all(sorted(p) == list(range(10)) for p in passes)
    assert len({tuple(p) for p in passes}) == 6


def test_history_has_one_entry_per_epoch():
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.05)
    _, result = _run(cfg)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.resumed_from is None and result.already_done is False
    for h in result.history:
        assert set(h) == {"epoch", "loss", "acc", "lr", "seconds", "images_per_s"}
        assert 0 <= h["acc"] <= 1 and h["loss"] > 0 and h["images_per_s"] > 0
    # cosine over 3 x 4 iterations: the last step's lr is the second-to-last point
    assert result.history[-1]["lr"] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 11 / 12)))


def test_loss_is_cross_entropy_over_all_logits():
    torch.manual_seed(0)
    model = nn.Linear(8, 5)
    data = make_dataset(32)
    x, y = data.tensors
    expected = nn.functional.cross_entropy(model(x), y).item()
    # a tiny lr so that the epoch's mean loss is the initial model's loss
    _, result = _run(TrainConfig(batch_size=8, lr=1e-12), model=model, dataset=data)
    assert result.history[0]["loss"] == pytest.approx(expected, rel=1e-6)


def test_training_learns_and_leaves_the_model_mode_as_it_was():
    model = make_model().eval()
    _, result = _run(TrainConfig(epochs=8, batch_size=16, lr=0.1, lr_head=0.3), model=model)
    assert result.history[-1]["loss"] < 0.8 * result.history[0]["loss"]
    assert result.history[-1]["acc"] > result.history[0]["acc"]
    assert not model.training


def test_each_epoch_iterates_its_loader_once(monkeypatch):
    import calib.train.trainer as loop  # the epoch loop lives there

    iterators = []

    class CountingLoader(loop.DataLoader):
        def __iter__(self):
            iterators.append(self)
            return super().__iter__()

    monkeypatch.setattr(loop, "DataLoader", CountingLoader)
    _run(TrainConfig(epochs=3, batch_size=8))
    assert len(iterators) == 3 and len(set(map(id, iterators))) == 3  # workers start once


def test_iters_per_epoch_sets_the_number_of_images():
    _, result = _run(TrainConfig(epochs=1, batch_size=8, iters_per_epoch=3))
    assert result.history[0]["images_per_s"] * result.history[0]["seconds"] == pytest.approx(24)


@pytest.mark.parametrize(
    "name", ["sgd", "adam", "adamw", "adabelief", "adadelta", "adagrad", "rmsprop"]
)
def test_every_optimizer_trains(name):
    _, result = _run(TrainConfig(optimizer=name, epochs=1, batch_size=16))
    assert math.isfinite(result.history[0]["loss"])


def test_cpu_bf16_autocast_and_grad_clip_run():
    _, result = _run(TrainConfig(epochs=2, batch_size=16, amp="bf16", grad_clip=1.0))
    assert all(math.isfinite(h["loss"]) for h in result.history)


def test_every_available_device(device):
    model, result = _run(TrainConfig(epochs=1, batch_size=16), device=device)
    assert next(model.parameters()).device.type == device.type
    assert math.isfinite(result.history[0]["loss"])


# -- bad inputs ------------------------------------------------------------------------------


def test_label_outside_the_logit_columns_is_reported():
    x, y = make_dataset(16).tensors
    y = y.clone()
    y[5] = 7
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\).*0\.\.7"):
        _run(TrainConfig(batch_size=8), dataset=TensorDataset(x, y))


def test_float_labels_and_bad_logits_are_reported():
    x, y = make_dataset(16).tensors
    with pytest.raises(TypeError, match="integer class indices"):
        _run(TrainConfig(batch_size=8), dataset=TensorDataset(x, y.float()))
    with pytest.raises(ValueError, match=r"logits of shape \(N, C\)"):
        _run(TrainConfig(batch_size=8), model=nn.Sequential(nn.Linear(8, 5), nn.Flatten(0)))


def test_diverging_loss_raises():
    with pytest.raises(FloatingPointError, match="non-finite in epoch"):
        _run(TrainConfig(epochs=3, batch_size=8, lr=1e30, scheduler="constant"))


def test_empty_dataset_is_rejected():
    empty = TensorDataset(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty dataset"):
        _run(TrainConfig(), dataset=empty)


# -- determinism and resume -----------------------------------------------------------------

CFG = dict(epochs=4, batch_size=8, iters_per_epoch=3, lr=0.05, lr_head=0.1, warmup_iters=2, seed=5)


def test_same_seed_gives_identical_weights_other_seed_does_not():
    a, _ = _run(TrainConfig(**CFG))
    torch.rand(5)  # the global RNG state before the call must not matter
    b, _ = _run(TrainConfig(**CFG))
    c, _ = _run(TrainConfig(**{**CFG, "seed": 6}))
    _assert_same_weights(_weights(a), _weights(b))
    assert not torch.equal(a.head.weight, c.head.weight)


class _Crash(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    reference, ref_result = _run(TrainConfig(**CFG))

    def crash_in_epoch_3(line: str) -> None:
        if "epoch 3/" in line:
            raise _Crash

    with pytest.raises(_Crash):
        _run(TrainConfig(**CFG), run_dir=tmp_path, log=crash_in_epoch_3)
    lines = []
    model = make_model(seed=123)  # different init: the checkpoint must overwrite it
    result = train(
        model,
        make_dataset(),
        TrainConfig(**CFG),
        run_dir=tmp_path,
        progress=False,
        log=lines.append,
    )
    assert result.resumed_from == 2
    assert any("resuming from epoch 2/4" in line for line in lines)
    assert sum("fine-tune epoch" in line for line in lines) == 2  # epochs 3 and 4 only
    _assert_same_weights(_weights(reference), _weights(model))
    for h, r in zip(result.history, ref_result.history, strict=True):
        assert (h["epoch"], h["loss"], h["acc"], h["lr"]) == (
            r["epoch"],
            r["loss"],
            r["acc"],
            r["lr"],
        )


def test_finished_run_loads_final_weights_without_training(tmp_path):
    trained, first = _run(TrainConfig(**CFG), run_dir=tmp_path)
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == ["done", "final.pt"]
    lines = []
    fresh = make_model(seed=99)
    again = train(
        fresh,
        make_dataset(),
        TrainConfig(**CFG),
        run_dir=tmp_path,
        progress=False,
        log=lines.append,
    )
    assert again.already_done and again.history == first.history
    assert len(lines) == 1 and "already finished" in lines[0]
    _assert_same_weights(_weights(trained), _weights(fresh))
    final = torch.load(tmp_path / "checkpoints" / "final.pt", weights_only=True)  # plain state dict
    _assert_same_weights(_weights(trained), final)
