"""adapt_module on a module whose output is not a tensor (a Hugging Face ModelOutput, a tuple):
output_key names the logits entry; the adapted Classifier then trains, scores and runs through
the harness (RunPlan) like any other."""

from __future__ import annotations

import copy
import io
import json

import numpy as np
import pytest
import torch
from torch import nn

from calib.data import ClassSplit, Domain, TensorImageDataset
from calib.extract import extract, extraction_loader
from calib.models import adapt_module, make_data_config
from calib.run import RunPlan
from calib.run.settings import CalibrationConfig, EvalConfig, PCVConfig
from calib.train import TrainConfig

transformers = pytest.importorskip("transformers")

C = 5
CONFIG = make_data_config((3, 8, 8), (0.5,) * 3, (0.5,) * 3)
F32 = {"rtol": 1e-4, "atol": 1e-5}  # one model, two separately run graphs: float32 rounding


def tiny_vit():
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=8, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, num_labels=C,
    )  # fmt: skip
    return transformers.ViTForImageClassification(config).eval()


X = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def test_a_model_output_is_adapted_with_the_same_logits_and_the_heads_input_as_features():
    vit = tiny_vit()
    with torch.no_grad():
        want = vit(X).logits
        cls = vit.vit(X).last_hidden_state[:, 0]  # what ViT's classifier reads
    model = adapt_module(vit, "classifier", CONFIG, check_input=X, output_key="logits").eval()
    with torch.no_grad():
        features, logits = model.forward_features_logits(X)
    torch.testing.assert_close(logits, want, **F32)
    torch.testing.assert_close(features, cls, **F32)
    # copies (the harness trains a deep copy) and saved whole models keep the unwrapping
    again = torch.load(io.BytesIO(_saved(copy.deepcopy(model))), weights_only=False)
    with torch.no_grad():
        torch.testing.assert_close(again(X), logits, rtol=0, atol=0)


def _saved(model) -> bytes:
    buf = io.BytesIO()
    torch.save(model, buf)
    return buf.getvalue()


def test_a_tuple_output_takes_the_given_index():
    class TupleNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.fc = nn.Linear(4, 6), nn.Linear(6, 3)

        def forward(self, x):
            f = self.body(x)
            return f.sum(1), self.fc(f)  # the logits second

    torch.manual_seed(0)
    net, x = TupleNet(), torch.randn(5, 4)
    with torch.no_grad():
        want = net(x)[1]
    model = adapt_module(net, "fc", CONFIG, check_input=x, output_key=1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=0, atol=0)


def test_a_model_output_without_output_key_and_a_bad_key_are_named():
    with pytest.raises(ValueError, match="returns a ImageClassifierOutput, not a tensor: name"):
        adapt_module(tiny_vit(), "classifier", CONFIG, check_input=X)
    with pytest.raises(KeyError, match="has no entry 'scores'; its keys are \\['logits'\\]"):
        adapt_module(tiny_vit(), "classifier", CONFIG, check_input=X, output_key="scores")
    with pytest.raises(ValueError, match="output_key must be a key .* got True"):
        adapt_module(tiny_vit(), "classifier", CONFIG, output_key=True)


def _domain(n_per_class: int, seed: int) -> TensorImageDataset:
    g = torch.Generator().manual_seed(seed)
    y = np.repeat(np.arange(C), n_per_class)
    means = torch.randn(C, 3, 1, 1, generator=torch.Generator().manual_seed(0))
    x = means[torch.as_tensor(y)] + 0.5 * torch.randn(y.size, 3, 8, 8, generator=g)
    return TensorImageDataset(x, y)


def test_a_hugging_face_model_runs_through_the_harness(tmp_path):
    names = [str(c) for c in range(C)]
    target = Domain(train=_domain(12, 1), test=_domain(6, 2), num_classes=C,
                    class_names=names, name="blobs")  # fmt: skip
    plan = RunPlan(
        target=target,
        split=ClassSplit.explicit([0, 1, 2], None, num_classes=C),
        make_model=lambda: adapt_module(tiny_vit(), "classifier", CONFIG, output_key="logits"),
        finetune=TrainConfig(optimizer="sgd", lr=0.05, epochs=1, batch_size=8, seed=3),
        run_dir=tmp_path / "run",
        calibration=CalibrationConfig(
            selectors=("alg", "pcv", "oracle"), pcv=PCVConfig(num_splits=2, seed=1)
        ),
        eval=EvalConfig(batch_size=16, amp=False, figures=False),
        device="cpu",
        progress=False,
    )
    results = plan.run()
    test = torch.load(tmp_path / "run" / "extract" / "finetuned_test.pt", weights_only=True)
    assert test["features"].shape == (30, 16)  # NCM had the CLS features
    assert 0.0 <= results["finetuned"]["ncm_acc_all"] <= 1.0
    assert json.loads((tmp_path / "run" / "results.json").read_text())["calibrated"]["pcv"]
    # the run's logits are the adapted model's: recompute them from the saved weights
    model = adapt_module(tiny_vit(), "classifier", CONFIG, output_key="logits")
    model.load_state_dict(torch.load(tmp_path / "run" / "finetune" / "checkpoints" / "final.pt"))
    again = extract(model, extraction_loader(target.test, 16), progress=False)
    torch.testing.assert_close(again.logits, test["logits"], **F32)
