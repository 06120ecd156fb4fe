"""Each method's defining property, its per-epoch hook, and resume after a kill."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calib.methods import METHODS, interpolate_state
from calib.methods.parts import state_copy
from tests.helpers_methods import (
    CONFIG,
    SPLIT,
    Killed,
    dataset,
    make_context,
    pretrained,
    runnable_methods,
    same_state,
)

pytest.importorskip("timm")  # calib.train builds its optimizers with timm


def run(key, tmp, params=None, **kwargs):
    if key == "oracle_all" and "data" not in kwargs:
        kwargs["data"] = dataset(SPLIT.seen + SPLIT.absent)
    return METHODS.get(key).run(make_context(tmp, params, **kwargs))


def part(state, prefix):
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def differs(a, b):
    return any(not torch.equal(a[k], b[k]) for k in a)


def test_full_trains_everything(tmp_path):
    pre = state_copy(pretrained())
    ft = state_copy(run("full", tmp_path))
    for key in ("backbone.0.weight", "backbone.1.running_mean", "head.weight", "head.bias"):
        assert not torch.equal(pre[key], ft[key]), key


def test_full_is_todays_fine_tuning(tmp_path):
    from calib.train import TrainConfig, train

    plain = pretrained()
    train(plain, dataset(), TrainConfig(**CONFIG), device="cpu", progress=False, log=lambda s: 0)
    assert same_state(state_copy(plain), state_copy(run("full", tmp_path)))


def test_frozen_head_keeps_the_head_bitwise(tmp_path):
    pre = state_copy(pretrained())
    calls = []
    ft = state_copy(run("frozen_head", tmp_path, calls=calls))
    assert same_state(part(pre, "head."), part(ft, "head."))
    assert differs(part(pre, "backbone."), part(ft, "backbone."))
    assert not torch.equal(pre["backbone.1.running_mean"], ft["backbone.1.running_mean"])
    assert calls == [
        (
            "finetune",
            [
                n
                for n in pre
                if n.startswith("backbone.") and "running" not in n and "num_batches" not in n
            ],
        )
    ]


def test_frozen_head_keeps_a_cosine_head_and_its_scale(tmp_path):
    params = {"head": "cosine", "head_scale": 4.0}
    spec = METHODS.get("frozen_head")
    pre = state_copy(spec.prepare(pretrained(), params))
    ft = state_copy(run("frozen_head", tmp_path, params))
    assert same_state(part(pre, "head."), part(ft, "head.")) and "head.scale" in ft


def test_linear_probe_keeps_the_backbone_and_its_statistics_bitwise(tmp_path):
    pre = state_copy(pretrained())
    modes = []

    def hook(epoch, model):  # the backbone is in eval mode while training, the head is not
        modes.append((epoch, [m.training for m in model.backbone.modules()], model.head.training))

    ft = state_copy(run("linear_probe", tmp_path, on_epoch_end=hook))
    backbone = part(pre, "backbone.")
    assert "backbone.1.running_var" in backbone and "backbone.1.num_batches_tracked" in backbone
    assert same_state(backbone, part(ft, "backbone."))
    assert differs(part(pre, "head."), part(ft, "head."))
    assert [e for e, _, _ in modes] == list(range(CONFIG["epochs"] + 1))
    assert all(not any(flags) and head for e, flags, head in modes if e > 0)


def test_linear_probe_head_is_fitted_on_the_eval_features(tmp_path):
    # With the backbone frozen in eval mode, the probe sees the fixed features f = backbone(x)
    # in eval mode: training the head alone on those features (a plain Linear, same optimizer,
    # same batches) gives the same head.
    from calib.train import TrainConfig, train
    from tests.helpers_train import TinyNet

    pre = pretrained()
    with torch.no_grad():
        feats = pre.eval().backbone(dataset().tensors[0])
    head_only = TinyNet()
    head_only.backbone = torch.nn.Identity()
    head_only.head.load_state_dict(pre.head.state_dict())
    from tests.helpers_methods import labelled

    train(
        head_only,
        labelled(feats, dataset().tensors[1]),
        TrainConfig(**CONFIG),
        device="cpu",
        progress=False,
        log=lambda s: None,
    )
    probed = run("linear_probe", tmp_path)
    for k in ("weight", "bias"):
        torch.testing.assert_close(
            getattr(probed.head, k), getattr(head_only.head, k), rtol=1e-5, atol=1e-6
        )


def test_lp_ft_with_no_probe_is_full(tmp_path):
    full = state_copy(run("full", tmp_path / "full"))
    assert same_state(full, state_copy(run("lp_ft", tmp_path / "lp", {"probe_epochs": 0})))
    assert not (tmp_path / "lp" / "probe").exists()


def test_lp_ft_probes_then_fine_tunes(tmp_path):
    calls, hooked = [], []
    pre = state_copy(pretrained())
    ft = state_copy(
        run(
            "lp_ft",
            tmp_path,
            {"probe_epochs": 2},
            calls=calls,
            on_epoch_end=lambda e, m: hooked.append(e),
        )
    )
    assert [tag for tag, _ in calls] == ["probe", "finetune"]
    assert calls[0][1] == ["head.weight", "head.bias"]
    assert len(calls[1][1]) == len([n for n, _ in pretrained().named_parameters()])
    probe = torch.load(tmp_path / "probe" / "checkpoints" / "final.pt", weights_only=True)
    assert same_state(part(pre, "backbone."), part(probe, "backbone."))
    assert differs(part(pre, "head."), part(probe, "head."))
    assert hooked == list(range(CONFIG["epochs"] + 1))  # the hook belongs to the main phase
    assert differs(ft, state_copy(run("full", tmp_path / "full")))


def test_lp_ft_keeps_user_frozen_parameters_frozen_in_both_phases(tmp_path):
    model = pretrained()
    model.backbone[0].bias.requires_grad_(False)
    model.head.bias.requires_grad_(False)
    calls = []
    out = run("lp_ft", tmp_path, {"probe_epochs": 1}, model=model, calls=calls)
    assert calls[0] == ("probe", ["head.weight"])
    assert "backbone.0.bias" not in calls[1][1] and "head.bias" not in calls[1][1]
    assert not out.backbone[0].bias.requires_grad and out.backbone[0].weight.requires_grad


def test_lp_ft_default_probes_as_long_as_fine_tuning(tmp_path):
    run("lp_ft", tmp_path)
    done = (tmp_path / "probe" / "checkpoints" / "done").read_text()
    assert f'"epochs": {CONFIG["epochs"]}' in done


def test_wise_ft_ends_are_the_pretrained_and_the_fine_tuned_weights(tmp_path):
    pre = state_copy(pretrained())
    full = state_copy(run("full", tmp_path / "full"))
    at0 = state_copy(run("wise_ft", tmp_path / "w0", {"alpha": 0.0}))
    at1 = state_copy(run("wise_ft", tmp_path / "w1", {"alpha": 1.0}))
    assert same_state(at1, full)
    floats = [k for k, v in pre.items() if v.is_floating_point()]
    ints = [k for k in pre if k not in floats]
    assert ints == ["backbone.1.num_batches_tracked"]
    assert all(torch.equal(at0[k], pre[k]) for k in floats)
    assert all(torch.equal(at0[k], full[k]) for k in ints)  # counters: the fine-tuned model's
    assert not torch.equal(pre[ints[0]], full[ints[0]])


def test_wise_ft_mixes_every_float_entry_linearly(tmp_path):
    pre = state_copy(pretrained())
    full = state_copy(run("full", tmp_path / "full"))
    mid = state_copy(run("wise_ft", tmp_path / "w", {"alpha": 0.3}))
    for k, v in pre.items():
        if v.is_floating_point():
            brute = (0.7 * pre[k].double() + 0.3 * full[k].double()).float()
            torch.testing.assert_close(mid[k], brute, rtol=1e-6, atol=1e-7)
    assert same_state(mid, interpolate_state(pre, full, 0.3))


def test_wise_ft_endpoints_leave_the_model_alone(tmp_path):
    from calib.methods import endpoints

    ctx = make_context(tmp_path, {"alpha": 0.5})
    model = METHODS.get("wise_ft").run(ctx)
    mixed = state_copy(model)
    pre, ft = endpoints(ctx)  # after the run: loads the finished run, trains nothing
    assert same_state(mixed, state_copy(model))
    assert same_state(pre, state_copy(pretrained()))
    assert same_state(mixed, interpolate_state(pre, ft, 0.5))


def test_distill_absent_with_weight_zero_is_full(tmp_path):
    full = state_copy(run("full", tmp_path / "full"))
    zero = state_copy(run("distill_absent", tmp_path / "d0", {"weight": 0.0}))
    assert same_state(full, zero)
    some = state_copy(run("distill_absent", tmp_path / "d1", {"weight": 1.0}))
    assert differs(full, some)


def test_distill_absent_keeps_the_absent_logits_closer_to_the_pretrained_ones(tmp_path):
    x = dataset(SPLIT.seen + SPLIT.absent).tensors[0]
    pre = pretrained().eval()
    config = {"epochs": 6, "lr": 0.1, "lr_head": 0.2}

    def drift(model):
        model.eval()
        with torch.no_grad():
            z, t = model(x)[:, list(SPLIT.absent)], pre(x)[:, list(SPLIT.absent)]
        z, t = z - z.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
        return float((z - t).pow(2).mean())

    full = drift(run("full", tmp_path / "f", config=config))
    kd = drift(run("distill_absent", tmp_path / "d", {"weight": 5.0}, config=config))
    assert kd < full


KILLS = [(key, ("finetune", 2)) for key in runnable_methods()]
KILLS.append(("lp_ft", ("probe", 2)))
# lp_ft trains twice per run: its cases are the heavy ones
KILLS = [pytest.param(*k, marks=pytest.mark.slow) if k[0] == "lp_ft" else k for k in KILLS]


@pytest.mark.parametrize("key, kill", KILLS, ids=lambda v: v if isinstance(v, str) else v[0])
def test_resume_after_a_kill_gives_the_uninterrupted_weights(tmp_path, key, kill):
    params = {"probe_epochs": 3} if key == "lp_ft" else None
    straight = state_copy(run(key, tmp_path / "straight", params))
    with pytest.raises(Killed):
        run(key, tmp_path / "killed", params, kill=kill)
    assert (tmp_path / "killed" / kill[0] / "checkpoints" / "last.pt").exists()
    resumed = state_copy(run(key, tmp_path / "killed", params))  # a fresh pre-trained model
    assert same_state(straight, resumed)
    rerun = state_copy(run(key, tmp_path / "killed", params))  # finished: loads, same weights
    assert same_state(straight, rerun)


@pytest.mark.slow
def test_every_method_returns_a_plain_model_and_hooks_its_main_training(tmp_path):
    x = dataset().tensors[0][:5]
    for key in runnable_methods():
        seen = []
        model = run(key, tmp_path / key, on_epoch_end=lambda e, m: seen.append(e)).eval()
        assert seen == list(range(CONFIG["epochs"] + 1)), key
        assert type(model) is type(pretrained())
        assert model.state_dict().keys() == pretrained().state_dict().keys()
        with torch.no_grad():
            z = model(x)
        assert z.shape == (5, SPLIT.num_classes) and np.isfinite(z.numpy()).all()


@pytest.mark.slow
def test_linear_probe_and_frozen_head_on_a_timm_model(tmp_path):
    timm = pytest.importorskip("timm")
    from tests.helpers_methods import labelled

    def make():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return timm.create_model("test_efficientnet", num_classes=SPLIT.num_classes)

    g = torch.Generator().manual_seed(0)
    data = labelled(torch.randn(16, 3, 32, 32, generator=g), torch.tensor([0, 1, 2, 0] * 4))
    config = {"epochs": 1, "iters_per_epoch": 2, "warmup_iters": 0}
    pre = state_copy(make())
    kwargs = dict(make=make, data=data, config=config)
    probed = state_copy(run("linear_probe", tmp_path / "lp", model=make(), **kwargs))
    head = {k for k in pre if k.startswith("classifier.")}
    assert head == {"classifier.weight", "classifier.bias"}
    assert all(torch.equal(pre[k], probed[k]) for k in pre if k not in head)  # BN buffers too
    assert differs({k: pre[k] for k in head}, {k: probed[k] for k in head})
    frozen = state_copy(run("frozen_head", tmp_path / "fh", model=make(), **kwargs))
    assert all(torch.equal(pre[k], frozen[k]) for k in head)
    assert differs({k: pre[k] for k in pre if k not in head}, frozen)
