"""``lp_ft``: a linear probe, then full fine-tuning from it (Kumar et al., ICLR 2022)."""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from calib.methods.full import train_all
from calib.methods.linear_probe import probe
from calib.methods.params import integer
from calib.methods.spec import FinetuneContext, register_method
from calib.train import TrainConfig
from calib.train.sampling import batches_per_pass

__all__ = ["probe_config", "run_lp_ft"]


def probe_config(config: TrainConfig, probe_epochs: int, dataset_size: int) -> TrainConfig:
    """The probe phase's settings: ``config`` with ``probe_epochs`` epochs; its warm-up is cut
    to the phase's length when longer (the schedule restarts for the full fine-tuning)."""
    iters = config.iters_per_epoch or batches_per_pass(dataset_size, config.batch_size)
    return replace(
        config, epochs=probe_epochs, warmup_iters=min(config.warmup_iters, iters * probe_epochs)
    )


@register_method(
    "lp_ft",
    trains="head, then all",
    params={"probe_epochs": None},
    checks={"probe_epochs": integer(0, allow_none=True, none_means="as many as fine-tuning")},
    reference="Kumar et al., Fine-Tuning can Distort Pretrained Features and Underperform "
    "Out-of-Distribution, ICLR 2022 (LP-FT)",
)
def run_lp_ft(ctx: FinetuneContext) -> nn.Module:
    """Linear probe for ``probe_epochs`` epochs, then fine-tune everything from there.

    LP-FT as in Kumar et al. (ICLR 2022): phase 1 is ``linear_probe`` (head only, backbone
    frozen and in eval mode) in the checkpoint folder ``probe``, with ``config``'s optimizer,
    learning rates and schedule over ``probe_epochs`` epochs (``None``: ``config.epochs``;
    Kumar et al. train the probe to convergence with L-BFGS, here it is trained with the run's
    optimizer); phase 2 is ``full`` (all parameters, ``config`` unchanged, a fresh optimizer
    and schedule) in ``finetune``, and gets the per-epoch hook. ``probe_epochs = 0`` is
    ``full`` exactly.
    """
    epochs = ctx.params["probe_epochs"]
    epochs = ctx.config.epochs if epochs is None else epochs
    if epochs > 0:
        probe(ctx, probe_config(ctx.config, epochs, len(ctx.dataset)), tag="probe")
    return train_all(ctx)
