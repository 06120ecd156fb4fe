"""LoRA: only the adapters (and the head) train, the update is low-rank, the merge is exact."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from calib.methods import METHODS
from calib.methods.lora import default_lora_targets, resolve_lora_targets
from calib.methods.parts import state_copy
from tests.helpers_methods import SPLIT, labelled, make_context, pretrained, same_state

# peft is imported by the tests that use it, not at collection (it loads transformers: seconds)
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("peft") is None, reason="the optional lora extra (peft)"
)


def capture_adapted(x, logits):
    """An epoch-end hook that records the adapted model's eval logits on ``x``."""

    def hook(epoch, model):
        mode = model.training
        model.eval()
        with torch.no_grad():
            logits[epoch] = model(x)
        model.train(mode)

    return hook


def test_merged_model_computes_the_adapted_logits(tmp_path):
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(5))
    adapted, calls = {}, []
    ctx = make_context(tmp_path, {"rank": 2}, on_epoch_end=capture_adapted(x, adapted), calls=calls)
    merged = METHODS.get("lora").run(ctx).eval()
    with torch.no_grad():
        z = merged(x)
    last = max(adapted)
    torch.testing.assert_close(z, adapted[last], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(adapted[0], adapted[last])  # training changed the logits
    trainable = calls[0][1]
    assert {"head.weight", "head.bias"} <= set(trainable)
    assert all("lora_" in n for n in trainable if not n.startswith("head."))
    assert any("lora_A" in n for n in trainable) and any("lora_B" in n for n in trainable)


def test_the_backbone_update_is_low_rank_and_the_rest_is_fixed(tmp_path):
    pre = state_copy(pretrained())
    ft = state_copy(METHODS.get("lora").run(make_context(tmp_path, {"rank": 2})))
    delta = ft["backbone.0.weight"] - pre["backbone.0.weight"]
    assert delta.abs().max() > 0
    assert torch.linalg.matrix_rank(delta.double(), atol=1e-6) <= 2
    for key in ("backbone.0.bias", "backbone.1.weight", "backbone.1.bias"):
        assert torch.equal(pre[key], ft[key]), key  # frozen (peft's bias="none")
    for key in ("backbone.1.running_mean", "backbone.1.running_var"):
        assert torch.equal(pre[key], ft[key]), key  # BatchNorm kept in eval mode
    assert not torch.equal(pre["head.weight"], ft["head.weight"])


def test_norm_statistics_may_update_and_the_head_may_stay(tmp_path):
    pre = state_copy(pretrained())
    params = {"update_norm_stats": True, "train_head": False}
    ft = state_copy(METHODS.get("lora").run(make_context(tmp_path, params)))
    assert not torch.equal(pre["backbone.1.running_mean"], ft["backbone.1.running_mean"])
    assert torch.equal(pre["head.weight"], ft["head.weight"])
    assert torch.equal(pre["head.bias"], ft["head.bias"])


def test_a_low_rank_head_update(tmp_path):
    pre = state_copy(pretrained())
    params = {"rank": 1, "target_modules": ["head"], "train_head": False}
    ft = state_copy(METHODS.get("lora").run(make_context(tmp_path, params)))
    delta = ft["head.weight"] - pre["head.weight"]
    assert delta.abs().max() > 0 and torch.linalg.matrix_rank(delta.double(), atol=1e-6) == 1
    assert same_state(
        {k: v for k, v in pre.items() if k.startswith("backbone.")},
        {k: v for k, v in ft.items() if k.startswith("backbone.")},
    )


def test_target_errors_name_the_target(tmp_path):
    spec = METHODS.get("lora")
    with pytest.raises(ValueError, match="'nope' matches no module"):
        spec.run(make_context(tmp_path, {"target_modules": ["nope"]}))
    with pytest.raises(ValueError, match="matches 'backbone.1', a BatchNorm1d"):
        spec.run(make_context(tmp_path, {"target_modules": ["backbone.1"]}))
    with pytest.raises(ValueError, match=r"includes the head \(\['head'\]\) and train_head=True"):
        spec.run(make_context(tmp_path, {"target_modules": ["head"]}))
    grouped = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, groups=4))
    with pytest.raises(ValueError, match="groups=4"):
        resolve_lora_targets(
            torch.nn.ModuleDict({"body": grouped, "head": torch.nn.Linear(4, 2)}), ["0"]
        )


def test_default_targets_of_a_classifier_and_a_timm_model():
    from calib.models import create_model

    cnn = create_model("digits_cnn", 10, in_chans=1)
    assert default_lora_targets(cnn) == ["backbone.conv.0", "backbone.conv.4", "backbone.fc.1"]
    timm = pytest.importorskip("timm")
    net = timm.create_model("test_efficientnet", num_classes=5)
    targets = default_lora_targets(net)
    modules = dict(net.named_modules())
    assert targets and "classifier" not in targets
    assert all(getattr(modules[t], "groups", 1) == 1 for t in targets)
    dw = [n for n, m in modules.items() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert dw and not set(dw) & set(targets)


@pytest.mark.slow
def test_lora_on_convolutions_merges_exactly(tmp_path):
    from calib.models import create_model

    def make():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return create_model("digits_cnn", SPLIT.num_classes, in_chans=1)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 1, 16, 16, generator=g)
    y = torch.tensor([0, 1, 2] * 8)
    adapted = {}
    ctx = make_context(
        tmp_path,
        {"rank": 2, "alpha": 4.0},
        model=make(),
        make=make,
        data=labelled(x, y),
        config={"epochs": 2, "iters_per_epoch": 2, "warmup_iters": 0},
        on_epoch_end=capture_adapted(x[:6], adapted),
    )
    pre = state_copy(make())
    merged = METHODS.get("lora").run(ctx).eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(x[:6]), adapted[max(adapted)], rtol=1e-5, atol=1e-5)
    ft = state_copy(merged)
    assert ft.keys() == pre.keys()
    delta = (ft["backbone.conv.4.weight"] - pre["backbone.conv.4.weight"]).flatten(1)
    assert delta.abs().max() > 0 and torch.linalg.matrix_rank(delta.double(), atol=1e-6) <= 2


def test_adapter_init_is_seeded_and_leaves_the_global_rng_alone():
    from calib.methods.lora import add_lora

    def adapters(seed):
        model = pretrained()
        before = torch.get_rng_state()
        add_lora(model, ["backbone.0"], rank=2, alpha=2.0, seed=seed)
        assert torch.equal(torch.get_rng_state(), before)
        return {k: v for k, v in model.state_dict().items() if "lora_" in k}

    a, b, c = adapters(1), adapters(1), adapters(2)
    assert a.keys() == b.keys() and len(a) == 2
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(
        a["backbone.0.lora_A.default.weight"], c["backbone.0.lora_A.default.weight"]
    )
    assert not a["backbone.0.lora_B.default.weight"].any()  # B = 0: the adapted model starts equal
