"""``linear_probe``: only the head trains; the backbone, its BatchNorm statistics included, is fixed."""

from __future__ import annotations

from torch import nn

from calib.methods.parts import backbone_modules, find_head, keep_in_eval
from calib.methods.spec import FinetuneContext, register_method
from calib.train import EpochCallback, TrainConfig

__all__ = ["probe", "run_linear_probe"]


def probe(
    ctx: FinetuneContext,
    config: TrainConfig,
    tag: str,
    on_epoch_end: EpochCallback | None = None,
) -> nn.Module:
    """Train only the head of ``ctx.model`` under ``config``, the backbone frozen and in eval
    mode; returns ``ctx.model``, each parameter's ``requires_grad`` as it was before."""
    model = ctx.model
    _, head = find_head(model)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    head_ids = {id(p) for p in head.parameters()}
    for p, trainable in flags:  # the head's parameters train unless they were frozen before
        p.requires_grad_(trainable and id(p) in head_ids)
    try:
        with keep_in_eval(model, backbone_modules(model)):
            ctx.train(model, ctx.dataset, config, tag=tag, on_epoch_end=on_epoch_end)
    finally:
        for p, trainable in flags:
            p.requires_grad_(trainable)
    return model


@register_method(
    "linear_probe",
    trains="head",
    reference="Mai et al., NeurIPS 2024 ('Linear Probing'); the LP of Kumar et al., ICLR 2022",
)
def run_linear_probe(ctx: FinetuneContext) -> nn.Module:
    """Train the head (all C rows) on fixed pre-trained features; nothing else moves.

    The paper's "Linear Probing". The backbone's parameters are frozen (``requires_grad=False``:
    out of the optimizer) and its modules stay in eval mode throughout training
    (:func:`calib.methods.parts.keep_in_eval`): BatchNorm normalises with, and does not update,
    its running statistics, and dropout is off, so the head is fitted on exactly the features
    the pre-trained model computes at test time, and the backbone, buffers included, ends
    bitwise equal to the pre-trained one. The head trains with cross-entropy at
    ``config.lr_head`` by the configured optimizer (Kumar et al. fit their probe with L-BFGS
    logistic regression; an SGD-trained probe is the paper's).
    """
    return probe(ctx, ctx.config, tag="finetune", on_epoch_end=ctx.on_epoch_end)
