"""``frozen_head``: the head stays as pre-trained, the backbone trains."""

from __future__ import annotations

from torch import nn

from calib.methods.full import train_all
from calib.methods.parts import find_head, set_trainable
from calib.methods.spec import FinetuneContext, register_method

__all__ = ["run_frozen_head"]


@register_method(
    "frozen_head",
    trains="backbone",
    reference="Mai et al., NeurIPS 2024 ('Frozen Classifier'); Tu et al., Holistic Transfer, "
    "NeurIPS 2023 (keeping the classifier fixed)",
)
def run_frozen_head(ctx: FinetuneContext) -> nn.Module:
    """Fine-tune the backbone with the head frozen at its pre-trained weights.

    The paper's "Frozen Classifier" and Holistic Transfer's "fixed classifier" direction: every
    head parameter (weight and bias, or a cosine head's weight and scale) keeps
    ``requires_grad=False``, so the optimizer never sees it (no update, no weight decay) and it
    ends bitwise equal to the pre-trained head. The backbone, BatchNorm statistics included,
    trains as in ``full``.
    """
    _, head = find_head(ctx.model)
    set_trainable(head, False)
    return train_all(ctx)
