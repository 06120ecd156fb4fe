"""Models: a backbone and one linear head over all classes, built by name.

>>> from calib.models import create_model
>>> model = create_model("digits_cnn", num_classes=10)
>>> features, logits = model.forward_features_logits(images)   # (N, 128), (N, 10)

See :mod:`calib.models.factory` for the registered keys and :mod:`calib.models.weights` for
the weight files ``create_model(..., weights=PATH)`` understands.
"""

from calib.models.adapt import adapt_module
from calib.models.classifier import Classifier, head_in_float32, make_data_config
from calib.models.clip_head import (
    CLIP_CONFIGS,
    DEFAULT_TEMPLATES,
    ClipImageEncoder,
    clear_zero_shot_cache,
    create_clip_zero_shot,
    load_clip,
    zero_shot_weights,
)
from calib.models.digits_cnn import DigitsCNN
from calib.models.efficientnet_lite import (
    efficientnet_lite0_state_dict,
    efficientnet_lite0_weights_path,
)
from calib.models.factory import MODELS, create_model, list_models
from calib.models.weights import (
    IncompatibleWeightsError,
    load_backbone_state_dict,
    load_weights,
    read_state_dict,
    save_weights,
)

__all__ = [
    "CLIP_CONFIGS",
    "Classifier",
    "adapt_module",
    "ClipImageEncoder",
    "DEFAULT_TEMPLATES",
    "DigitsCNN",
    "IncompatibleWeightsError",
    "MODELS",
    "clear_zero_shot_cache",
    "create_clip_zero_shot",
    "create_model",
    "efficientnet_lite0_state_dict",
    "efficientnet_lite0_weights_path",
    "list_models",
    "load_backbone_state_dict",
    "load_clip",
    "load_weights",
    "head_in_float32",
    "make_data_config",
    "read_state_dict",
    "save_weights",
    "zero_shot_weights",
]
