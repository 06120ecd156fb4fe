"""train()'s extension points: a custom objective and a per-epoch callback."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from calib.train import TrainConfig, train
from tests.helpers_train import RESUME_CONFIG, make_dataset, make_model


def _train(config, **kwargs):
    model = make_model()
    train(model, make_dataset(48), config, progress=False, log=lambda line: None, **kwargs)
    return model.state_dict()


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_loss_fn_replaces_the_objective():
    cfg = TrainConfig(**RESUME_CONFIG)
    plain = _train(cfg)
    same_ce = _train(cfg, loss_fn=lambda z, y, x: F.cross_entropy(z, y))
    assert _same(plain, same_ce)  # the default objective, spelled out: bitwise equal
    seen = []

    def doubled(z, y, x):
        seen.append(x.shape[0])
        return 2 * F.cross_entropy(z, y)

    assert not _same(plain, _train(cfg, loss_fn=doubled))
    assert seen == [RESUME_CONFIG["batch_size"]] * (RESUME_CONFIG["epochs"] * 4)


def test_on_epoch_end_sees_every_epoch_and_leaves_training_unchanged():
    cfg = TrainConfig(**RESUME_CONFIG)
    plain = _train(cfg)
    calls = []

    def callback(epoch, model):
        calls.append((epoch, model.training))
        model.eval()
        torch.rand(100)  # draws from the global RNG: must not change the training stream

    assert _same(plain, _train(cfg, on_epoch_end=callback))
    assert [e for e, _ in calls] == list(range(RESUME_CONFIG["epochs"] + 1))


def test_on_epoch_end_after_resume_continues_without_repeats(tmp_path):
    cfg = TrainConfig(**{**RESUME_CONFIG, "epochs": 2})
    calls = []
    model = make_model()
    cb = lambda epoch, m: calls.append(epoch)  # noqa: E731
    train(
        model, make_dataset(48), cfg, run_dir=tmp_path, progress=False, log=print, on_epoch_end=cb
    )
    assert calls == [0, 1, 2]
    longer = TrainConfig(**{**RESUME_CONFIG, "epochs": 2})
    train(make_model(), make_dataset(48), longer, run_dir=tmp_path, progress=False, on_epoch_end=cb)
    assert calls == [0, 1, 2]  # a finished run is not re-evaluated
