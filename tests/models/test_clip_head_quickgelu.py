"""CLIP with OpenAI's weights is built with QuickGELU, offline.

open_clip decides its "QuickGELU mismatch" warning in ``open_clip.factory.create_model`` from
the weights tag's ``quick_gelu`` against the final model config's, after downloading the tag's
file and before loading it. The tests below run that very code with the download and the
loading replaced (no network, random weights), so the warning and the built activation are
open_clip's own decision.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest
import yaml

from calib.models import load_clip
from calib.models.clip_head import tag_needs_quick_gelu

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("open_clip") is None, reason="the optional clip extra (open_clip)"
)

CONF = Path(__file__).resolve().parents[2] / "conf" / "model" / "clip_vit_b32.yaml"


@pytest.fixture
def offline_weights(monkeypatch, tmp_path):
    """open_clip's tag download and checkpoint loading stubbed out; yields the loaded paths."""
    import open_clip.factory

    fake = tmp_path / "weights.bin"
    fake.write_bytes(b"")
    loaded = []
    monkeypatch.setattr(open_clip.factory, "download_pretrained", lambda *a, **k: str(fake))
    monkeypatch.setattr(
        open_clip.factory, "load_checkpoint", lambda model, path, *a, **k: loaded.append(path)
    )
    return loaded


def _activations(model):
    from open_clip.transformer import QuickGELU

    kinds = {type(m.mlp.gelu) for m in model.visual.transformer.resblocks}
    kinds |= {type(m.mlp.gelu) for m in model.transformer.resblocks}
    return kinds, QuickGELU


def _build(name, pretrained):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, _, _ = load_clip(name, pretrained)
    quick = [w for w in caught if "QuickGELU" in str(w.message)]
    return model, quick


@pytest.mark.slow
def test_configured_clip_with_openai_tag_builds_quickgelu_without_warning(offline_weights):
    kwargs = yaml.safe_load(CONF.read_text())["kwargs"]
    model, quick = _build(kwargs["clip_model"], "openai")  # model.pretrained=true means openai
    assert offline_weights, "the stub did not load: the tag path was not exercised"
    assert quick == [], [str(w.message) for w in quick]
    kinds, quick_gelu = _activations(model)
    assert kinds == {quick_gelu}


@pytest.mark.slow
def test_configured_clip_with_a_local_checkpoint_builds_quickgelu(offline_weights, tmp_path):
    """A file carries no tag: the configured model name itself must be the QuickGELU one."""
    kwargs = yaml.safe_load(CONF.read_text())["kwargs"]
    ckpt = tmp_path / "ViT-B-32.pt"
    ckpt.write_bytes(b"")
    model, _ = _build(kwargs["clip_model"], ckpt)
    assert offline_weights == [str(ckpt)]
    kinds, quick_gelu = _activations(model)
    assert kinds == {quick_gelu}


@pytest.mark.slow
def test_plain_vit_b32_with_openai_tag_is_forced_to_quickgelu(offline_weights, monkeypatch):
    """Any OpenAI-tagged build gets QuickGELU, and without the forcing open_clip does warn."""
    model, quick = _build("ViT-B-32", "openai")
    assert quick == []
    kinds, quick_gelu = _activations(model)
    assert kinds == {quick_gelu}

    # the control: open_clip's own check fires when the activation is not forced
    monkeypatch.setattr("calib.models.clip_head.tag_needs_quick_gelu", lambda *a: False)
    model, quick = _build("ViT-B-32", "openai")
    assert len(quick) == 1
    assert quick_gelu not in _activations(model)[0]


@pytest.mark.parametrize(
    ("name", "pretrained", "expected"),
    [
        ("ViT-B-32", "openai", True),
        ("ViT-B/32", "openai", True),  # open_clip's own spelling clean-up
        ("RN50", "openai", True),
        ("ViT-B-32-quickgelu", "openai", False),  # already QuickGELU
        ("ViT-B-32", "laion2b_s34b_b79k", False),  # trained with GELU
        ("ViT-B-32", None, False),
        ("ViT-B-32", "/some/file.pt", False),  # a file: no tag to go by
        ("hf-hub:org/repo", "openai", False),  # open_clip ignores pretrained with a schema
    ],
)
def test_tag_needs_quick_gelu(name, pretrained, expected):
    assert tag_needs_quick_gelu(name, pretrained) is expected
