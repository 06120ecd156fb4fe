"""Hugging Face classifiers as they are — a tiny ViT (``pixel_values``) and a tiny
BERT with padding masks (``input_ids``/``attention_mask``), built from configs (no download),
through ``calibrate``, the wrapper (keyword inputs, ``predict``), save/load, ``torch.export``
and NCM features (``features_from="classifier"``)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from calib.estimator.calibrator import LogitBiasCalibrator
from calib.extract import extract
from calib.metrics.ncm import ncm_report
from calib.wrapper import CalibratedClassifier, calibrate

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None, reason="transformers is not installed"
)

SEEN, ABSENT, C = [0, 1, 2], [3, 4], 5
# float32 logits of one model on one input through two separately run graphs (eager and
# exported, or batched differently): a few float32 rounding units apart
F32 = {"rtol": 1e-4, "atol": 1e-5}


def tiny_vit():
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=8,
        patch_size=4,
        num_channels=3,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=C,
    )
    return ViTForImageClassification(config)  # built from a config: in train mode


def tiny_bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=C,
    )
    return BertForSequenceClassification(config)


class Images(Dataset):
    """Hugging Face's image-classification batches: ``pixel_values`` and ``labels``."""

    def __init__(self, n=20, classes=len(SEEN)):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 3, 8, 8, generator=g)
        self.y = torch.randint(0, classes, (n,), generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": int(self.y[i])}


def text_batches(classes=len(SEEN)):
    """Padded batches as a tokenizer + DataCollatorWithPadding give them (0 = [PAD])."""
    g = torch.Generator().manual_seed(2)
    out = []
    for _ in range(3):
        lengths = torch.randint(2, 10, (5,), generator=g)
        mask = (torch.arange(10) < lengths[:, None]).long()
        ids = torch.randint(1, 40, (5, 10), generator=g) * mask
        out.append(
            {
                "input_ids": ids,
                "token_type_ids": torch.zeros_like(ids),
                "attention_mask": mask,
                "labels": torch.randint(0, classes, (5,), generator=g),
            }
        )
    return out


def test_vit_calibrates_wraps_saves_and_exports(tmp_path):
    vit, data = tiny_vit(), Images()
    loader = DataLoader(data, batch_size=8)
    wrapped = calibrate(vit, loader, SEEN, progress=False)
    assert vit.training  # extraction ran in eval mode and put the mode back
    vit.eval()
    with torch.no_grad():
        logits = torch.cat([vit(pixel_values=b["pixel_values"]).logits for b in loader])
    want = LogitBiasCalibrator("alg").fit(logits, data.y, SEEN)
    assert wrapped.calibrator.gamma_ == want.gamma_  # the same batches: the same logits
    wrapped.eval()
    x = data.x[:6]
    with torch.no_grad():
        assert torch.equal(wrapped(x), want.transform(vit(x).logits))
        assert torch.equal(wrapped(pixel_values=x), wrapped(x))
        assert torch.equal(wrapped.predict(x), want.predict(vit(x).logits))
        proba = wrapped.predict_proba(x)
    assert proba.dtype == torch.float64 and torch.equal(proba.argmax(1), wrapped.predict(x))

    path = tmp_path / "vit.pt"
    wrapped.save(path)
    back = CalibratedClassifier.load(path, tiny_vit())
    with torch.no_grad():
        assert torch.equal(back(x), wrapped(x))
    assert back.calibrator.gamma_ == wrapped.calibrator.gamma_

    batch = torch.export.Dim("batch", min=2)
    program = torch.export.export(wrapped, (x,), dynamic_shapes={"x": {0: batch}})
    with torch.no_grad():
        torch.testing.assert_close(program.module()(data.x[:3]), wrapped(data.x[:3]), **F32)


def test_bert_with_padding_masks_calibrates_wraps_saves_and_exports(tmp_path):
    bert, loader = tiny_bert(), text_batches()
    out = extract(bert, loader, progress=False)
    bert.eval()
    with torch.no_grad():
        batch = {k: v for k, v in loader[0].items() if k != "labels"}
        want = bert(**batch).logits
        # one sequence on its own, without its padding: what the mask must reproduce
        n = int(batch["attention_mask"][0].sum())
        alone = bert(input_ids=batch["input_ids"][:1, :n]).logits
    assert torch.equal(out.logits[:5], want)
    torch.testing.assert_close(out.logits[:1], alone, **F32)
    assert out.labels.tolist() == torch.cat([b["labels"] for b in loader]).tolist()

    bert.train()
    wrapped = calibrate(bert, loader, SEEN, method="prior", progress=False)
    with torch.no_grad():
        got = wrapped.eval()(**batch)
        assert torch.equal(got, wrapped.calibrator.transform(want))
        assert torch.equal(wrapped(batch["input_ids"], batch["attention_mask"]), got)
        assert torch.equal(wrapped.predict(**batch), got.argmax(1))
        p = wrapped.forward_proba(**batch)
    # the torch and numpy softmax sum in different orders: float64 rounding apart
    torch.testing.assert_close(p, wrapped.calibrator.predict_proba(want), rtol=0, atol=1e-14)

    path = tmp_path / "bert.pt"
    wrapped.save(path)
    back = CalibratedClassifier.load(path, tiny_bert())
    with torch.no_grad():
        assert torch.equal(back(**batch), got)

    program = torch.export.export(wrapped, (), batch)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(**batch), got, **F32)


def test_ncm_features_from_the_classifier_head():
    vit = tiny_vit().eval()
    data = Images(30, classes=C)
    loader = DataLoader(data, batch_size=10)
    out = extract(vit, loader, features=True, features_from="classifier", progress=False)
    assert out.features.shape == (30, 16)
    with torch.no_grad():
        # the features are what the head maps to the logits
        torch.testing.assert_close(vit.classifier(out.features), out.logits, **F32)
    report = ncm_report(out.features, out.labels, out.features, out.labels, SEEN, ABSENT)
    assert 0.0 <= report["acc_all"] <= 1.0

    bert = tiny_bert().eval()
    text = extract(bert, text_batches(), features=True, features_from="classifier", progress=False)
    assert text.features.shape == (15, 16)
    with torch.no_grad():
        torch.testing.assert_close(bert.classifier(text.features), text.logits, **F32)
