"""Your own model and dataset: calib.models.adapt_module, checkpoint key mapping, and the template
in experiments/template (a plugin and its config folder) through calib-run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from calib.models import IncompatibleWeightsError, adapt_module, load_weights, make_data_config

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "experiments" / "template"
CONFIG = make_data_config((1, 16, 16), (0.5,), (0.5,))


def _template():
    spec = importlib.util.spec_from_file_location("byo_template_plugin", TEMPLATE / "plugin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _net():
    torch.manual_seed(0)
    return _template().MyNet(width=8).eval()


X = torch.randn(6, 1, 16, 16)


def test_an_adapted_module_computes_the_same_logits_and_exposes_the_heads_input():
    net = _net()
    with torch.no_grad():
        want, feats = net(X), net.features(X)
    model = adapt_module(net, head="fc", data_config=CONFIG, check_input=X).eval()
    with torch.no_grad():
        features, logits = model.forward_features_logits(X)
    # the same operations on the same input: equal to the bit
    assert torch.equal(logits, want) and torch.equal(features, feats)
    assert model.num_classes == 10 and model.head_path == "fc"
    assert set(model.state_dict()) == {f"backbone.{k}" for k in net.state_dict()} | {
        "head.weight",
        "head.bias",
    }


def test_a_head_that_is_not_the_last_step_or_not_linear_is_refused():
    class Twisted(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.fc = nn.Linear(4, 5), nn.Linear(5, 3)

        def forward(self, x):
            return torch.tanh(self.fc(self.body(x)))  # fc is not the last step

    with pytest.raises(ValueError, match="does not end with that layer"):
        adapt_module(Twisted(), "fc", CONFIG, check_input=torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"head='body\.0' is no submodule.*\['body', 'fc'\]"):
        adapt_module(Twisted(), "body.0", CONFIG)
    with pytest.raises(ValueError, match="head='features' is a Sequential"):
        adapt_module(_net(), "features", CONFIG)


def test_a_checkpoint_of_the_original_module_loads_as_it_is(tmp_path):
    plugin = _template()
    net = _net()
    torch.save(net.state_dict(), tmp_path / "mynet.pt")
    model = plugin.my_net(10, width=8)
    assert load_weights(model, tmp_path / "mynet.pt") is True  # the head from fc.*
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(X), net(X))


def test_a_checkpoint_under_another_prefix_is_refused_with_the_mapping_offered(tmp_path):
    plugin = _template()
    net = _net()
    renamed = {k.replace("features.", "body.", 1): v for k, v in net.state_dict().items()}
    torch.save(renamed, tmp_path / "renamed.pt")
    model = plugin.my_net(10, width=8)
    with pytest.raises(IncompatibleWeightsError) as err:
        load_weights(model, tmp_path / "renamed.pt")
    message = str(err.value)
    assert "keys missing from the file (features.0.weight" in message  # expected
    assert "unexpected backbone keys (body.0.weight" in message  # found
    assert "key_map={'body.': 'features.'}" in message  # offered
    load_weights(model, tmp_path / "renamed.pt", key_map={"body.": "features."})
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(X), net(X))


@pytest.mark.slow
def test_the_template_runs_through_calib_run(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "calib.experiments.run",
        "--config-dir", str(TEMPLATE / "conf"), "experiment=my_experiment",
        f"run_dir={run_dir}", f"cache_dir={tmp_path / 'cache'}", "progress=false",
        "source_train.epochs=1", "source_train.iters_per_epoch=8", "finetune.epochs=1",
        "finetune.iters_per_epoch=8", "calibration.pcv.num_splits=2", "eval.figures=false",
        "eval.every_epochs=0", "model.kwargs.width=8",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["meta"]["model"] == "my_net"
    assert results["meta"]["dataset"] == "my_digits"
    assert 0.0 <= results["finetuned"]["acc_all"] <= 1.0
