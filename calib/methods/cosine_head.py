"""A cosine classifier head: logits = s · cos(f, w_c), for the paper's FC-vs-cosine ablation.

The cosine head normalises the features f and every class weight w_c, so a class cannot win
by a larger weight norm or bias, the mechanism that inflates the seen classes' logits under
plain fine-tuning. The form follows Gidaris & Komodakis, "Dynamic Few-Shot Visual Learning
without Forgetting" (CVPR 2018): no bias, one scale s shared by all classes, learnable (their
choice) or fixed.

:func:`to_cosine_head` replaces a model's linear head by a :class:`CosineHead` whose class
weights are the linear head's rows (its bias is dropped). That changes the model's logits, so
a cosine-head run compares against the *converted* pre-trained model: its "pre-trained" row
uses :meth:`calib.methods.MethodSpec.prepare`, the same conversion.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from calib.methods.parts import find_head

__all__ = ["CosineHead", "to_cosine_head"]


class CosineHead(nn.Module):
    """``scale · normalize(f) @ normalize(W).T``: features ``(N, D)`` → logits ``(N, C)``.

    Args:
        in_features: feature dimension D.
        out_features: number of classes C (every class of the model).
        scale: the initial (learnable) or fixed scale s > 0; logits lie in [-s, s].
        learnable_scale: train s (a 0-d parameter, which the optimizer does not decay) or keep
            it fixed (a buffer). Either way it is in the state dict as ``scale``.

    A zero feature vector or class weight gives logit 0 (``F.normalize``'s eps).
    """

    def __init__(
        self, in_features: int, out_features: int, scale: float = 10.0, learnable_scale: bool = True
    ) -> None:
        super().__init__()
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's initialisation
        value = torch.tensor(float(scale))
        if learnable_scale:
            self.scale = nn.Parameter(value)
        else:
            self.register_buffer("scale", value)
        self.learnable_scale = bool(learnable_scale)

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, scale: float = 10.0, learnable_scale: bool = True
    ) -> CosineHead:
        """A cosine head whose class weights are copies of ``linear.weight`` (bias dropped)."""
        head = cls(linear.in_features, linear.out_features, scale, learnable_scale)
        with torch.no_grad():
            head.weight.copy_(linear.weight)
        return head.to(device=linear.weight.device, dtype=linear.weight.dtype)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        cos = F.linear(F.normalize(features, dim=-1), F.normalize(self.weight, dim=-1))
        return self.scale * cos

    def extra_repr(self) -> str:
        kind = "learnable" if self.learnable_scale else "fixed"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"scale={float(self.scale):g} ({kind})"
        )


def to_cosine_head(
    model: nn.Module, scale: float = 10.0, learnable_scale: bool = True
) -> nn.Module:
    """Replace the linear head of ``model`` by :meth:`CosineHead.from_linear`, in place.

    A model whose head is already a :class:`CosineHead` is returned unchanged (so converting
    twice, e.g. by the harness and by the method, is harmless).

    Returns:
        ``model``.

    Raises:
        TypeError: the head (see :func:`calib.methods.parts.find_head`) is not an ``nn.Linear``.
    """
    name, head = find_head(model)
    if isinstance(head, CosineHead):
        return model
    if not isinstance(head, nn.Linear):
        raise TypeError(
            f"a cosine head replaces a linear head; {type(model).__name__}.{name} is a "
            f"{type(head).__name__}"
        )
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, CosineHead.from_linear(head, scale, learnable_scale))
    return model
