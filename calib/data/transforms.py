"""Image transforms for the image-list benchmarks (PIL image in, normalised CHW float tensor out)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "build_transform"]

#: The ImageNet channel statistics (RGB, for inputs scaled to [0, 1]) of torchvision/timm ResNets.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_transform(
    train: bool,
    size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize: int | None = None,
) -> Callable:
    """The training or the evaluation transform.

    Training: ``RandomResizedCrop(size)`` (default scale (0.08, 1)) and a random horizontal
    flip. Evaluation: resize the short side to ``resize`` (default ``int(size / 0.875)``,
    256 for 224), then ``CenterCrop(size)``. Both end with ``ToTensor`` (to [0, 1]) and
    ``Normalize(mean, std)``; the output has shape ``(3, size, size)``.
    """
    if size < 1:
        raise ValueError(f"size must be ≥ 1, got {size}")
    if len(mean) != len(std) or any(s <= 0 for s in std):
        raise ValueError(f"mean and std must have the same length and std > 0, got {mean}, {std}")
    # imported here: torchvision pulls in torchvision.models and torch._dynamo (~3 s)
    from torchvision import transforms as T

    finish = [T.ToTensor(), T.Normalize(mean=list(mean), std=list(std))]
    if train:
        return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), *finish])
    resize = int(size / 0.875) if resize is None else resize
    if resize < size:
        raise ValueError(f"resize ({resize}) must be ≥ the crop size ({size})")
    return T.Compose([T.Resize(resize), T.CenterCrop(size), *finish])
