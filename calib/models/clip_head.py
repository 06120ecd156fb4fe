"""CLIP zero-shot classifiers: image encoder + a linear head built from class-name prompts.

For class c with prompts t_1..t_T (``template.format(name_c)``), the head row is

    w_c = s · normalise( mean_t normalise(text_encoder(t)) )

with s = exp(logit_scale) of the CLIP model, and the backbone returns L2-normalised image
features f(x). So ``logits = s · cos(f(x), w_c)``, exactly CLIP's zero-shot scores, and the
model is an ordinary :class:`~calib.models.Classifier` that can be fine-tuned and calibrated
like any other (the text tower is not kept).

open_clip is an optional dependency (``pip install calib[clip]``); its BPE vocabulary ships
with the package, so building a head is offline once the CLIP weights are on disk.
``pretrained="openai"`` (or another open_clip tag) downloads weights into open_clip's cache
on first use; a file path loads a local checkpoint; ``None`` leaves a random initialisation.
A tag trained with QuickGELU (every ``"openai"`` tag) builds the model with QuickGELU whatever
the model name's own activation (:func:`tag_needs_quick_gelu`): open_clip would build
``"ViT-B-32"`` with GELU and only warn.

Building a head encodes every prompt with the text tower (25 s for a VTAB task's prompts with
ViT-B/32 on 2 CPU cores). :func:`create_clip_zero_shot` therefore keeps the class embeddings in
a small per-process cache keyed by the CLIP model (name or config), its weights tag, a SHA-256
of its non-visual weights (the text tower, as loaded), the exact prompts (class names ×
templates) and the device: a later build of the same head (the pipeline builds the pre-trained
model several times) reuses them, any other weights, names or templates encode afresh.
:func:`clear_zero_shot_cache` empties it.

Besides open_clip's model names, :data:`CLIP_CONFIGS` holds architectures of our own:
``"tiny-clip"`` (a few layers of width 32–64 on 32×32 images) builds in well under a second
and serves tests and smoke runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from calib.models.classifier import Classifier, make_data_config

__all__ = [
    "DEFAULT_TEMPLATES",
    "CLIP_CONFIGS",
    "ClipImageEncoder",
    "load_clip",
    "tag_needs_quick_gelu",
    "zero_shot_weights",
    "clear_zero_shot_cache",
    "create_clip_zero_shot",
]

#: Prompt templates used when none are given: the single prompt of the CLIP paper.
#: Pass e.g. ``open_clip.OPENAI_IMAGENET_TEMPLATES`` for the 80-prompt ImageNet ensemble.
DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)

#: open_clip model configs (``embed_dim``, ``vision_cfg``, ``text_cfg``) known by name here.
CLIP_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny-clip": {
        "embed_dim": 32,
        "vision_cfg": {
            "image_size": 32,
            "layers": 2,
            "width": 64,
            "head_width": 32,
            "patch_size": 8,
        },
        "text_cfg": {
            "context_length": 32,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 2,
        },
    },
}

Template = str | Callable[[str], str]


def _import_open_clip():
    try:
        import open_clip
    except ImportError as err:
        raise ImportError(
            "CLIP models need open_clip: pip install calib[clip]  (or: pip install open_clip_torch)"
        ) from err
    return open_clip


class ClipImageEncoder(nn.Module):
    """CLIP's image tower returning L2-normalised embeddings ``(N, embed_dim)``."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual(x), dim=-1)


def load_clip(
    model_name: str | Mapping[str, Any] = "ViT-B-32",
    pretrained: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> tuple[nn.Module, Callable[[Sequence[str]], torch.Tensor], dict[str, Any]]:
    """Build an open_clip CLIP model, its tokenizer and its preprocessing.

    Args:
        model_name: an open_clip model name (``"ViT-B-32"``), a key of :data:`CLIP_CONFIGS`,
            or an open_clip model config dict (``embed_dim``, ``vision_cfg``, ``text_cfg``).
        pretrained: an open_clip weights tag (``"openai"``, may download), a local checkpoint
            path, or ``None`` for random initialisation.
        device: where the model lives (default CPU).

    Returns:
        ``(model, tokenizer, data_config)``; ``model`` is in eval mode, ``tokenizer`` maps a
        list of strings to token ids ``(len, context_length)``, ``data_config`` is as in
        :func:`~calib.models.make_data_config`.
    """
    open_clip = _import_open_clip()
    device = torch.device("cpu" if device is None else device)
    if isinstance(model_name, str) and model_name not in CLIP_CONFIGS:
        pretrained = None if pretrained is None else os.fspath(pretrained)
        model = open_clip.create_model(
            model_name,
            pretrained=pretrained,
            device=device,
            force_quick_gelu=tag_needs_quick_gelu(model_name, pretrained),
        )
        tokenizer = open_clip.get_tokenizer(model_name)
    else:
        cfg = copy.deepcopy(CLIP_CONFIGS[model_name] if isinstance(model_name, str) else model_name)
        missing = {"embed_dim", "vision_cfg", "text_cfg"} - set(cfg)
        if missing:
            raise ValueError(f"open_clip model config lacks {sorted(missing)}")
        model = open_clip.CLIP(**cfg)
        if pretrained is not None:
            if not os.path.isfile(pretrained):
                raise FileNotFoundError(
                    f"CLIP weights file not found: {pretrained} (configs of CLIP_CONFIGS have no "
                    "downloadable tags)"
                )
            open_clip.load_checkpoint(model, os.fspath(pretrained))
        model.to(device)
        tokenizer = open_clip.SimpleTokenizer(context_length=cfg["text_cfg"]["context_length"])
    model.eval()

    pp = open_clip.get_model_preprocess_cfg(model)
    size = pp.get("size", model.visual.image_size)
    size = (size, size) if isinstance(size, int) else tuple(size)
    data_config = make_data_config(
        (3, *size),
        pp.get("mean", open_clip.OPENAI_DATASET_MEAN),
        pp.get("std", open_clip.OPENAI_DATASET_STD),
        interpolation=pp.get("interpolation", "bicubic"),
        crop_pct=1.0,  # CLIP resizes the short side to the input size, then centre-crops
    )
    return model, tokenizer, data_config


def tag_needs_quick_gelu(model_name: str, pretrained: str | os.PathLike | None) -> bool:
    """Whether open_clip's weights tag ``pretrained`` of ``model_name`` was trained with QuickGELU.

    open_clip builds a model name's own activation (``"ViT-B-32"``: GELU) whatever the tag, and
    only warns ("QuickGELU mismatch") when the tag's weights were trained with the other one
    (OpenAI's: QuickGELU). The decision is open_clip's own: the tag's ``quick_gelu`` against the
    model config's. A checkpoint path or an unknown tag says nothing (``False``): name a
    ``-quickgelu`` model (``"ViT-B-32-quickgelu"``) for a local file of OpenAI's weights.
    """
    from open_clip.factory import get_model_config, parse_model_name
    from open_clip.pretrained import get_pretrained_cfg

    schema, name = parse_model_name(model_name)
    if pretrained is None or schema is not None:  # 'hf-hub:'/'local-dir:' ignore ``pretrained``
        return False
    name = name.replace("/", "-")  # as open_clip.create_model looks names up
    tag_cfg = get_pretrained_cfg(name, os.fspath(pretrained))
    model_cfg = get_model_config(name) or {}
    return bool(tag_cfg.get("quick_gelu", False)) and not model_cfg.get("quick_gelu", False)


@torch.no_grad()
def zero_shot_weights(
    model: nn.Module,
    tokenizer: Callable[[Sequence[str]], torch.Tensor],
    class_names: Sequence[str],
    templates: Sequence[Template] = DEFAULT_TEMPLATES,
    *,
    batch_size: int = 256,
    progress: bool = False,
) -> torch.Tensor:
    """Unit-norm class embeddings ``(C, embed_dim)`` from prompts, on the model's device.

    Each prompt embedding is L2-normalised, averaged over the templates of a class, and the
    mean normalised again (the CLIP paper's prompt ensembling). ``batch_size`` counts prompts.
    """
    class_names = _check_names(class_names)
    templates = _check_templates(templates)
    device = next(model.parameters()).device
    prompts = _prompts(class_names, templates)
    embeddings = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="text prompts", disable=not progress or len(starts) < 2):
        tokens = tokenizer(prompts[start : start + batch_size]).to(device)
        embeddings.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
    per_prompt = torch.cat(embeddings).reshape(len(class_names), len(templates), -1)
    return F.normalize(per_prompt.mean(dim=1), dim=-1)


def create_clip_zero_shot(
    model_name: str | Mapping[str, Any] = "ViT-B-32",
    pretrained: str | os.PathLike | None = None,
    class_names: Sequence[str] = (),
    templates: Sequence[Template] = DEFAULT_TEMPLATES,
    device: str | torch.device | None = None,
    *,
    progress: bool = False,
) -> Classifier:
    """A CLIP zero-shot :class:`~calib.models.Classifier` over ``class_names``.

    ``model.backbone`` returns unit-norm image embeddings ``(N, embed_dim)``; ``model.head`` is
    ``nn.Linear(embed_dim, C, bias=False)`` with rows ``exp(logit_scale) · w_c``, so
    ``model(x)[:, c] = exp(logit_scale) · cos(image, class c)``.

    Args:
        model_name, pretrained, device: as in :func:`load_clip`.
        class_names: one name per class, in label order (the head's row order).
        templates: prompt templates: strings with one ``{}`` for the class name, or callables.
        progress: show a progress bar while encoding the prompts.
    """
    class_names, templates = _check_names(class_names), _check_templates(templates)
    clip, tokenizer, data_config = load_clip(model_name, pretrained, device)
    class_embeddings = _cached_zero_shot_weights(
        clip, tokenizer, class_names, templates, (model_name, pretrained), progress=progress
    )
    scale = clip.logit_scale.detach().float().exp()
    head = nn.Linear(class_embeddings.shape[1], class_embeddings.shape[0], bias=False)
    head.to(class_embeddings.device)
    with torch.no_grad():
        head.weight.copy_(scale * class_embeddings)
    name = model_name if isinstance(model_name, str) else "clip"
    return Classifier(
        ClipImageEncoder(clip.visual), head, data_config, name=f"clip_zero_shot:{name}"
    )


#: Class embeddings of recent builds: key (see _cached_zero_shot_weights) -> (C, D) tensor.
_ZERO_SHOT_CACHE: OrderedDict[tuple, torch.Tensor] = OrderedDict()
_ZERO_SHOT_CACHE_SIZE = 16  # heads, each C × D floats (a few MB at most)


def clear_zero_shot_cache() -> None:
    """Forget the class embeddings kept by :func:`create_clip_zero_shot`."""
    _ZERO_SHOT_CACHE.clear()


def _cached_zero_shot_weights(
    clip: nn.Module,
    tokenizer: Callable[[Sequence[str]], torch.Tensor],
    class_names: list[str],
    templates: list[Template],
    identity: tuple[str | Mapping[str, Any], str | os.PathLike | None],
    *,
    progress: bool,
) -> torch.Tensor:
    """:func:`zero_shot_weights`, computed once per (model, weights, prompts, device)."""
    model_name, pretrained = identity
    name = model_name if isinstance(model_name, str) else json.dumps(model_name, sort_keys=True)
    device = next(clip.parameters()).device
    key = (
        name,
        None if pretrained is None else os.fspath(pretrained),
        _text_tower_digest(clip),
        len(class_names),
        tuple(_prompts(class_names, templates)),
        str(device),
    )
    if key not in _ZERO_SHOT_CACHE:
        embeddings = zero_shot_weights(clip, tokenizer, class_names, templates, progress=progress)
        _ZERO_SHOT_CACHE[key] = embeddings.detach().clone()
        while len(_ZERO_SHOT_CACHE) > _ZERO_SHOT_CACHE_SIZE:
            _ZERO_SHOT_CACHE.popitem(last=False)
    _ZERO_SHOT_CACHE.move_to_end(key)
    return _ZERO_SHOT_CACHE[key].clone()


def _text_tower_digest(clip: nn.Module) -> str:
    """SHA-256 of every parameter and buffer outside ``clip.visual`` (names, dtypes, shapes, bytes).

    That covers the text tower of open_clip's CLIP (token and positional embeddings,
    transformer, final norm, projection, attention mask) and of its custom-text variants.
    """
    digest = hashlib.sha256()
    for key, tensor in clip.state_dict().items():
        if key.startswith("visual."):
            continue
        flat = tensor.detach().reshape(-1).contiguous().cpu()
        digest.update(f"{key}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def _prompts(class_names: list[str], templates: list[Template]) -> list[str]:
    """Every prompt, class-major: ``templates[t]`` of ``class_names[c]`` at ``c * T + t``."""
    return [t.format(c) if isinstance(t, str) else t(c) for c in class_names for t in templates]


def _check_names(class_names: Sequence[str]) -> list[str]:
    if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names):
        raise TypeError("class_names must be a sequence of strings, one per class")
    if len(class_names) == 0:
        raise ValueError("class_names is empty: a zero-shot head needs one name per class")
    return list(class_names)


def _check_templates(templates: Sequence[Template]) -> list[Template]:
    if isinstance(templates, str):
        templates = [templates]
    if len(templates) == 0:
        raise ValueError(
            "templates is empty: give at least one prompt template, e.g. 'a photo of a {}.'"
        )
    for t in templates:
        if isinstance(t, str):
            if not _formats_one_name(t):
                raise ValueError(f"template {t!r} must hold exactly one '{{}}' for the class name")
        elif not callable(t):
            raise TypeError(f"templates are format strings or callables, got {type(t).__name__}")
    return list(templates)


def _formats_one_name(template: str) -> bool:
    try:
        template.format("")
    except (IndexError, KeyError, ValueError):
        return False
    return template.count("{}") == 1
