"""any nn.Module — outputs that are tuples, dicts or ModelOutput-like mappings
(``output_key``), dict batches under Hugging Face's keys or the user's own (``batch_keys``),
keyword inputs reaching the model in extraction and in the wrapper, ``predict`` /
``predict_proba`` on the wrapper, and features from a named head (``features_from``)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from calib.extract import extract
from calib.metrics.ncm import ncm_report
from calib.wrapper import CalibratedClassifier, calibrate

SEEN, ABSENT, C, D = [0, 1, 2], [3, 4], 5, 6
# float32 logits through two separately built but equal graphs: a few float32 units apart
F32 = {"rtol": 1e-5, "atol": 1e-5}


class Net(nn.Module):
    """A trunk and a ``head``; ``kind`` picks the shape of its output."""

    def __init__(self, kind: str = "tensor") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Linear(D, 8), nn.ReLU())
        self.head = nn.Linear(8, C)
        self.kind = kind

    def forward(self, x: torch.Tensor) -> object:
        logits = self.head(self.trunk(x))
        if self.kind == "tuple":
            return logits, logits.sum()
        if self.kind == "list":
            return [logits]
        if self.kind == "dict":
            return {"loss": None, "logits": logits}
        if self.kind == "scores":
            return {"scores": logits, "other": logits * 0}
        if self.kind == "model_output":  # a Hugging Face ModelOutput is an OrderedDict
            return _ModelOutput(logits=logits)
        return logits


class _ModelOutput(OrderedDict):
    pass


class MaskedNet(nn.Module):
    """A text-like model: ``input_ids`` (B, T) int64 and an ``attention_mask`` (B, T);
    mean-pooled embeddings over the unmasked positions."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.embed = nn.Embedding(20, 8)
        self.classifier = nn.Linear(8, C)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        h = self.embed(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1)
        return {"logits": self.classifier(pooled)}


def data(n=24, seed=0, classes=len(SEEN)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g), torch.randint(0, classes, (n,), generator=g)


def batches(x, y, size=8, as_dict=None):
    out = []
    for i in range(0, len(x), size):
        xb, yb = x[i : i + size], y[i : i + size]
        out.append((xb, yb) if as_dict is None else as_dict(xb, yb))
    return out


def text_batches():
    """Padded id batches (0 = padding) with their mask and labels."""
    g = torch.Generator().manual_seed(3)
    out = []
    for _ in range(3):
        ids = torch.randint(1, 20, (6, 7), generator=g)
        lengths = torch.randint(2, 8, (6,), generator=g)
        mask = (torch.arange(7) < lengths[:, None]).long()
        out.append(
            {
                "input_ids": ids * mask,
                "attention_mask": mask,
                "labels": torch.randint(0, 3, (6,), generator=g),
            }
        )
    return out


# ----------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("kind", ["tuple", "list", "dict", "model_output"])
def test_calibrate_reads_the_logits_of_any_output(kind):
    x, y = data()
    want = calibrate(Net(), batches(x, y), SEEN, progress=False)
    got = calibrate(Net(kind), batches(x, y), SEEN, progress=False)
    # the same model and batches: the same logits, so the same γ
    assert got.calibrator.gamma_ == want.calibrator.gamma_
    with torch.no_grad():
        assert torch.equal(got(x), want(x))
        assert torch.equal(got.forward_proba(x), want.forward_proba(x))


def test_output_key_picks_another_entry_and_travels_with_the_file(tmp_path):
    x, y = data()
    want = calibrate(Net(), batches(x, y), SEEN, progress=False)
    got = calibrate(Net("scores"), batches(x, y), SEEN, output_key="scores", progress=False)
    assert got.output_key == "scores" and got.calibrator.gamma_ == want.calibrator.gamma_
    with pytest.raises(KeyError, match=r"no entry 'logits'; its keys are \['scores', 'other'\]"):
        calibrate(Net("scores"), batches(x, y), SEEN, progress=False)
    path = tmp_path / "scores.pt"
    got.save(path)
    back = CalibratedClassifier.load(path, Net("scores"))
    assert back.output_key == "scores"
    with torch.no_grad():
        assert torch.equal(back(x), want(x))
    # an index of a tuple output
    tup = CalibratedClassifier(Net("tuple"), 1.0, ABSENT, C, output_key=0)
    with torch.no_grad():
        assert torch.equal(tup(x), CalibratedClassifier(Net(), 1.0, ABSENT, C)(x))


def test_bad_output_keys_and_outputs_are_named():
    x, _ = data(4)
    with pytest.raises(ValueError, match=r"output_key must be .* got 1.5"):
        CalibratedClassifier(Net(), 1.0, ABSENT, C, output_key=1.5)
    with pytest.raises(ValueError, match="output_key must be"):
        calibrate(Net(), [x], SEEN, method="prior", output_key=True)
    with pytest.raises(TypeError, match=r"output_key='a' cannot index .* a tuple"):
        CalibratedClassifier(Net("tuple"), 1.0, ABSENT, C, output_key="a")(x)
    with pytest.raises(TypeError, match="out of range .* a tuple of 2 items"):
        CalibratedClassifier(Net("tuple"), 1.0, ABSENT, C, output_key=5)(x)
    with pytest.raises(TypeError, match="output_key=0 was given, but the model's output is a"):
        CalibratedClassifier(Net(), 1.0, ABSENT, C, output_key=0)(x)

    class Text(nn.Module):
        def forward(self, x):
            return "not logits"

    with pytest.raises(TypeError, match="tuple/list .* or a mapping such as a Hugging Face"):
        extract(Text(), [x], progress=False)
    with pytest.raises(
        TypeError, match="the wrapped model's logits must be a tensor, got NoneType"
    ):
        CalibratedClassifier(Net("dict"), 1.0, ABSENT, C, output_key="loss")(x)


# ----------------------------------------------------------------------------- batches


def test_hugging_face_and_own_dict_keys():
    x, y = data()
    want = extract(Net(), batches(x, y), progress=False)
    for as_dict, keys in [
        (lambda a, b: {"pixel_values": a, "labels": b}, None),
        (lambda a, b: {"image": a, "label": b}, None),
        (
            lambda a, b: {"img": a, "target": b, "path": ["p"] * len(a)},
            {"input": "img", "label": "target"},
        ),
    ]:
        got = extract(Net(), batches(x, y, as_dict=as_dict), progress=False, batch_keys=keys)
        assert torch.equal(got.logits, want.logits) and torch.equal(got.labels, want.labels)
    # "label": None: a "label" entry is not taken for labels (here it is the model's input)
    keys = {"input": "label", "label": None}
    got = extract(Net(), [{"label": x}], progress=False, batch_keys=keys)
    assert got.labels is None
    # one batch of 24 against batches of 8: two matmuls that may round 1 ulp apart (MKL)
    torch.testing.assert_close(got.logits, want.logits[:24], **F32)


def test_dict_batch_errors_name_the_keys():
    x, y = data(8)
    with pytest.raises(
        KeyError,
        match=r"one of \['image', 'pixel_values', 'input_ids', 'input_values'\]; got keys \['img', 'y'\]: name yours with batch_keys",
    ):
        extract(Net(), [{"img": x, "y": y}], progress=False)
    with pytest.raises(KeyError, match="batch_keys names the label key 'target'"):
        extract(Net(), [{"image": x}], progress=False, batch_keys={"label": "target"})
    with pytest.raises(
        ValueError,
        match=r"batch_keys must be a dict with 'input' and/or 'label'.* got \{'inputs': 'x'\}",
    ):
        extract(Net(), [x], progress=False, batch_keys={"inputs": "x"})
    with pytest.raises(ValueError, match=r"batch_keys\['label'\] must be a key .* got 3"):
        calibrate(Net(), [x], SEEN, batch_keys={"label": 3})
    with pytest.raises(ValueError, match=r"needs labels, .* under 'label' or 'labels'"):
        calibrate(Net(), [{"image": x}], SEEN, progress=False)
    # a tensor entry the model has no parameter for is not dropped silently (a misnamed mask)
    with pytest.raises(TypeError, match=r"tensor entries \['mask'\] .* Net.forward takes \['x'\]"):
        extract(Net(), [{"image": x, "label": y, "mask": torch.ones(8)}], progress=False)


def test_keyword_inputs_reach_the_model_in_extraction_and_the_wrapper():
    model = MaskedNet()
    loader = text_batches()
    out = extract(model, loader, progress=False)
    with torch.no_grad():
        want = torch.cat([model(b["input_ids"], b["attention_mask"])["logits"] for b in loader])
        unmasked = torch.cat([model(b["input_ids"])["logits"] for b in loader])
    assert torch.equal(out.logits, want)
    assert not torch.allclose(out.logits, unmasked)  # the mask matters, so it was passed
    assert out.labels.tolist() == torch.cat([b["labels"] for b in loader]).tolist()
    # every entry as a keyword
    got = extract(model, loader, progress=False, batch_keys={"input": None})
    assert torch.equal(got.logits, want)

    wrapped = calibrate(model, loader, SEEN, progress=False)
    b = loader[0]
    with torch.no_grad():
        logits = model(b["input_ids"], attention_mask=b["attention_mask"])["logits"]
        cal = wrapped.calibrator
        assert torch.equal(
            wrapped(b["input_ids"], attention_mask=b["attention_mask"]), cal.transform(logits)
        )
        assert torch.equal(
            wrapped(input_ids=b["input_ids"], attention_mask=b["attention_mask"]),
            cal.transform(logits),
        )
        p = wrapped.forward_proba(b["input_ids"], attention_mask=b["attention_mask"])
        # the torch and numpy softmax sum in different orders: float64 rounding apart
        torch.testing.assert_close(p, cal.predict_proba(logits), rtol=0, atol=1e-14)


# ----------------------------------------------------------------------------- predict


def test_predict_and_predict_proba_follow_the_estimator_in_eval_mode():
    x, y = data(40)
    model = nn.Sequential(nn.Linear(D, 16), nn.Dropout(0.5), nn.Linear(16, C))
    wrapped = calibrate(
        model, batches(x, y), SEEN, progress=False, gamma=0.3, method="fixed", num_classes=C
    )
    wrapped.train()
    with torch.no_grad():
        logits = model.eval()(x)
        model.train()
        pred = wrapped.predict(x)
        proba = wrapped.predict_proba(x)
    assert pred.dtype == torch.int64 and pred.shape == (40,)
    assert torch.equal(pred, wrapped.calibrator.predict(logits))  # the rule, dropout off
    assert proba.dtype == torch.float64 and torch.equal(proba.argmax(1), pred)
    # float64 sums of 5 numbers below 1: a few units of float64 rounding from 1
    torch.testing.assert_close(
        proba.sum(1), torch.ones(40, dtype=torch.float64), rtol=0, atol=1e-12
    )
    assert wrapped.training and model.training  # modes put back


# ----------------------------------------------------------------------------- compiling


def test_script_compiles_the_tensor_form_and_export_takes_keywords():
    x, _ = data(6)
    torch.manual_seed(0)
    wrapped = CalibratedClassifier(nn.Sequential(nn.Linear(D, C)), 0.8, ABSENT, C).eval()
    scripted = torch.jit.script(wrapped)
    with torch.no_grad():
        assert torch.equal(scripted(x), wrapped(x))
        assert torch.equal(scripted.forward_proba(x), wrapped.forward_proba(x))
    with pytest.raises(
        TypeError, match="output_key='scores' of its output: use torch.jit.trace or torch.export"
    ):
        torch.jit.script(CalibratedClassifier(Net("scores"), 0.8, ABSENT, C, output_key="scores"))

    text = CalibratedClassifier(MaskedNet(), 0.8, ABSENT, C).eval()
    b = text_batches()[0]
    kwargs = {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}
    program = torch.export.export(text, (), kwargs)
    with torch.no_grad():
        # the exported graph may fuse or reorder float32 ops: float32 rounding apart
        torch.testing.assert_close(program.module()(**kwargs), text(**kwargs), **F32)


# ----------------------------------------------------------------------------- features


def test_features_from_a_named_head_give_ncm():
    x, y = data(30, classes=C)
    model = Net("dict")
    out = extract(model, batches(x, y), features=True, features_from="head", progress=False)
    with torch.no_grad():
        want_f = model.trunk(x)
    torch.testing.assert_close(out.features, want_f, **F32)
    torch.testing.assert_close(out.logits, model.head(out.features), **F32)
    report = ncm_report(out.features, out.labels, out.features, out.labels, SEEN, [3, 4])
    assert 0.0 <= report["acc_all"] <= 1.0
    # the wrapper gives the same features
    wrapped = CalibratedClassifier(model, 1.0, ABSENT, C)
    with torch.no_grad():
        f, z = wrapped.forward_features_logits(x, features_from="head")
    torch.testing.assert_close(f, want_f, **F32)
    assert torch.equal(z, wrapped(x))


def test_features_from_errors():
    x, y = data(8)
    with pytest.raises(
        ValueError,
        match=r"features_from='fc' names no submodule of Net; its linear layers are \['trunk.0', 'head'\]",
    ):
        extract(Net(), [(x, y)], features=True, features_from="fc", progress=False)
    with pytest.raises(ValueError, match="features_from='head' is given but features=False"):
        extract(Net(), [(x, y)], features_from="head", progress=False)
    with pytest.raises(ValueError, match="features_from must be the name of a submodule"):
        extract(Net(), [(x, y)], features=True, features_from=3, progress=False)
    with pytest.raises(TypeError, match="name its head with features_from"):
        extract(Net(), [(x, y)], features=True, progress=False)

    class Twice(Net):
        def forward(self, x):
            return self.head(self.trunk(x)) + self.head(self.trunk(x))

    with pytest.raises(RuntimeError, match=r"ran 2 times in one forward pass"):
        extract(Twice(), [(x, y)], features=True, features_from="head", progress=False)
