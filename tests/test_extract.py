"""extract(): logits/features/labels in loader order, model state untouched, clear errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from calib.extract import Extracted, extract, extraction_loader, model_device


class FeatureNet(nn.Module):
    """A tiny backbone + linear head with forward_features_logits, plus dropout and batch norm."""

    def __init__(self, d_in: int = 6, d_feat: int = 4, num_classes: int = 5) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Linear(d_in, d_feat), nn.BatchNorm1d(d_feat), nn.Dropout(0.5)
        )
        self.head = nn.Linear(d_feat, num_classes)

    def forward_features_logits(self, x):
        f = self.backbone(x)
        return f, self.head(f)

    def forward(self, x):
        return self.forward_features_logits(x)[1]


@pytest.fixture
def net():
    torch.manual_seed(0)
    return FeatureNet()


@pytest.fixture
def dataset():
    g = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(23, 6, generator=g), torch.randint(0, 5, (23,), generator=g))


def reference(net, x):
    net = copy.deepcopy(net).eval()
    with torch.no_grad():
        return net.forward_features_logits(x)


def test_extract_gives_eval_mode_outputs_in_dataset_order(net, dataset):
    x, y = dataset.tensors
    out = extract(net, DataLoader(dataset, batch_size=5), features=True, progress=False)
    feats, logits = reference(net, x)
    assert isinstance(out, Extracted) and len(out) == 23
    assert out.logits.dtype == torch.float32 and out.logits.device.type == "cpu"
    torch.testing.assert_close(out.logits, logits)
    torch.testing.assert_close(out.features, feats)
    assert out.labels.dtype == torch.int64 and torch.equal(out.labels, y)


def test_extract_restores_modes_and_leaves_weights_alone(net, dataset):
    net.train()
    net.backbone[2].eval()  # mixed modes must come back as they were
    before = copy.deepcopy(net.state_dict())
    extract(net, DataLoader(dataset, batch_size=4), progress=False)
    assert net.training and net.backbone[0].training and not net.backbone[2].training
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. BatchNorm statistics


def test_results_are_ordinary_tensors(net, dataset):
    out = extract(net, DataLoader(dataset, batch_size=8), progress=False)
    assert not out.logits.is_inference() and not out.labels.is_inference()
    out.logits[:, 0] += 1.0  # callers may modify them in place


def test_batch_size_one_and_dict_batches(net, dataset):
    x, y = dataset.tensors

    class Dicts(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return {"image": x[i], "label": int(y[i]), "path": f"{i}.png"}

    out = extract(net, DataLoader(Dicts(), batch_size=1), progress=False)
    torch.testing.assert_close(out.logits, reference(net, x[:3])[1])
    assert out.labels.tolist() == y[:3].tolist()


def test_unlabelled_batches_and_iterable_loaders(net, dataset):
    x, _ = dataset.tensors
    out = extract(net, [x[:10], x[10:]], progress=False)
    assert out.labels is None and out.features is None
    torch.testing.assert_close(out.logits, reference(net, x)[1])

    class Stream(IterableDataset):
        def __iter__(self):
            yield from zip(x, range(len(x)), strict=True)

    out = extract(net, DataLoader(Stream(), batch_size=7), progress=False)
    assert out.labels.tolist() == list(range(23))


def test_extract_errors(net, dataset):
    x, y = dataset.tensors
    with pytest.raises(ValueError, match="no samples"):
        extract(net, DataLoader(TensorDataset(x[:0], y[:0]), batch_size=4), progress=False)
    with pytest.raises(ValueError, match="no samples"):
        extract(net, [], progress=False)
    with pytest.raises(TypeError, match="forward_features_logits"):
        extract(nn.Linear(6, 5), [(x, y)], features=True, progress=False)
    with pytest.raises(ValueError, match="mixes batches"):
        extract(net, [(x[:3], y[:3]), x[3:]], progress=False)
    with pytest.raises(ValueError, match="3 inputs but 2 labels"):
        extract(net, [(x[:3], y[:2])], progress=False)
    with pytest.raises(ValueError, match="integer class indices"):
        extract(net, [(x[:3], y[:3].float())], progress=False)
    with pytest.raises(KeyError, match="'image'"):
        extract(net, [{"img": x}], progress=False)
    with pytest.raises(ValueError, match=r"shape \(3, K\)"):
        extract(nn.Flatten(0), [(x[:3], y[:3])], progress=False)


def test_shuffling_loader_warns(net, dataset):
    with pytest.warns(UserWarning, match="shuffles"):
        extract(net, DataLoader(dataset, batch_size=8, shuffle=True), progress=False)


def test_amp_and_channels_last_on_cpu():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    images = torch.randn(6, 3, 8, 8)
    out = extract(conv, [(images, torch.arange(6))], amp=True, channels_last=True, progress=False)
    assert out.logits.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(out.logits, conv(images), atol=0.05, rtol=0.05)  # bfloat16


def test_model_device_of_a_parameterless_model():
    assert model_device(nn.Identity()) == torch.device("cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_extract_on_cuda_returns_cpu_tensors(net, dataset):
    x, y = dataset.tensors
    loader = DataLoader(dataset, batch_size=8, pin_memory=True)
    out = extract(net, loader, device="cuda", features=True, amp=True, progress=False)
    assert next(net.parameters()).is_cuda
    assert out.logits.device.type == "cpu" and out.logits.dtype == torch.float32
    ref = reference(net.cpu(), x)[1]
    torch.testing.assert_close(out.logits, ref, atol=0.02, rtol=0.02)  # float16 autocast
    assert torch.equal(out.labels, y)


class CountingLoader(DataLoader):
    """A DataLoader that counts how many iterators were made from it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.iterators = 0

    def __iter__(self):
        self.iterators += 1
        return super().__iter__()


@pytest.mark.parametrize("progress", [False, True])
def test_the_loader_is_iterated_once(net, dataset, progress):
    # each DataLoader iterator starts its own worker processes, which prefetch batches
    loader = CountingLoader(dataset, batch_size=8)
    out = extract(net, loader, progress=progress)
    assert loader.iterators == 1 and len(out) == 23


def test_extraction_loader_in_one_process_is_the_dataset_in_order(net, dataset):
    loader = extraction_loader(dataset, batch_size=5)
    assert list(loader.sampler) == list(range(23))
    out = extract(net, loader, features=True, progress=False)
    torch.testing.assert_close(out.logits, reference(net, dataset.tensors[0])[1])
    assert torch.equal(out.labels, dataset.tensors[1])


def test_extraction_loader_pins_memory_when_cuda_is_present(dataset, monkeypatch):
    assert extraction_loader(dataset).pin_memory is False  # no CUDA here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert extraction_loader(dataset).pin_memory is True
    assert extraction_loader(dataset, pin_memory=False).pin_memory is False


class _RecordsInput(nn.Module):
    """A conv net that records the memory format and the autocast dtype of what it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)
        self.seen: list[tuple[bool, torch.dtype | None]] = []

    def forward(self, x):
        cpu_autocast = torch.is_autocast_enabled("cpu")
        self.seen.append(
            (
                x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(),
                torch.get_autocast_dtype("cpu") if cpu_autocast else None,
            )
        )
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_channels_last_auto_follows_the_models_weights():
    from calib.extract import is_channels_last

    torch.manual_seed(0)
    model = _RecordsInput()
    batch = [(torch.randn(2, 3, 8, 8), torch.arange(2))]
    assert not is_channels_last(model)
    extract(model, batch, channels_last="auto", progress=False)
    model.to(memory_format=torch.channels_last)  # as train() leaves a channels-last model
    assert is_channels_last(model)
    extract(model, batch, channels_last="auto", progress=False)
    assert [s[0] for s in model.seen] == [False, True]
    with pytest.raises(ValueError, match=r"channels_last must be True, False or 'auto', got 'on'"):
        extract(model, batch, channels_last="on", progress=False)


def test_amp_takes_the_autocast_dtype():
    torch.manual_seed(0)
    model = _RecordsInput()
    batch = [(torch.randn(2, 3, 8, 8), torch.arange(2))]
    extract(model, batch, amp=torch.float16, progress=False)
    extract(model, batch, amp=torch.bfloat16, progress=False)
    extract(model, batch, amp=False, progress=False)
    assert [s[1] for s in model.seen] == [torch.float16, torch.bfloat16, None]
    with pytest.raises(ValueError, match=r"amp must be True, False, .* got torch.float64"):
        extract(model, batch, amp=torch.float64, progress=False)
