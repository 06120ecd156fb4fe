"""``distill_absent``: cross-entropy on S plus distillation of the pre-trained absent logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from calib.methods.params import real
from calib.methods.spec import FinetuneContext, register_method

__all__ = ["absent_distillation_loss", "distillation_objective", "run_distill_absent"]


def absent_distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    absent: torch.Tensor | Sequence[int],
    temperature: float,
) -> torch.Tensor:
    """τ² · mean over samples of KL(softmax(t_U / τ) ‖ softmax(z_U / τ)).

    Args:
        student_logits: (N, C) logits of the model being fine-tuned.
        teacher_logits: (N, C) logits of the pre-trained model on the same inputs.
        absent: the absent columns U.
        temperature: τ > 0; the τ² factor keeps the gradient scale independent of τ
            (Hinton et al., 2015).

    Returns:
        A scalar tensor (float32 at least): 0 exactly when the student's U logits equal the
        teacher's up to a shift common to a row.
    """
    idx = torch.as_tensor(absent, dtype=torch.long, device=student_logits.device)
    wide = torch.promote_types(student_logits.dtype, torch.float32)
    z = student_logits.index_select(1, idx).to(wide) / temperature
    t = teacher_logits.index_select(1, idx).to(wide) / temperature
    kl = F.kl_div(F.log_softmax(z, 1), F.log_softmax(t, 1), reduction="batchmean", log_target=True)
    return kl * temperature**2


def distillation_objective(
    teacher: nn.Module,
    absent: Sequence[int],
    weight: float,
    temperature: float,
    label_smoothing: float = 0.0,
):
    """``loss_fn(logits, labels, inputs)`` = CE(logits, labels) + weight · KD on U.

    The cross-entropy is :func:`calib.train.train`'s default term, computed the same way, so
    ``weight = 0`` trains exactly as ``full``. The teacher runs in eval mode without gradients.
    """
    teacher.eval().requires_grad_(False)

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        with torch.no_grad():
            target = teacher(inputs)
        return ce + weight * absent_distillation_loss(logits, target, absent, temperature)

    return loss_fn


@register_method(
    "distill_absent",
    trains="all (+ distillation of the pre-trained absent-class logits)",
    params={"weight": 1.0, "temperature": 2.0},
    checks={"weight": real(0.0), "temperature": real(0.0, lo_open=True)},
    reference="Li & Hoiem, Learning without Forgetting, TPAMI 2017 (LwF); Tu et al., Holistic "
    "Transfer, NeurIPS 2023 (preserving class relationships)",
)
def run_distill_absent(ctx: FinetuneContext) -> nn.Module:
    """Full fine-tuning with loss CE(z, y) + weight · τ² · KL(softmax(t_U/τ) ‖ softmax(z_U/τ)).

    Learning without Forgetting (Li & Hoiem, 2017) applied to the absent classes, one of
    Holistic Transfer's "preserve class relationships" baselines: the "old task" is the
    pre-trained model's distribution over the absent columns U, recorded on the fine-tuning
    inputs themselves (t = the pre-trained model's logits, computed on the fly in eval mode,
    which equals LwF's recording for un-augmented data and follows the augmentation
    otherwise). LwF's knowledge-distillation loss is a cross-entropy between the
    temperature-softened outputs, with T = 2 and weight λ_o = 1. The KL form used here differs
    from that cross-entropy by the teacher's entropy, a constant, so its gradients are the
    same; the τ² factor (Hinton et al., 2015) is added so that ``weight`` balances the two
    terms independently of τ: ``weight · τ²`` plays LwF's λ_o (LwF's own balance at τ = 2 is
    ``weight = 0.25``; the default 1.0 is Hinton's τ²-scaled balance). The seen
    logits get no distillation. ``weight = 0`` is ``full`` bitwise.
    """
    p = ctx.params
    teacher = ctx.pretrained_model()
    loss_fn = distillation_objective(
        teacher, ctx.split.absent, p["weight"], p["temperature"], ctx.config.label_smoothing
    )
    ctx.train(
        ctx.model,
        ctx.dataset,
        ctx.config,
        tag="finetune",
        loss_fn=loss_fn,
        on_epoch_end=ctx.on_epoch_end,
    )
    return ctx.model
