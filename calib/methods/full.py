"""``full``: fine-tune every parameter with cross-entropy over all logits on S."""

from __future__ import annotations

from torch import nn

from calib.methods.spec import FinetuneContext, register_method

__all__ = ["run_full", "train_all"]


def train_all(ctx: FinetuneContext, tag: str = "finetune") -> nn.Module:
    """Train all of ``ctx.model`` on ``ctx.dataset`` with ``ctx.config`` (the main call: it gets
    ``ctx.on_epoch_end``); returns ``ctx.model``."""
    ctx.train(ctx.model, ctx.dataset, ctx.config, tag=tag, on_epoch_end=ctx.on_epoch_end)
    return ctx.model


@register_method(
    "full",
    trains="all",
    reference="Mai et al., Fine-Tuning is Fine, if Calibrated, NeurIPS 2024 (their fine-tuning)",
)
def run_full(ctx: FinetuneContext) -> nn.Module:
    """Plain fine-tuning: every parameter, cross-entropy over all C logits, the S samples only.

    The paper's fine-tuning (Mai et al., NeurIPS 2024, following Tu et al., Holistic Transfer,
    NeurIPS 2023): the head keeps its rows for the absent classes, which get no positive
    sample. The loss is :func:`calib.train.train`'s default (cross-entropy with
    ``config.label_smoothing``); the head trains at ``config.lr_head``.
    """
    return train_all(ctx)
