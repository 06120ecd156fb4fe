"""``oracle_all``: full fine-tuning on the target data of S ∪ U, an upper bound that uses U."""

from __future__ import annotations

from torch import nn

from calib.methods.full import train_all
from calib.methods.spec import FinetuneContext, register_method

__all__ = ["run_oracle_all"]


@register_method(
    "oracle_all",
    trains="all, on S ∪ U (uses absent-class data)",
    data="seen+absent",
    uses_absent_data=True,
    reference="Mai et al., NeurIPS 2024: the oracle fine-tuned on all target classes",
)
def run_oracle_all(ctx: FinetuneContext) -> nn.Module:
    """Fine-tune everything on the target training samples of S ∪ U: an upper bound.

    The paper's oracle row: the model sees labelled data of the absent classes, which the
    setting forbids, so it bounds what any method on S alone could reach. Training is that of
    ``full``; only the data differ. The run refuses a dataset without a U sample.
    """
    return train_all(ctx)
