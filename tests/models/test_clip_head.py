"""CLIP zero-shot heads, on a tiny randomly initialised open_clip model (offline, fast)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
import torch.nn.functional as F

from calib.models import (
    CLIP_CONFIGS,
    DEFAULT_TEMPLATES,
    clear_zero_shot_cache,
    create_clip_zero_shot,
    create_model,
    load_clip,
    zero_shot_weights,
)

# open_clip is imported by the tests that use it, not at collection
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("open_clip") is None, reason="the optional clip extra (open_clip)"
)

NAMES = ["airplane", "cat", "ship", "frog"]
TEMPLATES = ["a photo of a {}.", "a blurry photo of the {}.", lambda c: f"an image of {c}"]


def _manual_logits(clip, tokenizer, images, class_names, templates):
    """CLIP zero-shot scores computed directly from the two towers."""
    with torch.no_grad():
        image = F.normalize(clip.encode_image(images), dim=-1)
        rows = []
        for name in class_names:
            prompts = [t.format(name) if isinstance(t, str) else t(name) for t in templates]
            text = F.normalize(clip.encode_text(tokenizer(prompts)), dim=-1)
            rows.append(F.normalize(text.mean(dim=0), dim=0))
        return clip.logit_scale.exp() * image @ torch.stack(rows).T


@pytest.mark.parametrize("templates", [DEFAULT_TEMPLATES, TEMPLATES])
def test_zero_shot_logits_are_scaled_cosines_to_the_prompt_embeddings(templates):
    torch.manual_seed(0)
    model = create_clip_zero_shot("tiny-clip", None, NAMES, templates).eval()
    torch.manual_seed(0)  # same seed: the same random CLIP weights
    clip, tokenizer, _ = load_clip("tiny-clip")

    images = torch.randn(5, 3, 32, 32)
    expected = _manual_logits(clip, tokenizer, images, NAMES, templates)
    with torch.no_grad():
        features, logits = model.forward_features_logits(images)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(features.norm(dim=1), torch.ones(5))
    assert model.head.bias is None
    torch.testing.assert_close(
        model.head.weight.norm(dim=1), clip.logit_scale.exp().detach().expand(len(NAMES))
    )
    assert model.num_classes == len(NAMES) and model.num_features == 32


def test_registry_key_builds_the_same_head():
    torch.manual_seed(1)
    direct = create_clip_zero_shot("tiny-clip", None, NAMES, TEMPLATES)
    torch.manual_seed(1)
    via_registry = create_model(
        "clip_zero_shot", len(NAMES), class_names=NAMES, templates=TEMPLATES, clip_model="tiny-clip"
    )
    torch.testing.assert_close(via_registry.head.weight, direct.head.weight)
    assert via_registry.data_config == direct.data_config
    assert via_registry.data_config["input_size"] == (3, 32, 32)


def test_batched_prompt_encoding_equals_one_batch():
    torch.manual_seed(0)
    clip, tokenizer, _ = load_clip("tiny-clip")
    whole = zero_shot_weights(clip, tokenizer, NAMES, TEMPLATES)
    pieces = zero_shot_weights(clip, tokenizer, NAMES, TEMPLATES, batch_size=5)
    assert whole.shape == (len(NAMES), 32)
    torch.testing.assert_close(pieces, whole)


def test_local_checkpoint_and_config_dict(tmp_path):
    torch.manual_seed(0)
    clip, _, _ = load_clip("tiny-clip")
    path = tmp_path / "tiny.pt"
    torch.save(clip.state_dict(), path)

    torch.manual_seed(123)  # different init: the checkpoint must overwrite it
    reloaded, _, _ = load_clip(CLIP_CONFIGS["tiny-clip"], pretrained=path)
    for (key, a), b in zip(clip.state_dict().items(), reloaded.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=key)

    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_clip("tiny-clip", pretrained=tmp_path / "nope.pt")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"class_names": []}, ValueError, "class_names is empty"),
        ({"class_names": "cat"}, TypeError, "sequence of strings"),
        ({"templates": []}, ValueError, "templates is empty"),
        ({"templates": ["a photo"]}, ValueError, "exactly one"),
        ({"templates": ["{} and {}"]}, ValueError, "exactly one"),
        ({"templates": [3]}, TypeError, "format strings or callables"),
    ],
)
def test_bad_names_and_templates(kwargs, error, message):
    args = {"model_name": "tiny-clip", "class_names": NAMES} | kwargs
    with pytest.raises(error, match=message):
        create_clip_zero_shot(**args)


def test_registry_checks_num_classes_and_channels():
    with pytest.raises(ValueError, match="num_classes=3 but 4 class_names"):
        create_model("clip_zero_shot", 3, class_names=NAMES, clip_model="tiny-clip")
    with pytest.raises(ValueError, match="3 channels"):
        create_model("clip_zero_shot", 4, class_names=NAMES, clip_model="tiny-clip", in_chans=1)


def test_missing_open_clip_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # makes `import open_clip` fail
    with pytest.raises(ImportError, match=r"pip install calib\[clip\]"):
        load_clip("tiny-clip")


@pytest.fixture
def count_text_encodings(monkeypatch):
    """Counts prompts through CLIP's text tower; starts from an empty embedding cache."""
    import open_clip

    clear_zero_shot_cache()
    calls = []
    original = open_clip.CLIP.encode_text

    def counting(self, text, *args, **kwargs):
        calls.append(len(text))
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(open_clip.CLIP, "encode_text", counting)
    yield calls
    clear_zero_shot_cache()


def _build(seed=0, names=NAMES, templates=TEMPLATES, **kwargs):
    torch.manual_seed(seed)  # the seed fixes tiny-clip's random weights
    return create_clip_zero_shot("tiny-clip", None, names, templates, **kwargs)


def test_a_second_build_reuses_the_text_embeddings(count_text_encodings):
    first = _build()
    assert sum(count_text_encodings) == len(NAMES) * len(TEMPLATES)
    count_text_encodings.clear()
    torch.manual_seed(0)
    second = create_model(
        "clip_zero_shot", len(NAMES), class_names=NAMES, templates=TEMPLATES, clip_model="tiny-clip"
    )
    assert count_text_encodings == []  # the text encoder did not run
    assert torch.equal(second.head.weight, first.head.weight)
    with torch.no_grad():  # the cached copy is not the head's storage: training cannot reach it
        first.head.weight.zero_()
    assert torch.equal(_build().head.weight, second.head.weight)
    assert count_text_encodings == []


@pytest.mark.parametrize(
    "change",
    [
        {"names": ["airplane", "cat", "ship", "toad"]},
        {"names": list(reversed(NAMES))},
        {"templates": ["a photo of a {}.", "a blurry photo of the {}."]},
        {"templates": ["a photo of a {}.", "a blurry photo of the {}.", lambda c: f"a {c}"]},
        {"seed": 1},  # other weights
    ],
)
def test_other_names_templates_or_weights_encode_afresh(count_text_encodings, change):
    base = _build()
    count_text_encodings.clear()
    other = _build(**change)
    assert sum(count_text_encodings) > 0  # encoded again, not served from the cache
    assert not torch.equal(other.head.weight, base.head.weight)


def test_changed_text_weights_under_the_same_name_encode_afresh(count_text_encodings, tmp_path):
    torch.manual_seed(0)
    clip, _, _ = load_clip("tiny-clip")
    path = tmp_path / "tiny.pt"
    torch.save(clip.state_dict(), path)
    first = create_clip_zero_shot(CLIP_CONFIGS["tiny-clip"], path, NAMES, TEMPLATES)
    with torch.no_grad():
        clip.ln_final.weight.mul_(2.0)  # a text-tower weight changes, the file name does not
        clip.ln_final.bias.add_(0.1)
    torch.save(clip.state_dict(), path)
    count_text_encodings.clear()
    second = create_clip_zero_shot(CLIP_CONFIGS["tiny-clip"], path, NAMES, TEMPLATES)
    assert sum(count_text_encodings) > 0
    assert not torch.equal(first.head.weight, second.head.weight)
