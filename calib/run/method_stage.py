"""Fine-tuning by method: the harness side of :mod:`calib.methods`.

:func:`finetune_with_method` builds the :class:`~calib.methods.FinetuneContext` of one
training stage (the main fine-tuning, or one PCV pseudo split) and runs the method: its
training calls land in the stage's folder (``<stage>/`` for the main training, a sub-folder per
further phase, e.g. ``finetune/probe`` for LP-FT), resumable like any training.
:func:`alpha_tradeoff_logits` extracts WiSE-FT's test logits for every α of its grid.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from calib.data import ClassSplit
from calib.methods import FinetuneContext, endpoints, interpolate_state
from calib.methods.parts import state_copy
from calib.run.runner import Runner
from calib.run.settings import MethodConfig
from calib.run.stages import Stage
from calib.train import EpochCallback, TrainConfig

__all__ = ["finetune_with_method", "prepared_pretrained", "alpha_tradeoff_logits"]


def prepared_pretrained(pretrained: nn.Module, method: MethodConfig) -> nn.Module:
    """The model the method starts from (e.g. with a cosine head): the "pre-trained" row."""
    return method.spec.prepare(copy.deepcopy(pretrained), method.params)


def _context(
    runner: Runner,
    stage: Stage,
    pretrained: nn.Module,
    method: MethodConfig,
    dataset: Dataset,
    cfg: TrainConfig,
    split: ClassSplit,
    on_epoch_end: EpochCallback | None,
) -> FinetuneContext:
    folder = runner.run_dir / stage.name

    def train(model, data, config, tag="finetune", loss_fn=None, on_epoch_end=None):
        run_dir = folder if tag == "finetune" else folder / tag
        return runner.train_in(stage, run_dir, model, data, config, loss_fn, on_epoch_end)

    return FinetuneContext(
        model=copy.deepcopy(pretrained),
        pretrained_state=state_copy(pretrained),
        make_model=lambda: copy.deepcopy(pretrained),
        dataset=dataset,
        config=cfg,
        split=split,
        params=dict(method.params),
        train=train,
        device=runner.device,
        on_epoch_end=on_epoch_end,
    )


def finetune_with_method(
    runner: Runner,
    stage: Stage,
    pretrained: nn.Module,
    method: MethodConfig,
    dataset: Dataset,
    cfg: TrainConfig,
    split: ClassSplit,
    on_epoch_end: EpochCallback | None = None,
) -> nn.Module:
    """Run ``method`` on a copy of ``pretrained`` for ``stage``; returns the fine-tuned model.

    ``split`` is the run's (or the pseudo split's) classes: the method's "absent" classes are
    ``split.absent`` (what ``distill_absent`` distils).
    """
    runner.store.record(stage)
    ctx = _context(runner, stage, pretrained, method, dataset, cfg, split, on_epoch_end)
    return method.spec.run(ctx)


def alpha_tradeoff_logits(
    runner: Runner,
    stage: Stage,
    alpha_stages: Mapping[float, Stage],
    pretrained: nn.Module,
    method: MethodConfig,
    dataset: Dataset,
    cfg: TrainConfig,
    split: ClassSplit,
    test: Dataset,
    score: Callable[[Stage, nn.Module, Dataset], Any] | None = None,
) -> dict[float, Any]:
    """WiSE-FT: the test logits of ``interpolate_state(pre, ft, α)`` for every α of the grid.

    The fine-tuned end point is the finished fine-tuning stage's (loaded, not retrained).
    ``score(alpha_stage, model, test)``: what each α's model gives (default
    :meth:`Runner.extract`, its :class:`~calib.extract.Extracted`; with ``eval.logits=state``
    the pipeline passes ``Runner.extract_state`` with the test state's settings).
    """
    score = runner.extract if score is None else score
    ctx = _context(runner, stage, pretrained, method, dataset, cfg, split, None)
    pre, ft = endpoints(ctx)
    model = method.spec.prepare(copy.deepcopy(pretrained), method.params)
    out: dict[float, Any] = {}
    for alpha, alpha_stage in alpha_stages.items():
        model.load_state_dict(interpolate_state(pre, ft, alpha))
        out[alpha] = score(alpha_stage, model, test)
    return out
