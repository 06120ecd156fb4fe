"""``lora``: low-rank adapters (Hu et al., ICLR 2022) through ``peft``, merged after training.

Needs the optional extra ``calib[lora]`` (``peft``); the rest of calib does not import it.
The adapters are injected into the model in place (``peft.tuners.lora.LoraModel``), trained
through ``ctx.train`` like any method, then merged into the base weights
(``merge_and_unload``): the model that comes back has the pre-trained architecture, plain
``nn.Linear`` / ``nn.Conv2d`` layers with W + (α/r)·B·A in them, so the rest of calib (and
its checkpoints) sees an ordinary model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

from calib.methods.params import boolean, integer, names, real
from calib.methods.parts import batchnorm_modules, find_head, keep_in_eval, set_trainable
from calib.methods.spec import FinetuneContext, register_method
from calib.train.sampling import derive_seed

__all__ = ["add_lora", "default_lora_targets", "merge_lora", "resolve_lora_targets", "run_lora"]

#: A stream of :func:`calib.train.sampling.derive_seed` of its own: the adapters' random init.
STREAM_LORA_INIT = 101


def _supported(module: nn.Module) -> bool:
    """A layer whose LoRA update peft can merge: Linear, or an ungrouped Conv2d."""
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, nn.Conv2d) and module.groups == 1


def _bypassed(model: nn.Module) -> dict[str, str]:
    """Layers whose parent reads their weights without calling them, name → the parent's type.

    ``nn.MultiheadAttention`` passes ``out_proj.weight`` to ``F.multi_head_attention_forward``
    itself: an adapter on ``out_proj`` is never called, receives no gradient and never trains
    (under DDP the run fails at its second step, "Expected to have finished reduction").
    """
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            out[f"{name}.out_proj" if name else "out_proj"] = type(module).__name__
    return out


def default_lora_targets(model: nn.Module) -> list[str]:
    """The names of every ``nn.Linear`` and ungrouped ``nn.Conv2d`` outside the head that
    its forward calls.

    Grouped (depthwise) convolutions are left out: peft cannot merge their adapters, and a
    low-rank update of a per-channel 3×3 filter adds next to nothing. So is the ``out_proj``
    of an ``nn.MultiheadAttention`` (CLIP's attention blocks), whose weight the attention
    reads directly: an adapter there would never train. For a :class:`calib.models.Classifier`
    these are the backbone's layers; for a timm model, every such layer but its classifier.
    """
    head_name, _ = find_head(model)
    bypassed = _bypassed(model)
    return [
        name
        for name, module in model.named_modules()
        if name
        and _supported(module)
        and name not in bypassed
        and name != head_name
        and not name.startswith(head_name + ".")
    ]


def resolve_lora_targets(model: nn.Module, targets: Sequence[str] | None) -> list[str]:
    """Full module names for ``targets`` (each a full name or a dotted suffix of names, peft's
    rule); ``None`` gives :func:`default_lora_targets`.

    Raises:
        ValueError: a target that matches no module, matches a module peft cannot merge, or
            matches a layer whose parent never calls it (``nn.MultiheadAttention.out_proj``).
    """
    if targets is None:
        found = default_lora_targets(model)
        if not found:
            raise ValueError(f"{type(model).__name__} has no Linear or Conv2d layer for LoRA")
        return found
    modules = dict(model.named_modules())
    bypassed = _bypassed(model)
    out: list[str] = []
    for target in targets:
        hits = [n for n in modules if n and (n == target or n.endswith("." + target))]
        if not hits:
            raise ValueError(
                f"lora: target_modules entry {target!r} matches no module of "
                f"{type(model).__name__}; e.g. {default_lora_targets(model)[:4]}"
            )
        for name in hits:
            if not _supported(modules[name]):
                m = modules[name]
                raise ValueError(
                    f"lora: target {target!r} matches {name!r}, a {type(m).__name__}"
                    f"{f' with groups={m.groups}' if isinstance(m, nn.Conv2d) else ''}; "
                    "LoRA adapters here must be mergeable: nn.Linear or nn.Conv2d with groups=1"
                )
            if name in bypassed:
                raise ValueError(
                    f"lora: target {target!r} matches {name!r}, the output projection of an "
                    f"nn.{bypassed[name]}: its forward reads the weight directly "
                    "(F.multi_head_attention_forward) and never calls the layer, so an adapter "
                    "there would receive no gradient and never train (under DDP the run fails "
                    "at its second step); adapt the other layers, e.g. the MLP's Linear layers, "
                    "or leave target_modules unset"
                )
            if name not in out:
                out.append(name)
    return out


def add_lora(
    model: nn.Module,
    targets: Sequence[str],
    rank: int,
    alpha: float,
    dropout: float = 0.0,
    seed: int = 0,
):
    """Inject LoRA adapters into the modules named ``targets`` (full names), in place.

    A (rank × in) starts Kaiming-uniform from ``seed`` (the global RNG is left as it was),
    B (out × rank) at zero, so the adapted model starts equal to ``model``; the update is
    (alpha / rank)·B·A. Every non-adapter parameter is frozen (peft's ``bias="none"``).

    Returns:
        The ``peft`` ``LoraModel`` wrapper (for :func:`merge_lora`); ``model`` itself now holds
        the adapters and is what trains.
    """
    try:
        from peft import LoraConfig
        from peft.tuners.lora import LoraModel
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "the 'lora' method needs peft: pip install 'calib[lora]' (or pip install peft)"
        ) from err
    pattern = "|".join(re.escape(t) for t in targets)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=f"^(?:{pattern})$",
        bias="none",
    )
    # the init may draw on the CPU or on the model's GPUs: fork (and seed) them all
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        return LoraModel(model, config, "default")


def merge_lora(lora_model) -> nn.Module:
    """Fold the adapters into the base weights; returns the plain model (peft's
    ``merge_and_unload``: every LoRA layer replaced by its base layer, W += (α/r)·B·A)."""
    return lora_model.merge_and_unload()


@register_method(
    "lora",
    trains="low-rank adapters (+ the head if train_head)",
    requires={"peft": "calib[lora]"},
    params={
        "rank": 8,
        "alpha": 8.0,
        "dropout": 0.0,
        "target_modules": None,
        "train_head": True,
        "update_norm_stats": False,
    },
    checks={
        "rank": integer(1),
        "alpha": real(0.0, lo_open=True),
        "dropout": real(0.0, 1.0, hi_open=True),
        "target_modules": names(none_means="every Linear and ungrouped Conv2d outside the head"),
        "train_head": boolean(),
        "update_norm_stats": boolean(),
    },
    reference="Hu et al., LoRA: Low-Rank Adaptation of Large Language Models, ICLR 2022 "
    "(via the peft library)",
)
def run_lora(ctx: FinetuneContext) -> nn.Module:
    """Train rank-``rank`` adapters on ``target_modules`` (and the head), then merge them.

    LoRA as in Hu et al. (ICLR 2022): each target weight W gets W + (α/r)·B·A with A random,
    B = 0 at the start; only A, B (and, with ``train_head``, the whole head) train. The
    defaults follow the paper's "α = the first r tried" (r = α = 8, scale 1) and peft's
    (no dropout). Hu et al. adapt attention projections of Transformers; for a CNN the targets
    default to every Linear and ungrouped Conv2d layer of the backbone (peft's Conv2d LoRA:
    A a conv with the layer's kernel, B a 1×1 conv). BatchNorm affine parameters stay frozen
    and, unless ``update_norm_stats``, so do their running statistics (the norm layers are
    kept in eval mode while training): the whole change to the backbone is then the low-rank
    update. ``train_head=False`` with the head among ``target_modules`` gives a low-rank head
    update; the head may not be both fully trained and adapted. In CLIP's attention blocks
    (``nn.MultiheadAttention``) neither projection takes an adapter: ``in_proj`` is a bare
    weight, and ``out_proj`` is read directly by the attention (never called), so the
    defaults adapt the MLPs and the patch embedding there.
    """
    p, model = ctx.params, ctx.model
    targets = resolve_lora_targets(model, p["target_modules"])
    head_name, _ = find_head(model)
    in_head = [t for t in targets if t == head_name or t.startswith(head_name + ".")]
    if in_head and p["train_head"]:
        raise ValueError(
            f"lora: target_modules includes the head ({in_head}) and train_head=True; train the "
            "head fully (train_head=True, head not a target) or by an adapter (train_head=False)"
        )
    seed = derive_seed(ctx.config.seed, STREAM_LORA_INIT, 0)
    lora_model = add_lora(model, targets, p["rank"], p["alpha"], p["dropout"], seed=seed)
    if p["train_head"]:
        set_trainable(find_head(model)[1], True)
    frozen_stats = [] if p["update_norm_stats"] else batchnorm_modules(model)
    with keep_in_eval(model, frozen_stats):
        ctx.train(model, ctx.dataset, ctx.config, tag="finetune", on_epoch_end=ctx.on_epoch_end)
    return merge_lora(lora_model)
