"""A global batch spread so thin that each process normalises BatchNorm over a few samples is
warned about (the paper's batch of 64 on 8 GPUs gives 8 per process)."""

from __future__ import annotations

import types
import warnings

import pytest
from torch import nn

from calib.methods.parts import keep_in_eval
from calib.train.trainer import SMALL_BATCHNORM_BATCH, _warn_small_batchnorm_batch


def _bn_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))


def _config(sync: bool = False):
    return types.SimpleNamespace(sync_batchnorm=sync)


def test_a_thin_per_process_batch_with_train_mode_batchnorm_is_warned():
    with pytest.warns(RuntimeWarning, match=r"each of the 8 processes normalises BatchNorm over 8"):
        _warn_small_batchnorm_batch(_bn_model(), 64, 8, _config())


@pytest.mark.parametrize(
    "model, batch, world, sync",
    [
        (_bn_model(), SMALL_BATCHNORM_BATCH * 2, 2, False),  # enough samples per process
        (_bn_model(), 64, 8, True),  # statistics synchronised across processes
        (nn.Sequential(nn.Linear(4, 3)), 64, 8, False),  # no BatchNorm
    ],
)
def test_no_warning_where_the_statistics_are_fine(model, batch, world, sync):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_small_batchnorm_batch(model, batch, world, _config(sync))


def test_no_warning_when_every_batchnorm_stays_frozen():
    model = _bn_model()
    with keep_in_eval(model, [model[1]]), warnings.catch_warnings():  # as linear_probe does
        warnings.simplefilter("error")
        _warn_small_batchnorm_batch(model, 64, 8, _config())
    with pytest.warns(RuntimeWarning):  # the same model, its BatchNorm training again
        _warn_small_batchnorm_batch(model, 64, 8, _config())
