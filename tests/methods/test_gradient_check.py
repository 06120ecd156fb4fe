"""Every parameter a method trains receives a gradient.

LoRA's default targets included the ``out_proj`` of CLIP's ``nn.MultiheadAttention``, whose
forward reads the weight directly: those adapters got no gradient (never trained on one
process; under DDP the run failed at its second step). :func:`check_gradients` runs any method
with one forward/backward per training call and refuses a trainable parameter left without
a gradient.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from calib.data.split import ClassSplit
from calib.methods import METHODS, register_method
from calib.methods.gradient_check import check_gradients, parameters_without_gradient
from calib.train import TrainConfig

needs_clip = pytest.mark.skipif(
    importlib.util.find_spec("open_clip") is None, reason="the optional clip extra (open_clip)"
)
needs_peft = pytest.mark.skipif(
    importlib.util.find_spec("peft") is None, reason="the optional lora extra (peft)"
)

NAMES = ["airplane", "cat", "ship", "frog"]
SPLIT = ClassSplit(num_classes=4, seen=(0, 1), absent=(2, 3))
CONFIG = TrainConfig(epochs=1, batch_size=2)


def _tiny_clip():
    from calib.models import create_model

    torch.manual_seed(0)
    return create_model("clip_zero_shot", 4, class_names=NAMES, clip_model="tiny-clip")


def _images(n=8, size=32):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 4)


def _cnn():
    torch.manual_seed(0)
    from calib.models import create_model

    return create_model("digits_cnn", 4, in_chans=3, img_size=32)


@needs_clip
@needs_peft
def test_lora_on_tiny_clip_adapts_no_attention_out_proj_and_every_adapter_gets_a_gradient():
    from calib.methods.lora import add_lora, default_lora_targets

    model = _tiny_clip()
    targets = default_lora_targets(model)
    assert targets and not any(t.endswith("attn.out_proj") for t in targets)
    add_lora(model, targets, rank=2, alpha=2.0)
    adapters = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    assert len(adapters) == 2 * len(targets)  # an A and a B per target
    x, y = _images(2)[:2]
    assert parameters_without_gradient(model, (x, y)) == []
    check_gradients(METHODS.get("lora"), {}, _tiny_clip(), _images(), SPLIT, CONFIG)


@needs_clip
@needs_peft
def test_adapters_on_multihead_attention_out_proj_get_no_gradient_and_are_refused():
    from calib.methods.lora import add_lora, resolve_lora_targets

    model = _tiny_clip()
    out_proj = [n for n, m in model.named_modules() if n.endswith("attn.out_proj")]
    assert out_proj
    with pytest.raises(ValueError, match=r"'out_proj' matches .*attn\.out_proj', the output "):
        resolve_lora_targets(model, ["out_proj"])
    with pytest.raises(ValueError, match="reads the weight directly"):
        check_gradients(
            METHODS.get("lora"), {"target_modules": ["out_proj"]}, model, _images(), SPLIT, CONFIG
        )
    # what the check would catch had they been adapted: their A and B get no gradient
    add_lora(model, out_proj, rank=2, alpha=2.0)
    x, y = _images(2)[:2]
    missing = parameters_without_gradient(model, (x, y))
    assert missing and all("attn.out_proj.lora_" in n for n in missing)
    assert len(missing) == 2 * len(out_proj)


@pytest.fixture
def method_leaving_a_parameter_unused():
    """A method that adds a trainable parameter its model's forward never uses."""

    @register_method("x_gpu_unused_param", trains="all")
    def run(ctx):
        ctx.model.register_parameter("unused_scale", nn.Parameter(torch.ones(3)))
        ctx.train(ctx.model, ctx.dataset, ctx.config, tag="finetune")
        return ctx.model

    yield METHODS.get("x_gpu_unused_param")
    METHODS.unregister("x_gpu_unused_param")


def test_a_method_leaving_a_trainable_parameter_unused_is_refused_by_name(
    method_leaving_a_parameter_unused,
):
    with pytest.raises(ValueError, match=r"'x_gpu_unused_param' \(training 'finetune'\): 1 ") as e:
        check_gradients(method_leaving_a_parameter_unused, {}, _cnn(), _images(), SPLIT, CONFIG)
    assert "unused_scale" in str(e.value)


def _methods():
    names = METHODS.names()
    if importlib.util.find_spec("peft") is None:
        names.remove("lora")
    return [n for n in names if not n.startswith("x_")]


@pytest.mark.parametrize("method", _methods())
def test_every_registered_method_gives_every_trainable_parameter_a_gradient_on_a_cnn(method):
    check_gradients(METHODS.get(method), {}, _cnn(), _images(), SPLIT, CONFIG)


@needs_clip
@pytest.mark.parametrize("method", _methods())
def test_every_registered_method_gives_every_trainable_parameter_a_gradient_on_tiny_clip(method):
    check_gradients(METHODS.get(method), {}, _tiny_clip(), _images(), SPLIT, CONFIG)


def test_the_check_leaves_the_model_as_it_was():
    model = _cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    model.eval()
    check_gradients(METHODS.get("linear_probe"), {}, model, _images(), SPLIT, CONFIG)
    assert not model.training
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_the_dry_run_refuses_a_method_leaving_a_parameter_unused(
    method_leaving_a_parameter_unused, tmp_path
):
    """calib-run's dry run makes the check before any work, naming the parameter."""
    from calib.run import ConfigError, build_plan
    from tests.helpers_run import tiny_config

    cfg = tiny_config(["finetune.method=x_gpu_unused_param"])
    with pytest.raises(ConfigError, match=r"finetune.method=x_gpu_unused_param: .*unused_scale"):
        build_plan(cfg, run_dir=tmp_path / "run")
