"""The model every part of calib works with: a feature backbone and one linear head over all classes.

The head keeps a row for every class Y of the pre-trained model, the classes absent from
fine-tuning included: those rows are what γ calibration brings back, so they are never cut
away. Features and logits come out of one pass (:meth:`Classifier.forward_features_logits`),
which is what logit/feature extraction uses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["Classifier", "head_in_float32", "make_data_config"]

_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def head_in_float32(head: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """``head(features)``, computed in float32 outside autocast when autocast is on.

    The logits are what every metric of calib reads: a mixed-precision head would round them to
    bf16/fp16 (on 1,000 classes that merges close logits and moves AUSUC by ~1e-4), for under
    1 % of a backbone's FLOPs. So under autocast the features are cast to float32 and the head
    runs with autocast off; the result is float32 ``(N, C)``. Without autocast this is
    ``head(features)`` unchanged (a float64 model stays float64). A head whose weights are not
    float32 (a model cast to bf16 as a whole) runs as it is.

    Args:
        head: the classification head (``nn.Linear``, a cosine head, ...), weights float32.
        features: ``(N, D)`` features from the backbone (bf16/fp16 under autocast).
    """
    device_type = features.device.type
    if not torch.is_autocast_enabled(device_type):
        return head(features)
    weight = getattr(head, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dtype != torch.float32:
        return head(features)
    with torch.autocast(device_type, enabled=False):
        return head(features.float())


def make_data_config(
    input_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    interpolation: str = "bilinear",
    crop_pct: float = 1.0,
    crop_mode: str = "center",
) -> dict[str, Any]:
    """The preprocessing a model expects, as a timm-style ``data_config`` dict.

    Args:
        input_size: ``(C, H, W)`` of the input images, in pixels.
        mean, std: per-channel normalisation of images scaled to [0, 1]; one value per channel.
        interpolation: resize filter: ``"bilinear"``, ``"bicubic"``, ``"nearest"`` (or another
            PIL filter: ``"lanczos"``, ``"box"``, ``"hamming"``).
        crop_pct: evaluation centre-crop fraction (resize to ``H / crop_pct``, then crop ``H``).
        crop_mode: timm's crop mode (``"center"``, ``"squash"``, ``"border"``).

    Returns:
        ``{"input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode"}`` with tuples.
    """
    input_size = tuple(int(s) for s in input_size)
    if len(input_size) != 3 or min(input_size) < 1:
        raise ValueError(f"input_size must be (C, H, W) with positive entries, got {input_size}")
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) != input_size[0] or len(std) != input_size[0]:
        raise ValueError(
            f"mean and std need one value per channel ({input_size[0]}), "
            f"got {len(mean)} and {len(std)}"
        )
    if min(std) <= 0:
        raise ValueError(f"std must be positive, got {std}")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}")
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    return {
        "input_size": input_size,
        "mean": mean,
        "std": std,
        "interpolation": interpolation,
        "crop_pct": float(crop_pct),
        "crop_mode": crop_mode,
    }


class Classifier(nn.Module):
    """``head(backbone(x))``: pooled features, then one linear map to the logits of all classes.

    Args:
        backbone: maps images ``(N, C, H, W)`` to pooled features ``(N, D)``.
        head: ``nn.Linear(D, num_classes)``, the full head over every class of the model.
        data_config: the preprocessing the backbone expects (see :func:`make_data_config`).
        name: the model key it was created from (informational).

    The state dict holds ``backbone.*`` and ``head.*``; :func:`calib.models.create_model`
    with ``weights=`` loads it back.

    Attributes:
        head_path: for a module adapted by :func:`calib.models.adapt_module`, the head's name
            inside it (``"fc"``): where a checkpoint of that module keeps the head; else None.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Linear,
        data_config: Mapping[str, Any],
        *,
        name: str = "",
    ) -> None:
        super().__init__()
        if not isinstance(head, nn.Linear):
            raise TypeError(f"head must be an nn.Linear, got {type(head).__name__}")
        missing = {"input_size", "mean", "std", "interpolation"} - set(data_config)
        if missing:
            raise ValueError(f"data_config lacks {sorted(missing)}")
        self.backbone = backbone
        self.head = head
        self.data_config = dict(data_config)
        self.name = name
        self.head_path: str | None = None

    @property
    def num_classes(self) -> int:
        """Rows of the head: every class of the model, absent ones included."""
        return self.head.out_features

    @property
    def num_features(self) -> int:
        """Dimension D of the pooled features."""
        return self.head.in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, D)`` of images ``x`` ``(N, C, H, W)``."""
        return self.backbone(x)

    def forward_features_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(N, D)`` and logits ``(N, num_classes)`` from one backbone pass."""
        features = self.backbone(x)
        return features, self.logits(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``; float32 under autocast (see :meth:`logits`)."""
        return self.logits(self.backbone(x))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The head on features ``(N, D)``: logits ``(N, num_classes)``.

        Under autocast the head computes in float32 with autocast off
        (:func:`head_in_float32`), in training and extraction alike: the backbone's matmuls
        run in bf16/fp16, the logits every metric reads do not. A TorchScript-compiled model
        runs the head as it is (scripting cannot switch autocast off).
        """
        if torch.jit.is_scripting():
            return self.head(features)
        return self._float32_logits(features)

    @torch.jit.unused
    def _float32_logits(self, features: torch.Tensor) -> torch.Tensor:
        return head_in_float32(self.head, features)

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return self.backbone.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        return self.head.parameters()

    def param_groups(
        self, lr_backbone: float, lr_head: float, weight_decay: float = 0.0
    ) -> list[dict[str, Any]]:
        """Optimizer parameter groups giving the backbone and the head their own learning rate.

        Parameters with ``requires_grad=False`` are left out; a part with none left (a frozen
        backbone) gets no group. Each group carries a ``"name"`` (``"backbone"`` or ``"head"``).
        """
        groups = []
        for name, params, lr in (
            ("backbone", self.backbone_parameters(), lr_backbone),
            ("head", self.head_parameters(), lr_head),
        ):
            trainable = [p for p in params if p.requires_grad]
            if trainable:
                groups.append(
                    {"name": name, "params": trainable, "lr": lr, "weight_decay": weight_decay}
                )
        return groups

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, num_features={self.num_features}, num_classes={self.num_classes}"
        )
