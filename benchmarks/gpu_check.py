"""The GPU check: one command that runs calib's CUDA paths on one GPU and prints one table.

    python benchmarks/gpu_check.py                       # one CUDA GPU: at most 8 minutes
    python benchmarks/gpu_check.py --out gpu_check.md    # the table's Markdown file (default)
    python benchmarks/gpu_check.py --only metrics        # some sections only
    python benchmarks/gpu_check.py --cpu-smoke           # tiny sizes on the CPU (CI)

Sections, one function each, each stopped at its time budget (a stopped section is a failed
row); the budgets add up to 470 s and the run as a whole stops at 470 s, so with start-up it
stays under 8 minutes on one GPU. The estimates are for an H100 (≈ 2,500 img/s training and
≈ 8,000 img/s inference for ResNet-50 in bf16):

1. ``cuda tests`` (budget 120 s): ``pytest -m cuda tests`` in a subprocess (the suite's CUDA
   tests, unpinned from the CPU by the marker); passed / failed / skipped from its JUnit report.
2. ``fine-tuning`` (60 s; ≈ 35 s): images/s of calib's ``full`` method (``calib.train.train``
   through ``METHODS["full"]``) against a plain PyTorch loop and against timm's training loop
   (``train.py``'s ``train_one_epoch`` with its defaults, :data:`TIMM_SETTINGS`), all three on
   the same data and model: calib's ResNet-50 (timm's architecture, random weights: nothing
   downloads) with 1,000 classes, 224 px synthetic float32 images (512 distinct ones, cycled),
   batch 64, bf16 autocast, channels_last, pinned memory, 8 loader workers. 3 epochs of 60
   iterations each: the first is the warm-up (cuDNN autotuning, allocator), the figure is over
   the other two, each timed as calib times its epochs (from the loader's start to a
   synchronised end).
3. ``extraction`` (35 s; ≈ 15 s): images/s of ``calib.extract.extract`` over an
   ``extraction_loader`` against a plain ``torch.no_grad()`` loop over the same loader:
   8,192 uint8 224 px images (the model converts and normalises them on the GPU, so that the
   GPU and not the loader workers is measured), ResNet-50, batch 256, bf16 autocast,
   channels_last; one warm-up pass and 2 timed passes per side, interleaved.
4. ``metrics`` (90 s; ≈ 45 s): calib's metrics on CUDA tensors against torchmetrics'
   ``multiclass_accuracy`` (top-1 and top-5, micro average) at 100,000 × 1,000 and 50,000 ×
   21,843 float32 logits (S a random half of the columns): the same accuracies, the curve and
   AUSUC on CUDA bit-identical to the CPU (numpy) path, the top-5 report at γ = 0.1 equal to
   the CPU's (float64 thresholds on CUDA), ALG's γ against a float64 formula, non-negative
   (CLIP-like) logits as fast as signed ones (no N × C copy to the host). One warm-up and 2
   timed calls each, ``torch.cuda.synchronize()`` around each; the median is reported.
5. ``streaming`` (45 s; ≈ 30 s): the streaming state (``calib.metrics.streaming``) and its
   torchmetrics adapter fed the same logits in batches of 1,000 rows on CUDA, against the
   full-matrix results (curve, AUSUC and report bit for bit, ALG within rounding), with its
   memory per sample, and against torchmetrics' ``MulticlassAccuracy`` on the same batches.
6. ``CUDA behaviours`` (60 s; ≈ 35 s): what only a GPU shows (issue 24): ``amp`` resolved to
   the device's native precision, the autocast dtype training runs in for auto / bf16 / fp16,
   the head's float32 output under autocast in training and extraction (logits = features ·
   Wᵀ + b to float32 rounding), the GPU recorded in a run's meta, the stage keys carrying the
   precision resolved on the device, cuDNN autotuning on during training and put back after,
   the deterministic mode (its switches, two ResNet-50 runs bit-identical, a killed and
   resumed run bit-identical, its img/s against the default), channels-last models and inputs
   and pinned memory in extraction, SyncBatchNorm conversion keeping timm's fused activations
   (EfficientNet-Lite0) and frozen BatchNorm in eval mode, the NCCL group's timeout (with 2
   GPUs). The float64 top-k thresholds are checked in ``metrics``.
7. ``compile`` (60 s; ≈ 30 s): ``TrainConfig(compile=True)`` against the same fp32 training
   uncompiled (calib's ``digits_cnn``, 3 epochs of 40 steps): weights within rounding, the
   first epoch's time (it compiles), the steady images/s.

The table has one row per check: ``calib`` and ``reference`` are images/s (higher is better),
milliseconds (lower is better), MiB, or the values compared; ``ratio`` is calib / reference;
``result`` is ``ok``, ``FAIL: ...`` or ``skipped: ...``. The exit status is 1 when a row
failed or a section was stopped, 2 without CUDA and without ``--cpu-smoke``.

``--cpu-smoke`` runs every section but the CUDA tests and ``compile`` on the CPU at tiny sizes
(timm's ``test_resnet`` at 32 px, batch 8; 2,000 × 50 and 500 × 300 logits), so that CI keeps
the script working. Its numbers say nothing about speed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("section", "check", "calib", "reference", "ratio", "unit", "result")


# ----------------------------------------------------------------------------- sizes, rows


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the GPU run and the CPU smoke run."""

    device: str
    train_model: str
    image_size: int
    train_batch: int
    num_classes: int
    distinct_images: int
    train_iters: int  # per epoch
    train_epochs: int  # the first is the warm-up
    workers: int
    extract_model: str
    small_model: str  # the behaviour checks' classifier
    syncbn_model: str  # a model with timm's fused BatchNorm + activation
    extract_batch: int
    extract_images: int
    extract_repeat: int
    metric_sizes: tuple[tuple[int, int], ...]
    metric_repeat: int
    stream_batch: int
    budgets: dict[str, float] = field(default_factory=dict)  # seconds per section
    total_budget: float = math.inf  # seconds for all sections (a section gets what is left)


GPU_SIZES = Sizes(
    device="cuda",
    train_model="resnet50",
    image_size=224,
    train_batch=64,
    num_classes=1000,
    distinct_images=512,
    train_iters=60,
    train_epochs=3,
    workers=min(8, os.cpu_count() or 1),
    extract_model="resnet50",
    small_model="resnet18",
    syncbn_model="efficientnet_lite0",
    extract_batch=256,
    extract_images=8192,
    extract_repeat=2,
    metric_sizes=((100_000, 1_000), (50_000, 21_843)),
    metric_repeat=2,
    stream_batch=1_000,
    budgets={
        "cuda tests": 120,
        "fine-tuning": 60,
        "extraction": 35,
        "metrics": 90,
        "streaming": 45,
        "CUDA behaviours": 60,
        "compile": 60,
    },
    total_budget=470,
)

SMOKE_SIZES = Sizes(
    device="cpu",
    train_model="test_resnet",
    image_size=32,
    train_batch=8,
    num_classes=10,
    distinct_images=32,
    train_iters=2,
    train_epochs=2,
    workers=0,
    extract_model="test_resnet",
    small_model="test_resnet",
    syncbn_model="test_efficientnet",
    extract_batch=32,
    extract_images=128,
    extract_repeat=1,
    metric_sizes=((2_000, 50), (500, 300)),
    metric_repeat=1,
    stream_batch=400,
    # guards against a hang only: a CI machine shared with other jobs may be several times
    # slower than an idle one
    budgets=dict.fromkeys(
        (
            "cuda tests",
            "fine-tuning",
            "extraction",
            "metrics",
            "streaming",
            "CUDA behaviours",
            "compile",
        ),
        150,
    ),
)


@dataclass
class Row:
    """One line of the table; numbers are kept as numbers until the table is drawn."""

    section: str
    check: str
    calib: Any = None
    reference: Any = None
    unit: str = ""
    result: str = "ok"
    ratio: float | None = None

    def __post_init__(self) -> None:
        if self.ratio is None and _is_number(self.calib) and _is_number(self.reference):
            self.ratio = self.calib / self.reference if self.reference else math.inf


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def verdict(ok: bool, why: str) -> str:
    return "ok" if ok else f"FAIL: {why}"


# ----------------------------------------------------------------------------- helpers


class SectionTimeout(Exception):
    """A section ran past its budget."""


@contextlib.contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Raise :class:`SectionTimeout` in the main thread once ``seconds`` have passed."""

    def expire(signum, frame):
        raise SectionTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeat: int) -> tuple[float, Any]:
    """(median seconds over ``repeat`` calls after one warm-up call, the last result)."""
    result = fn()
    times = []
    for _ in range(repeat):
        synchronize(device)
        start = time.perf_counter()
        result = fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


@contextlib.contextmanager
def global_switches(*, cudnn_benchmark: bool | None = None, tf32: bool | None = None):
    """Set torch's global cuDNN / TF32 switches for the block; put back afterwards."""
    saved = (
        torch.backends.cudnn.benchmark,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )
    try:
        if cudnn_benchmark is not None:
            torch.backends.cudnn.benchmark = cudnn_benchmark
        if tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        yield
    finally:
        (
            torch.backends.cudnn.benchmark,
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
        ) = saved


def free(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class SyntheticImages(Dataset):
    """``len(labels)`` (image, label) pairs cycling over the rows of ``images``; ``targets``
    exposes the labels as calib's datasets do."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels
        self.targets = labels.numpy()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i % len(self.images)], self.labels[i]


def synthetic_images(sizes: Sizes, n: int, labels_from: np.ndarray, dtype: torch.dtype):
    """``n`` samples over ``sizes.distinct_images`` random images (float32 standard normal,
    or uint8), labels drawn from ``labels_from``."""
    g = torch.Generator().manual_seed(0)
    shape = (sizes.distinct_images, 3, sizes.image_size, sizes.image_size)
    if dtype == torch.uint8:
        images = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    else:
        images = torch.randn(shape, generator=g)
    pick = torch.randint(0, len(labels_from), (n,), generator=g)
    return SyntheticImages(images, torch.as_tensor(labels_from, dtype=torch.int64)[pick])


def make_model(name: str, num_classes: int, seed: int = 0) -> nn.Module:
    """calib's classifier ``name`` (a timm architecture, random weights) with ``num_classes``."""
    from calib.models import create_model

    torch.manual_seed(seed)
    return create_model(name, num_classes, pretrained=False)


def seen_half(num_classes: int) -> np.ndarray:
    """The seen classes S of the synthetic tasks: a random half of the columns, scattered."""
    rng = np.random.default_rng(0)
    return np.sort(rng.permutation(num_classes)[: num_classes // 2])


# ----------------------------------------------------------------------------- 1. CUDA tests


def check_cuda_tests(sizes: Sizes, device: torch.device, rows: list[Row], budget: float) -> None:
    """``pytest -m cuda`` in a subprocess: the counts from its JUnit XML report."""
    section = "cuda tests"
    if device.type != "cuda":
        why = "the CPU smoke run" if torch.cuda.is_available() else "no CUDA"
        rows.append(Row(section, "pytest -m cuda tests", result=f"skipped: {why}"))
        return
    if not (REPO / "tests").is_dir():
        rows.append(Row(section, "pytest -m cuda tests", result="skipped: no tests/ folder"))
        return
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        command = [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda",
            f"--junitxml={report}", "tests",
        ]  # fmt: skip
        start = time.perf_counter()
        try:
            done = subprocess.run(
                command, cwd=REPO, capture_output=True, text=True, timeout=budget - 5
            )
        except subprocess.TimeoutExpired:
            rows.append(
                Row(
                    section,
                    "pytest -m cuda tests",
                    result=f"FAIL: timeout after {budget - 5:.0f} s",
                )
            )
            return
        seconds = time.perf_counter() - start
        if not report.is_file():
            tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
            rows.append(Row(section, "pytest -m cuda tests", result=f"FAIL: {tail[0]}"))
            return
        counts, failed = junit_counts(report)
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    summary = (
        f"{passed} passed, {counts['failures'] + counts['errors']} failed, "
        f"{counts['skipped']} skipped"
    )
    ok = done.returncode == 0 and not failed and passed > 0
    if failed:
        why = ", ".join(failed[:3]) + (" ..." if len(failed) > 3 else "")
    else:
        why = "no CUDA test ran" if passed == 0 else f"pytest exited {done.returncode}"
    rows.append(
        Row(
            section,
            f"pytest -m cuda tests ({seconds:.0f} s)",
            summary,
            None,
            "tests",
            verdict(ok, why),
        )
    )


def junit_counts(report: Path) -> tuple[dict[str, int], list[str]]:
    """Totals of a JUnit XML report and the names of the failed tests."""
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {
        k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")
    }
    failed = [
        f"{case.get('classname', '')}::{case.get('name', '')}"
        for case in root.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return counts, failed


# ----------------------------------------------------------------------------- 2. fine-tuning


def check_training(sizes: Sizes, device: torch.device, rows: list[Row], budget: float) -> None:
    """Images/s of calib's ``full`` method, a plain loop and timm's loop; same data and model."""
    section = "fine-tuning"
    seen = seen_half(sizes.num_classes)
    n = sizes.train_iters * sizes.train_batch * sizes.train_epochs
    dataset = synthetic_images(sizes, n, seen, torch.float32)
    calib_rate = calib_training(sizes, dataset, seen, device)
    free(device)
    plain_rate = plain_training(sizes, dataset, device)
    free(device)
    timm_rate = timm_training(sizes, dataset, device)
    free(device)
    what = (
        f"{sizes.train_model} {sizes.image_size} px, batch {sizes.train_batch}, bf16, channels_last"
    )
    rows.append(Row(section, f"calib full vs plain loop ({what})", calib_rate, plain_rate, "img/s"))
    rows.append(Row(section, "calib full vs timm's train loop", calib_rate, timm_rate, "img/s"))


def train_config(sizes: Sizes):
    from calib.train import TrainConfig

    return TrainConfig(
        optimizer="sgd",
        epochs=sizes.train_epochs,
        iters_per_epoch=sizes.train_iters,
        batch_size=sizes.train_batch,
        amp="bf16",
        channels_last=True,
        num_workers=sizes.workers,
        seed=0,
    )


def calib_training(sizes: Sizes, dataset: Dataset, seen: np.ndarray, device) -> float:
    """Images/s of ``METHODS["full"]`` over the epochs after the first."""
    from calib.data.split import ClassSplit
    from calib.methods import METHODS, FinetuneContext
    from calib.methods.parts import state_copy
    from calib.train import train

    model = make_model(sizes.train_model, sizes.num_classes)
    histories: list[list[dict]] = []

    def train_fn(model, dataset, config, tag="finetune", loss_fn=None, on_epoch_end=None):
        result = train(
            model, dataset, config, device=device, progress=False, log=_quiet, desc=tag,
            loss_fn=loss_fn, on_epoch_end=on_epoch_end,
        )  # fmt: skip
        histories.append(result.history)
        return result

    absent = np.setdiff1d(np.arange(sizes.num_classes), seen)
    ctx = FinetuneContext(
        model=model,
        pretrained_state=state_copy(model),
        make_model=lambda: make_model(sizes.train_model, sizes.num_classes),
        dataset=dataset,
        config=train_config(sizes),
        split=ClassSplit(tuple(seen.tolist()), tuple(absent.tolist()), sizes.num_classes),
        params={},
        train=train_fn,
        device=device,
    )
    METHODS.get("full").run(ctx)
    timed_epochs = histories[-1][1:]
    images = sum(e["images_per_s"] * e["seconds"] for e in timed_epochs)
    return images / sum(e["seconds"] for e in timed_epochs)


def _quiet(line: str) -> None:
    """The trainer's log lines are not part of the table."""


def train_loader(sizes: Sizes, dataset: Dataset, device: torch.device) -> DataLoader:
    """Shuffled batches of one epoch (``train_iters`` batches), pinned on CUDA."""
    sampler = RandomSampler(
        dataset,
        num_samples=sizes.train_iters * sizes.train_batch,
        generator=torch.Generator().manual_seed(0),
    )
    return DataLoader(
        dataset,
        batch_size=sizes.train_batch,
        sampler=sampler,
        num_workers=sizes.workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
    )


def epochs_rate(sizes: Sizes, device: torch.device, run_epoch: Callable[[], None]) -> float:
    """Images/s of the epochs after the first: each timed from the loader's start to a
    synchronised end, as calib times its epochs."""
    seconds = []
    for epoch in range(sizes.train_epochs):
        synchronize(device)
        start = time.perf_counter()
        run_epoch()
        synchronize(device)
        if epoch:
            seconds.append(time.perf_counter() - start)
    return len(seconds) * sizes.train_iters * sizes.train_batch / sum(seconds)


def plain_training(sizes: Sizes, dataset: Dataset, device: torch.device) -> float:
    """The textbook loop with calib's settings: SGD (Nesterov, momentum and weight decay of
    calib's defaults), cosine schedule per step, bf16 autocast, channels_last, pinned memory,
    and cuDNN autotuning as calib's config sets it (``cudnn_benchmark``, on CUDA)."""
    cfg = train_config(sizes)
    with global_switches(cudnn_benchmark=cfg.cudnn_benchmark and device.type == "cuda"):
        return _plain_training(sizes, dataset, device, cfg)


def _plain_training(sizes: Sizes, dataset: Dataset, device: torch.device, cfg) -> float:
    model = make_model(sizes.train_model, sizes.num_classes)
    model.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=True,
        weight_decay=cfg.weight_decay,
    )
    steps = sizes.train_epochs * sizes.train_iters
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    loader = train_loader(sizes, dataset, device)

    def run_epoch() -> None:
        for x, y in loader:
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()

    return epochs_rate(sizes, device, run_epoch)


#: timm's train.py defaults (huggingface/pytorch-image-models, train.py: main() and
#: train_one_epoch) that this loop follows; the brief's settings where train.py has flags for
#: them (--amp --amp-dtype bfloat16 --channels-last --pin-mem -b 64).
TIMM_SETTINGS = (
    "timm train.py defaults: cudnn.benchmark and TF32 matmul on; SGD (timm's 'sgd' = Nesterov) "
    "momentum 0.9, weight decay 2e-5 (not on biases and norms), lr 0.1 x batch/256; "
    "LabelSmoothingCrossEntropy(0.1); cosine schedule stepped per epoch; loss.item() every "
    "step; its PrefetchLoader (side-stream copies; identity normalisation here); with "
    "--amp --amp-dtype bfloat16 --channels-last --pin-mem -b 64"
)


def timm_training(sizes: Sizes, dataset: Dataset, device: torch.device) -> float:
    """timm's ``train_one_epoch`` loop with train.py's defaults (:data:`TIMM_SETTINGS`)."""
    from timm.data.loader import PrefetchLoader
    from timm.loss import LabelSmoothingCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler

    with global_switches(cudnn_benchmark=True, tf32=True):
        model = make_model(sizes.train_model, sizes.num_classes)
        model.to(device, memory_format=torch.channels_last)
        lr = 0.1 * sizes.train_batch / 256
        optimizer = create_optimizer_v2(model, opt="sgd", lr=lr, weight_decay=2e-5, momentum=0.9)
        scheduler = CosineLRScheduler(optimizer, t_initial=sizes.train_epochs)
        loss_fn = LabelSmoothingCrossEntropy(smoothing=0.1).to(device)
        # the synthetic images are normalised already: mean 0, std 1 (timm scales by 255)
        loader = PrefetchLoader(
            train_loader(sizes, dataset, device), mean=(0.0,) * 3, std=(1 / 255,) * 3, device=device
        )
        state = {"epoch": 0, "updates": 0}

        def run_epoch() -> None:
            model.train()
            losses = []
            for x, y in loader:
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())  # train.py's losses_m.update(loss.item(), ...)
                state["updates"] += 1
                optimizer.zero_grad()
                scheduler.step_update(num_updates=state["updates"], metric=np.mean(losses))
            state["epoch"] += 1
            scheduler.step(state["epoch"])

        return epochs_rate(sizes, device, run_epoch)


# ----------------------------------------------------------------------------- 3. extraction


class FromUint8(nn.Module):
    """uint8 images → float, normalised, then ``model``: the conversion a loader would do,
    done on the device (as timm's prefetcher does)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.float().sub_(127.5).div_(64.0))


def check_extraction(sizes: Sizes, device: torch.device, rows: list[Row], budget: float) -> None:
    """Images/s of ``extract`` against a plain loop over the same ``extraction_loader``."""
    from calib.extract import extract, extraction_loader

    section = "extraction"
    labels = np.arange(sizes.num_classes)
    dataset = synthetic_images(sizes, sizes.extract_images, labels, torch.uint8)
    loader = extraction_loader(
        dataset,
        batch_size=sizes.extract_batch,
        num_workers=sizes.workers,
        pin_memory=device.type == "cuda",
    )
    model = FromUint8(make_model(sizes.extract_model, sizes.num_classes))
    model.to(device, memory_format=torch.channels_last).eval()
    amp_dtype = torch.bfloat16

    def plain() -> torch.Tensor:
        parts = []
        with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype):
            for x, _y in loader:
                x = x.to(device, non_blocking=True, memory_format=torch.channels_last)
                parts.append(model(x).float())
        return torch.cat(parts).cpu()

    def calib() -> torch.Tensor:
        out = extract(model, loader, device, amp=amp_dtype, channels_last="auto", progress=False)
        return out.logits

    sides = {"plain": plain, "calib": calib}
    out = {side: fn() for side, fn in sides.items()}  # warm-up passes
    rates: dict[str, list[float]] = {"plain": [], "calib": []}
    for r in range(sizes.extract_repeat):
        for side in ("plain", "calib") if r % 2 == 0 else ("calib", "plain"):
            synchronize(device)
            start = time.perf_counter()
            out[side] = sides[side]()
            rates[side].append(len(dataset) / (time.perf_counter() - start))
    diff = float((out["calib"] - out["plain"]).abs().max())
    scale = float(out["plain"].abs().max())
    what = f"{sizes.extract_model} {sizes.image_size} px, batch {sizes.extract_batch}, bf16"
    rows.append(
        Row(
            section,
            f"extract vs plain no_grad loop ({what}, channels_last)",
            statistics.median(rates["calib"]),
            statistics.median(rates["plain"]),
            "img/s",
        )
    )
    # the same model and autocast on both sides; cuDNN may pick other kernels per call
    tol = 1e-2 * scale + 1e-3
    rows.append(
        Row(
            section,
            "extract's logits = the plain loop's (max |diff|)",
            diff,
            tol,
            "logit",
            verdict(diff <= tol, f"differ by {diff:.3g} > {tol:.3g}"),
            ratio=math.nan,
        )
    )


# ----------------------------------------------------------------------------- 4. metrics


def synthetic_logits(n: int, c: int, device: torch.device, seed: int = 0):
    """(N, C) float32 logits with signal on the label column, labels, S (random half)."""
    g = torch.Generator(device=device).manual_seed(seed)
    labels = torch.randint(0, c, (n,), generator=g, device=device)
    logits = torch.randn((n, c), generator=g, device=device)
    logits[torch.arange(n, device=device), labels] += 2.5
    return logits, labels, seen_half(c)


def check_metrics(sizes: Sizes, device: torch.device, rows: list[Row], budget: float) -> None:
    """calib's metrics on device tensors against torchmetrics and against calib's CPU path."""
    for n, c in sizes.metric_sizes:
        metrics_at(n, c, sizes, device, rows)
        free(device)


def metrics_at(n: int, c: int, sizes: Sizes, device: torch.device, rows: list[Row]) -> None:
    from torchmetrics.functional.classification import multiclass_accuracy

    import calib
    from calib.selectors.alg import select_alg

    section = f"metrics {n:,} x {c:,}"
    z, y, seen = synthetic_logits(n, c, device)
    absent = np.setdiff1d(np.arange(c), seen)
    repeat = sizes.metric_repeat

    def tm() -> tuple[float, float]:
        top1 = multiclass_accuracy(z, y, num_classes=c, average="micro", top_k=1)
        top5 = multiclass_accuracy(z, y, num_classes=c, average="micro", top_k=5)
        return float(top1), float(top5)

    def report() -> dict:
        return calib.accuracy_report(z, y, seen, absent, gamma=0.0, topk=(1, 5))

    t_tm, (tm1, tm5) = timed(tm, device, repeat)
    t_report, rep = timed(report, device, repeat)
    # counts of two computations: equal up to an exact tie between columns (with random
    # float32 logits about one in 10^6 rows; the tie rules differ across S and U)
    d1, d5 = abs(rep["acc_all"] - tm1) * n, abs(rep["acc_all_top5"] - tm5) * n
    rows.append(
        Row(
            section,
            "accuracy_report top-1,5 (γ = 0) vs torchmetrics multiclass_accuracy top-1,5",
            t_report * 1e3,
            t_tm * 1e3,
            "ms",
        )
    )
    rows.append(
        Row(
            section,
            "  top-1 / top-5 accuracy: calib vs torchmetrics (±1 sample: an exact tie)",
            f"{rep['acc_all']:.6f} / {rep['acc_all_top5']:.6f}",
            f"{tm1:.6f} / {tm5:.6f}",
            "fraction",
            verdict(d1 < 1.5 and d5 < 1.5, f"counts differ by {d1:.0f} / {d5:.0f} samples"),
        )
    )

    def tm1_only() -> float:
        return float(multiclass_accuracy(z, y, num_classes=c, average="micro", top_k=1))

    t_tm1, _ = timed(tm1_only, device, repeat)
    t_curve, curve = timed(lambda: calib.seen_absent_curve(z, y, seen, absent), device, repeat)
    rows.append(
        Row(
            section,
            "seen_absent_curve + AUSUC vs torchmetrics top-1",
            t_curve * 1e3,
            t_tm1 * 1e3,
            "ms",
        )
    )
    z_cpu, y_cpu = z.cpu().numpy(), y.cpu().numpy()
    cpu_curve = calib.seen_absent_curve(z_cpu, y_cpu, seen, absent)
    same = curve.ausuc == cpu_curve.ausuc and all(
        np.array_equal(getattr(curve, k).cpu().numpy(), getattr(cpu_curve, k), equal_nan=True)
        for k in ("gamma", "acc_seen", "acc_absent", "acc_all")
    )
    rows.append(
        Row(
            section,
            f"  curve and AUSUC on {device.type} = on the CPU (bit for bit)",
            curve.ausuc,
            cpu_curve.ausuc,
            "AUSUC",
            verdict(same, "the device's curve differs from numpy's"),
            ratio=math.nan,
        )
    )
    # float64 thresholds: a γ that float32 cannot hold ranks the same on the device and on the CPU
    dev_rep = calib.accuracy_report(z, y, seen, absent, gamma=0.1, topk=(5,))
    cpu_rep = calib.accuracy_report(z_cpu, y_cpu, seen, absent, gamma=0.1, topk=(5,))
    keys = [k for k in cpu_rep if k.startswith("acc") or k == "hmean" or k.endswith("top5")]
    agree = all(
        dev_rep[k] == cpu_rep[k] or (np.isnan(dev_rep[k]) and np.isnan(cpu_rep[k])) for k in keys
    )
    rows.append(
        Row(
            section,
            f"  top-5 report at γ = 0.1 on {device.type} = on the CPU",
            dev_rep["acc_all_top5"],
            cpu_rep["acc_all_top5"],
            "fraction",
            verdict(agree, "a top-5 accuracy differs (γ rounded to float32?)"),
            ratio=math.nan,
        )
    )
    train_rows = torch.as_tensor(np.isin(y_cpu, seen), device=device)
    zs, ys = z[train_rows], y[train_rows]
    t_alg, (gamma, _info) = timed(lambda: select_alg(zs, ys, seen, absent), device, repeat)
    brute = alg_brute(zs, ys, seen, absent)
    rows.append(
        Row(
            section,
            "ALG γ (fit) vs torchmetrics top-1",
            t_alg * 1e3,
            t_tm1 * 1e3,
            "ms",
        )
    )
    rows.append(
        Row(
            section,
            "  ALG γ vs a float64 formula on the device",
            gamma,
            brute,
            "logit",
            verdict(
                abs(gamma - brute) <= 1e-9 * max(1.0, abs(brute)), f"|Δ| = {abs(gamma - brute):.3g}"
            ),
            ratio=math.nan,
        )
    )
    if device.type != "cuda":
        return
    # CLIP-like non-negative logits: still computed on the device, no N × C host copy
    z_pos = z - z.amin()
    t_pos, _ = timed(
        lambda: calib.accuracy_report(z_pos, y, seen, absent, topk=(1, 5)), device, repeat
    )
    rows.append(
        Row(
            section,
            "  accuracy_report on non-negative logits vs signed (no host copy: ratio ≈ 1)",
            t_pos * 1e3,
            t_report * 1e3,
            "ms",
            verdict(t_pos <= 2 * t_report + 0.05, "much slower than signed logits: a host copy?"),
        )
    )


def alg_brute(z: torch.Tensor, y: torch.Tensor, seen: np.ndarray, absent: np.ndarray) -> float:
    """ALG's γ in float64 on the device: mean over rows of (mean of S without the label −
    mean of U)."""
    zd = z.double()
    s = torch.as_tensor(seen, device=z.device)
    u = torch.as_tensor(absent, device=z.device)
    true = zd.gather(1, y[:, None])[:, 0]
    terms = (zd[:, s].sum(1) - true) / (len(seen) - 1) - zd[:, u].mean(1)
    return float(terms.mean())


# ----------------------------------------------------------------------------- 5. streaming


def check_streaming(sizes: Sizes, device: torch.device, rows: list[Row], budget: float) -> None:
    """The streaming state fed in batches against the full matrix and torchmetrics' metric."""
    for n, c in sizes.metric_sizes:
        streaming_at(n, c, sizes, device, rows)
        free(device)


def streaming_at(n: int, c: int, sizes: Sizes, device: torch.device, rows: list[Row]) -> None:
    from torchmetrics.classification import MulticlassAccuracy

    import calib
    from calib.metrics.lightning_metric import SeenAbsentMetric
    from calib.metrics.streaming import SeenAbsentState, alg_from_state
    from calib.selectors.alg import select_alg

    section = f"streaming {n:,} x {c:,}"
    z, y, seen = synthetic_logits(n, c, device)
    absent = np.setdiff1d(np.arange(c), seen)
    batches = [
        (z[i : i + sizes.stream_batch], y[i : i + sizes.stream_batch])
        for i in range(0, n, sizes.stream_batch)
    ]
    state = SeenAbsentState(c, seen, absent, topk=(5,), gammas=(0.0,))
    metrics = [
        MulticlassAccuracy(num_classes=c, average="micro", top_k=k).to(device) for k in (1, 5)
    ]

    def stream() -> tuple[dict, Any]:
        state.reset()
        for zb, yb in batches:
            state.update(zb, yb)
        return state.report(0.0, topk=(1, 5)), state.curve()

    def torchmetrics_stream() -> tuple[float, float]:
        for metric in metrics:
            metric.reset()
            for zb, yb in batches:
                metric.update(zb, yb)
        return tuple(float(m.compute()) for m in metrics)

    adapter = SeenAbsentMetric(c, seen, absent, gamma=0.0, topk=(5,)).to(device)

    def adapter_stream() -> dict:
        adapter.reset()
        for zb, yb in batches:
            adapter.update(zb, yb)
        return {k: float(v) for k, v in adapter.compute().items()}

    t_state, (rep, curve) = timed(stream, device, sizes.metric_repeat)
    t_tm, (tm1, tm5) = timed(torchmetrics_stream, device, sizes.metric_repeat)
    t_adapter, out = timed(adapter_stream, device, sizes.metric_repeat)
    rows.append(
        Row(
            section,
            f"SeenAbsentState: {len(batches)} updates + report top-1,5 + curve vs "
            "torchmetrics MulticlassAccuracy top-1,5",
            t_state * 1e3,
            t_tm * 1e3,
            "ms",
        )
    )
    rows.append(
        Row(
            section,
            "SeenAbsentMetric (torchmetrics adapter): updates + compute vs MulticlassAccuracy",
            t_adapter * 1e3,
            t_tm * 1e3,
            "ms",
        )
    )
    d1, d5 = abs(rep["acc_all"] - tm1) * n, abs(rep["acc_all_top5"] - tm5) * n
    rows.append(
        Row(
            section,
            "  top-1 / top-5 accuracy: state vs torchmetrics (±1 sample: an exact tie)",
            f"{rep['acc_all']:.6f} / {rep['acc_all_top5']:.6f}",
            f"{tm1:.6f} / {tm5:.6f}",
            "fraction",
            verdict(d1 < 1.5 and d5 < 1.5, f"counts differ by {d1:.0f} / {d5:.0f} samples"),
        )
    )
    same_adapter = out["ausuc"] == curve.ausuc and all(
        out[k] == rep[k] for k in ("acc_all", "acc_seen", "acc_absent", "acc_all_top5")
    )
    rows.append(
        Row(
            section,
            "  SeenAbsentMetric's accuracies and AUSUC = the state's",
            out["ausuc"],
            curve.ausuc,
            "AUSUC",
            verdict(same_adapter, "the adapter's numbers differ from the state's"),
            ratio=math.nan,
        )
    )
    if np.bincount(y.cpu().numpy(), minlength=c).min() > 0:  # torchmetrics' empty classes vary
        macro = MulticlassAccuracy(num_classes=c, average="macro").to(device)
        tm_macro = float(macro(z, y))
        mine = state.report(0.0, topk=(), average="macro")["acc_all"]
        rows.append(
            Row(
                section,
                "  class-balanced (macro) top-1: state vs torchmetrics",
                mine,
                tm_macro,
                "fraction",
                verdict(abs(mine - tm_macro) <= 1e-6, f"|Δ| = {abs(mine - tm_macro):.3g}"),
                ratio=math.nan,
            )
        )
    full_curve = calib.seen_absent_curve(z, y, seen, absent)
    full_rep = calib.accuracy_report(z, y, seen, absent, gamma=0.0, topk=(1, 5))
    same_curve = curve.ausuc == full_curve.ausuc and all(
        np.array_equal(getattr(curve, k), as_array(getattr(full_curve, k)), equal_nan=True)
        for k in ("gamma", "acc_seen", "acc_absent", "acc_all")
    )
    same_report = all(
        rep[k] == full_rep[k] or (np.isnan(rep[k]) and np.isnan(full_rep[k]))
        for k in full_rep
        if k.startswith("acc") or k.startswith("hmean")
    )
    rows.append(
        Row(
            section,
            "  curve, AUSUC and report top-1,5: state = full matrix (bit for bit)",
            curve.ausuc,
            full_curve.ausuc,
            "AUSUC",
            verdict(same_curve and same_report, "the streamed numbers differ from the matrix's"),
            ratio=math.nan,
        )
    )
    state_bytes = sum(a.nbytes for a in state.columns().values())
    logit_bytes = z.element_size() * z.numel()
    rows.append(
        Row(
            section,
            "  state memory vs the logits' (O(N): at most 100 bytes per sample, whatever C)",
            state_bytes / 2**20,
            logit_bytes / 2**20,
            "MiB",
            verdict(state_bytes <= 100 * n, f"{state_bytes / n:.0f} bytes per sample"),
        )
    )
    train = torch.as_tensor(np.isin(y.cpu().numpy(), seen), device=device)
    zs, ys = z[train], y[train]
    alg_state = SeenAbsentState(c, seen, absent, alg=True)
    for i in range(0, len(ys), sizes.stream_batch):
        alg_state.update(zs[i : i + sizes.stream_batch], ys[i : i + sizes.stream_batch])
    gamma, _ = alg_from_state(alg_state)
    full_gamma, _ = select_alg(zs, ys, seen, absent)
    rows.append(
        Row(
            section,
            "  ALG γ: state vs full matrix (float rounding)",
            gamma,
            full_gamma,
            "logit",
            verdict(
                abs(gamma - full_gamma) <= 1e-9 * max(1.0, abs(full_gamma)),
                f"|Δ| = {abs(gamma - full_gamma):.3g}",
            ),
            ratio=math.nan,
        )
    )


def as_array(values: Any) -> np.ndarray:
    return values.cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


# ----------------------------------------------------------------------------- 6. CUDA behaviours


def expected_auto_precision(device: torch.device) -> str:
    """What ``amp: auto`` must resolve to: bf16 where the GPU computes it natively (compute
    capability ≥ 8), else fp16; fp32 off CUDA. Read from the device, not from calib."""
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp16"


DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Killed(Exception):
    """Raised by an epoch callback to stop a training as a kill would."""


def short_training(
    sizes: Sizes,
    device: torch.device,
    model_name: str,
    image_size: int,
    iters: int,
    *,
    workers: int = 0,
    run_dir: Path | None = None,
    on_epoch_end: Callable[[int, nn.Module], None] | None = None,
    **config,
) -> tuple[dict[str, Any], nn.Module, list[dict]]:
    """A ``calib.train.train`` run of 2 epochs of ``iters`` iterations on synthetic images;
    ``(what the loss saw on its first call, the model, the history)``. The loss records the
    autocast dtype, the logits' and the head's dtype and torch's kernel switches."""
    from calib.train import TrainConfig, train

    seen: dict[str, Any] = {}

    def loss_fn(logits, y, x):
        if "logits" not in seen:  # the first call (the head's hook has run by then)
            on = torch.is_autocast_enabled(device.type)
            seen.update(
                autocast=torch.get_autocast_dtype(device.type) if on else None,
                logits=logits.dtype,
                switches=kernel_switches(),
                cublas=os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            )
        return F.cross_entropy(logits, y)

    def head(module, args, output):
        seen.setdefault("head", output.dtype)

    model = make_model(model_name, sizes.num_classes)
    handle = model.head.register_forward_hook(head)
    small = Sizes(**{**sizes.__dict__, "image_size": image_size})
    dataset = synthetic_images(
        small, iters * sizes.train_batch * 2, np.arange(sizes.num_classes), torch.float32
    )
    cfg = TrainConfig(
        epochs=2, iters_per_epoch=iters, batch_size=sizes.train_batch, num_workers=workers,
        seed=0, **config,
    )  # fmt: skip
    try:
        result = train(
            model, dataset, cfg, device=device, progress=False, log=_quiet, loss_fn=loss_fn,
            run_dir=run_dir, on_epoch_end=on_epoch_end,
        )  # fmt: skip
    finally:
        handle.remove()
    return seen, model, result.history


def kernel_switches() -> dict[str, bool]:
    """torch's process-wide kernel switches that calib's training sets and puts back."""
    return {
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "cudnn.deterministic": torch.backends.cudnn.deterministic,
        "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
    }


def name(dtype: torch.dtype | None) -> str:
    return "off" if dtype is None else str(dtype).removeprefix("torch.")


def check_behaviours(sizes: Sizes, device: torch.device, rows: list[Row], budget: float) -> None:
    """The behaviours of issue 24 that only a GPU can show (each also runs on the CPU)."""
    precision_behaviours(sizes, device, rows)
    stage_key_behaviours(device, rows)
    kernel_behaviours(sizes, device, rows)
    deterministic_behaviours(sizes, device, rows)
    extraction_behaviours(sizes, device, rows)
    sync_batchnorm_behaviours(sizes, device, rows)
    process_group_behaviours(device, rows)


def precision_behaviours(sizes: Sizes, device: torch.device, rows: list[Row]) -> None:
    """``amp`` resolved on the device; the autocast training runs in; the head in float32;
    the GPU and versions recorded in a run's meta."""
    from calib.run.run_outputs import compute_environment
    from calib.train import autocast_dtype, resolve_precision

    section = "CUDA behaviours"
    auto = expected_auto_precision(device)
    got = [resolve_precision(amp, device) for amp in ("auto", True, "off")]
    want = [auto, auto, "fp32"]
    rows.append(
        Row(
            section,
            "resolve_precision(auto / True / off) on this device (bf16 if capability ≥ 8)",
            ", ".join(got),
            ", ".join(want),
            "precision",
            verdict(got == want and autocast_dtype(auto) is DTYPES[auto], f"resolved {got}"),
        )
    )
    for amp in ("auto", "bf16", "fp16"):
        if amp == "fp16" and device.type != "cuda":
            continue  # fp16 autocast on the CPU is nothing a run does
        seen, _, _ = short_training(sizes, device, sizes.small_model, 32, 1, amp=amp)
        want_dtype = DTYPES[auto if amp == "auto" else amp]
        rows.append(
            Row(
                section,
                f"train amp={amp}: autocast dtype",
                name(seen["autocast"]),
                name(want_dtype),
                "dtype",
                verdict(seen["autocast"] == want_dtype, f"autocast in {name(seen['autocast'])}"),
            )
        )
        rows.append(
            Row(
                section,
                f"train amp={amp}: head output and logits in float32",
                f"{name(seen['head'])}, {name(seen['logits'])}",
                "float32, float32",
                "dtype",
                verdict(
                    seen["head"] == seen["logits"] == torch.float32,
                    "the head computed under autocast",
                ),
            )
        )
    env = compute_environment(device)
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        want_env = (torch.cuda.get_device_name(device), f"{major}.{minor}", True)
    else:
        want_env = (None, None, True)
    got_env = (env["gpu"], env["gpu_capability"], env["torch"] == torch.__version__)
    rows.append(
        Row(
            section,
            "results meta: the GPU, its capability and torch's version",
            f"{env['gpu']}, {env['gpu_capability']}",
            f"{want_env[0]}, {want_env[1]}",
            "",
            verdict(got_env == want_env, f"recorded {got_env}"),
        )
    )


def stage_key_behaviours(device: torch.device, rows: list[Row]) -> None:
    """The digits demo's stages planned for this device carry the precision resolved here,
    and their keys differ from the CPU's exactly when that precision is not fp32."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import calib
    from calib.run import build_plan
    from calib.run.stage_plan import plan_stages
    from calib.train import resolve_precision

    conf = Path(calib.__file__).parent / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=digits_demo", "progress=false"])
    with tempfile.TemporaryDirectory() as tmp:
        plan = build_plan(OmegaConf.to_container(cfg, resolve=True), run_dir=tmp)

    def stages(on: torch.device | str):
        return plan_stages(
            target=plan.target, split=plan.split, model_identity={"class": "m", "weights": "w"},
            finetune=plan.finetune, method=plan.method, calibration=plan.calibration,
            eval_cfg=plan.eval, source=plan.source, source_train=plan.source_train, device=on,
        )  # fmt: skip

    here, cpu = stages(device), stages("cpu")
    train_p = here.finetune.identity["settings"]["precision"]
    extract_p = sorted({s.identity["precision"] for s in here.extracts.values()})
    want_train = resolve_precision(plan.finetune.amp, device)
    want_eval = resolve_precision(plan.eval.amp, device)
    differ = here.keys()["finetune"] != cpu.keys()["finetune"]
    ok = train_p == want_train and extract_p == [want_eval] and differ == (want_train != "fp32")
    rows.append(
        Row(
            "CUDA behaviours",
            "stage keys: fine-tuning / extraction precision; key differs from the CPU's",
            f"{train_p} / {', '.join(extract_p)}; {'differs' if differ else 'same'}",
            f"{want_train} / {want_eval}; {'differs' if want_train != 'fp32' else 'same'}",
            "",
            verdict(ok, "a stage is keyed by another precision than it computes in"),
        )
    )


def kernel_behaviours(sizes: Sizes, device: torch.device, rows: list[Row]) -> None:
    """cuDNN autotuning on during a CUDA training and put back after; off when not asked."""
    section = "CUDA behaviours"
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = False
    seen = {}
    for flag in (True, False):
        seen[flag], _, _ = short_training(
            sizes, device, sizes.small_model, 32, 1, cudnn_benchmark=flag
        )
    after = torch.backends.cudnn.benchmark
    during = (seen[True]["switches"]["cudnn.benchmark"], seen[False]["switches"]["cudnn.benchmark"])
    rows.append(
        Row(
            section,
            "cudnn_benchmark True / False: cuDNN autotuning during training (CUDA only); after",
            f"{during[0]} / {during[1]}; {after}",
            f"{cuda} / False; False",
            "",
            verdict(during == (cuda, False) and not after, "the switch was wrong or leaked"),
        )
    )


def deterministic_behaviours(sizes: Sizes, device: torch.device, rows: list[Row]) -> None:
    """The deterministic mode: its switches during training and after; two runs of
    ``train_model`` bit-identical; a killed and resumed run bit-identical to an uninterrupted
    one; its images/s against the default."""
    section = "CUDA behaviours"
    before = kernel_switches()
    runs: dict[str, list] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for mode in ("deterministic", "default", "deterministic", "default"):  # interleaved
            seen, model, history = short_training(
                sizes, device, sizes.train_model, sizes.image_size,
                max(2, sizes.train_iters // 2), workers=sizes.workers, amp="auto",
                deterministic=mode == "deterministic",
            )  # fmt: skip
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            runs.setdefault(mode, []).append((seen, state, history[-1]["images_per_s"]))
            del model
            free(device)
    # torch's warn-only mode names each op it has no deterministic kernel for
    marker = " does not have a deterministic implementation"
    nondeterministic = sorted(
        {str(w.message).split(marker)[0].strip() for w in caught if marker in str(w.message)}
    )
    (seen_a, a, rate_a), (_, b, rate_b) = runs["deterministic"]
    (_, c, rate_c), (_, d, rate_d) = runs["default"]
    inside = seen_a["switches"]
    want_inside = {
        "cudnn.benchmark": False, "cudnn.deterministic": True, "deterministic algorithms": True
    }  # fmt: skip
    after = kernel_switches()
    rows.append(
        Row(
            section,
            "deterministic=True: kernel switches and CUBLAS_WORKSPACE_CONFIG inside; put back",
            f"{sum(inside.values())} of 3 on, {seen_a['cublas']}; "
            f"{'restored' if after == before else 'changed'}",
            "benchmark off, 2 on, :4096:8; restored",
            "",
            verdict(
                inside == want_inside and seen_a["cublas"] == ":4096:8" and after == before,
                f"inside {inside}, after {after}",
            ),
        )
    )
    identical = all(torch.equal(a[k], b[k]) for k in a)
    rows.append(
        Row(
            section,
            f"deterministic=True: two {sizes.train_model} runs end bit-identical",
            "identical" if identical else "differ",
            "identical",
            "",
            verdict(identical, f"not bit-identical (ops warned: {nondeterministic or 'none'})"),
        )
    )
    rows.append(
        Row(
            section,
            "deterministic=True: ops torch warned have no deterministic kernel (informational)",
            ", ".join(nondeterministic) or "none",
            "—",
            "",
        )
    )
    same = all(torch.equal(c[k], d[k]) for k in c)
    rows.append(
        Row(
            section,
            "deterministic=False: two runs (informational; CUDA's atomics usually differ)",
            "identical" if same else "differ",
            "either",
            "",
        )
    )
    rows.append(
        Row(
            section,
            f"deterministic vs default training speed ({sizes.train_model}, amp auto)",
            max(rate_a, rate_b),
            max(rate_c, rate_d),
            "img/s",
        )
    )
    resumed = resume_is_bit_identical(sizes, device)
    rows.append(
        Row(
            section,
            "deterministic=True: killed after epoch 1 and resumed = uninterrupted (bit for bit)",
            "identical" if resumed else "differ",
            "identical",
            "",
            verdict(resumed, "the resumed run's weights differ"),
        )
    )


def resume_is_bit_identical(sizes: Sizes, device: torch.device) -> bool:
    """A deterministic 2-epoch run against the same run killed in epoch 2 and resumed from its
    epoch-1 checkpoint (the callback of epoch 2 runs before that epoch's checkpoint)."""
    kill = {"armed": True}

    def killer(epoch: int, model: nn.Module) -> None:
        if epoch == 2 and kill["armed"]:
            kill["armed"] = False
            raise Killed

    def run(run_dir: Path | None, callback=None) -> dict[str, torch.Tensor]:
        _, model, _ = short_training(
            sizes, device, sizes.small_model, 32, 3, deterministic=True, run_dir=run_dir,
            on_epoch_end=callback,
        )  # fmt: skip
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}

    whole = run(None)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            run(Path(tmp), killer)
        except Killed:
            pass
        resumed = run(Path(tmp), killer)
    return not kill["armed"] and all(torch.equal(whole[k], resumed[k]) for k in whole)


def extraction_behaviours(sizes: Sizes, device: torch.device, rows: list[Row]) -> None:
    """A model trained with the default ``channels_last="auto"`` is channels-last on CUDA and
    ``extract(channels_last="auto")`` feeds it channels-last inputs; under autocast the head
    computes in float32 (logits = features · Wᵀ + b to float32 rounding); ``extraction_loader``
    pins memory by default when CUDA is present."""
    from calib.extract import extract, extraction_loader, is_channels_last

    section = "CUDA behaviours"
    cuda = device.type == "cuda"
    _, model, _ = short_training(sizes, device, sizes.small_model, 32, 1)
    dataset = synthetic_images(
        Sizes(**{**sizes.__dict__, "image_size": 32, "distinct_images": 16}),
        32,
        np.arange(sizes.num_classes),
        torch.float32,
    )
    loader = extraction_loader(dataset, batch_size=16)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    seen: list[bool] = []
    handle = first_conv.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    try:
        extract(model, loader, device, channels_last="auto", progress=False)
    finally:
        handle.remove()
    got = (is_channels_last(model), all(seen))
    rows.append(
        Row(
            section,
            "after train(channels_last='auto'): model / extract('auto') inputs channels-last",
            f"{got[0]} / {got[1]}",
            f"{cuda} / {cuda}",
            "",
            verdict(got == (cuda, cuda), f"model {got[0]}, inputs {got[1]}"),
        )
    )
    weight = model.head.weight.detach().double()
    bias = model.head.bias.detach().double()
    for dtype in (torch.bfloat16, torch.float16) if cuda else (torch.bfloat16,):
        heads = []
        hook = model.head.register_forward_hook(lambda m, i, o, h=heads: h.append(o.dtype))
        try:
            out = extract(model, loader, device, amp=dtype, features=True, progress=False)
        finally:
            hook.remove()
        exact = out.features.double().to(weight.device) @ weight.T + bias
        diff = float((out.logits.double().to(weight.device) - exact).abs().max())
        tol = 1e-5 * (1 + float(exact.abs().max()))
        rows.append(
            Row(
                section,
                f"extract amp={name(dtype)}: head output dtype; logits vs features·Wᵀ+b (max |diff|)",
                f"{name(heads[0])}; {diff:.2e}",
                f"float32; ≤ {tol:.1e}",
                "",
                verdict(heads[0] == torch.float32 and diff <= tol, f"{name(heads[0])}, {diff:.3g}"),
            )
        )
    pinned = extraction_loader(dataset).pin_memory
    want = torch.cuda.is_available()  # the rule: pinned whenever CUDA is present
    rows.append(
        Row(
            section,
            "extraction_loader pins memory by default (CUDA present)",
            str(pinned),
            str(want),
            "",
            verdict(pinned == want, f"pin_memory={pinned}"),
        )
    )


def process_group_behaviours(device: torch.device, rows: list[Row]) -> None:
    """NCCL's process-group timeout set by calib (two processes under torchrun: 2 GPUs)."""
    section = "CUDA behaviours"
    check = "init_distributed('cuda', timeout=7 min): NCCL group's timeout (2 processes)"
    if device.type != "cuda" or torch.cuda.device_count() < 2:
        rows.append(Row(section, check, result="skipped: needs 2 GPUs (torchrun, NCCL)"))
        return
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.py"
        probe.write_text(PROCESS_GROUP_PROBE)
        done = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
             "2", str(probe)],
            cwd=REPO, capture_output=True, text=True, timeout=90,
        )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("timeout ")]
    got = sorted(set(lines))
    ok = done.returncode == 0 and got == ["timeout 420.0 default 3600.0"]
    rows.append(
        Row(
            section,
            check,
            got[0].removeprefix("timeout ") if len(got) == 1 else str(got),
            "420.0 default 3600.0",
            "s",
            verdict(ok, (done.stderr.strip().splitlines() or ["no output"])[-1]),
            ratio=math.nan,
        )
    )


#: Run by each of 2 torchrun processes: the timeout calib gives the NCCL group, and its default.
PROCESS_GROUP_PROBE = """
import datetime
from calib import distributed
distributed.init_distributed("cuda", timeout=datetime.timedelta(minutes=7))
got = distributed.process_group_timeout().total_seconds()
print(f"timeout {got} default {distributed.DEFAULT_TIMEOUT.total_seconds()}", flush=True)
distributed.barrier()
"""


def sync_batchnorm_behaviours(sizes: Sizes, device: torch.device, rows: list[Row]) -> None:
    """``convert_sync_batchnorm`` on the device: timm's fused BatchNorm + activation keeps its
    activation, and BatchNorm frozen by a method stays in eval mode in ``train()``."""
    from calib.methods.parts import backbone_modules, keep_in_eval
    from calib.train import convert_sync_batchnorm

    section = "CUDA behaviours"
    model = make_model(sizes.syncbn_model, 10).to(device)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0)).to(device)
    model.eval()
    with torch.no_grad():
        before = model(x)
        undo = convert_sync_batchnorm(model)
        after = model(x)
        converted = sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
        undo()
    diff = float((after - before).abs().max())
    rows.append(
        Row(
            section,
            f"SyncBatchNorm conversion keeps timm's BatchNormAct2d ({converted} layers; max |diff|)",
            diff,
            0.0,
            "logit",
            verdict(
                converted > 0 and diff <= 1e-5 * (1 + float(before.abs().max())), f"{diff:.3g}"
            ),
            ratio=math.nan,
        )
    )
    with keep_in_eval(model, backbone_modules(model)):
        undo = convert_sync_batchnorm(model)
        try:
            model.train()
            norms = [m for m in model.backbone.modules() if isinstance(m, nn.SyncBatchNorm)]
            training = sum(m.training for m in norms)
        finally:
            undo()
    rows.append(
        Row(
            section,
            "SyncBatchNorm keeps frozen BatchNorm in eval mode (layers in train mode)",
            training,
            0,
            "layers",
            verdict(norms and training == 0, f"{training} of {len(norms)} frozen layers train"),
            ratio=math.nan,
        )
    )


# ----------------------------------------------------------------------------- 7. compile


def check_compile(sizes: Sizes, device: torch.device, rows: list[Row], budget: float) -> None:
    """``TrainConfig(compile=True)`` against the same training uncompiled (fp32): weights
    within rounding, the first epoch's time (it compiles), the steady images/s."""
    section = "compile"
    if device.type != "cuda":
        rows.append(
            Row(
                section,
                "TrainConfig(compile=True)",
                result="skipped: the CPU smoke run (inductor builds C++ for about a minute)",
            )
        )
        return
    eager, compiled = compiled_training(device, False), compiled_training(device, True)
    diff = max(float((eager[0][k].float() - compiled[0][k].float()).abs().max()) for k in eager[0])
    close = all(
        torch.allclose(compiled[0][k].float(), eager[0][k].float(), rtol=1e-3, atol=1e-4)
        for k in eager[0]
    )
    rows.append(
        Row(
            section,
            "compile=True: final weights = uncompiled (rtol 1e-3, atol 1e-4; max |diff|)",
            diff,
            1e-4,
            "",
            verdict(close, f"max |diff| {diff:.3g}"),
            ratio=math.nan,
        )
    )
    rows.append(
        Row(
            section,
            "compile=True vs uncompiled: first epoch (compiles; digits_cnn, 40 steps)",
            compiled[1][0]["seconds"],
            eager[1][0]["seconds"],
            "s",
        )
    )
    steady = [
        sum(e["images_per_s"] * e["seconds"] for e in h[1:]) / sum(e["seconds"] for e in h[1:])
        for h in (compiled[1], eager[1])
    ]
    rows.append(Row(section, "compile=True vs uncompiled: steady training speed", *steady, "img/s"))


def compiled_training(device: torch.device, compile_: bool) -> tuple[dict, list[dict]]:
    """calib's ``digits_cnn`` trained 3 epochs of 40 steps in fp32 (``compile`` on or off):
    ``(final weights on the CPU, history)``."""
    from calib.train import TrainConfig, train

    model = make_model("digits_cnn", 10)
    g = torch.Generator().manual_seed(0)
    dataset = SyntheticImages(
        torch.randn(512, 1, 16, 16, generator=g), torch.randint(0, 10, (4 * 40 * 64,), generator=g)
    )
    config = TrainConfig(
        epochs=3, iters_per_epoch=40, batch_size=64, amp="off", compile=compile_, seed=0
    )
    history = train(model, dataset, config, device=device, progress=False, log=_quiet).history
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}, history


# ----------------------------------------------------------------------------- the table


def environment(device: torch.device) -> list[tuple[str, str]]:
    """(name, value) lines above the table: the device and the library versions."""
    import timm
    import torchmetrics

    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        what = (
            f"{props.name} (compute capability {props.major}.{props.minor}, "
            f"{props.total_memory / 2**30:.0f} GiB)"
        )
        cuda = f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    else:
        what = f"CPU: {cpu_name()} ({os.cpu_count()} logical cores); no GPU (smoke run)"
        cuda = "CUDA not used"
    return [
        ("device", what),
        ("versions", f"torch {torch.__version__}, {cuda}, timm {timm.__version__}, "
         f"torchmetrics {torchmetrics.__version__}, Python {platform.python_version()}"),
        ("date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]  # fmt: skip


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not _is_number(value):
        return str(value).replace("|", "\\|")
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "—"
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:,.4g}" if abs(value) < 1e3 else f"{value:,.0f}"
    return f"{value:.3e}"


def markdown(rows: list[Row], env: list[tuple[str, str]], command: str, notes: list[str]) -> str:
    """The environment lines, the table and the notes, as Markdown."""
    lines = [f"- {k}: {v}" for k, v in env] + [f"- command: `{command}`", ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    for r in rows:
        values = (r.section, r.check, r.calib, r.reference, r.ratio, r.unit, r.result)
        lines.append("| " + " | ".join(cell(v) for v in values) + " |")
    lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main

SECTIONS: tuple[tuple[str, Callable[[Sizes, torch.device, list[Row], float], None]], ...] = (
    ("cuda tests", check_cuda_tests),
    ("fine-tuning", check_training),
    ("extraction", check_extraction),
    ("metrics", check_metrics),
    ("streaming", check_streaming),
    ("CUDA behaviours", check_behaviours),
    ("compile", check_compile),
)


def run_section(
    name: str, fn, sizes: Sizes, device: torch.device, rows: list[Row], left: float
) -> None:
    """``fn`` under its budget (at most ``left`` seconds); a timeout or an error becomes a
    failed row of the section."""
    budget = min(sizes.budgets[name], left)
    if budget < 5:
        rows.append(Row(name, "(section)", result="FAIL: the run's total budget is spent"))
        return
    start = time.perf_counter()
    print(f"gpu_check: {name} (budget {budget:.0f} s) ...", file=sys.stderr, flush=True)
    try:
        with time_budget(budget):
            fn(sizes, device, rows, budget)
    except SectionTimeout:
        rows.append(Row(name, "(section)", result=f"FAIL: stopped at its {budget:.0f} s budget"))
    except Exception as err:  # noqa: BLE001 (one broken check must not hide the others)
        rows.append(Row(name, "(section)", result=f"FAIL: {type(err).__name__}: {err}"))
    finally:
        free(device)
    print(f"gpu_check: {name} done in {time.perf_counter() - start:.0f} s", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", default="gpu_check.md", help="the table's Markdown file (default: %(default)s)"
    )
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="tiny sizes on the CPU (CI; no CUDA needed)"
    )
    parser.add_argument(
        "--only", nargs="+", choices=[n for n, _ in SECTIONS], help="run these sections only"
    )
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        sizes, device = SMOKE_SIZES, torch.device("cpu")
        torch.set_num_threads(min(2, torch.get_num_threads()))
    elif not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device here; run with --cpu-smoke for the CPU smoke run",
            file=sys.stderr,
        )
        return 2
    else:
        sizes, device = GPU_SIZES, torch.device("cuda", torch.cuda.current_device())
    rows: list[Row] = []
    start = time.perf_counter()
    for section, fn in SECTIONS:
        if args.only is None or section in args.only:
            left = sizes.total_budget - (time.perf_counter() - start)
            run_section(section, fn, sizes, device, rows, left)
    notes = [
        f"total {time.perf_counter() - start:.0f} s; ratio = calib / reference (img/s: higher "
        "is better; ms: lower is better)",
        f"timm's loop: {TIMM_SETTINGS}",
        "smoke run: tiny sizes on the CPU; its numbers say nothing about speed"
        if args.cpu_smoke
        else "sizes and per-section budgets: see the script's docstring",
    ]
    command = "python benchmarks/gpu_check.py" + (" --cpu-smoke" if args.cpu_smoke else "")
    text = markdown(rows, environment(device), command, notes)
    print(text)
    Path(args.out).write_text(text)
    failed = [r for r in rows if r.result.startswith("FAIL")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
