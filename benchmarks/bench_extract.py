"""Extraction throughput of ``calib.extract.extract`` against a plain PyTorch loop (CPU).

    python benchmarks/bench_extract.py                         # both cases, 1 thread
    python benchmarks/bench_extract.py --case digits --repeat 15 --out results_extract.md

Both sides run the same model, in eval mode, over the same ``DataLoader`` (same dataset,
batch size and workers) and keep every batch's logits; the plain loop is::

    with torch.no_grad():
        logits = torch.cat([model(x.to(device)) for x, y in loader]).cpu()

``extract`` adds what calib needs on top: labels collected and checked, batch-shape checks,
train/eval modes restored, ``inference_mode``, an optional progress bar (off here, as in a
batch job's log). Cases:

* ``digits``: the demo's CNN (``digits_cnn``) on all 1,797 in-memory 16x16 digits images, batch
  256: a tiny model, so any per-batch overhead of ``extract`` shows;
* ``images``: ``efficientnet_lite0`` (random weights: the same compute as the ImageNet ones) on
  JPEG files read through ``ImageListDataset`` with the evaluation transform (decode, resize 256,
  centre crop 224, normalise): a fake Office-Home Clipart test list, 260 images, batch 32; the
  data-loading path of the real benchmarks.

Each repeat times both sides back to back, alternating which goes first, after one untimed
warm-up pass each; the table gives the median and best images/s and the ratio of medians
(extract / plain; the goal is >= 0.95). The logits of both sides are checked to be equal.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from calib.extract import extract


def plain_loop(model: nn.Module, loader: DataLoader, device: torch.device) -> torch.Tensor:
    """The textbook loop: ``no_grad``, forward each batch, concatenate the logits."""
    model.eval()
    parts = []
    with torch.no_grad():
        for x, _y in loader:
            parts.append(model(x.to(device, non_blocking=True)))
    return torch.cat(parts).cpu()


def calib_loop(model: nn.Module, loader: DataLoader, device: torch.device) -> torch.Tensor:
    return extract(model, loader, device, progress=False).logits


@dataclass
class Case:
    name: str
    description: str
    model: nn.Module
    dataset: Dataset
    batch_size: int


def digits_case() -> Case:
    from calib.data import DATASETS
    from calib.models import create_model

    domain = DATASETS.get("digits")()
    torch.manual_seed(0)
    return Case(
        "digits",
        "digits_cnn, 1,797 in-memory 16x16 images",
        create_model("digits_cnn", 10),
        ConcatDataset([domain.train, domain.test]),
        256,
    )


def images_case(tmp: str, n_per_class: int) -> Case:
    from calib.data import DATASETS
    from calib.data.fake import make_fake_root
    from calib.models import create_model

    fake = make_fake_root(
        "office_home", tmp, n_per_class=n_per_class, classes=range(65), size=256, domains=["Cl"]
    )
    domain = DATASETS.get("office_home")(domain="Clipart", size=224, **fake.builder_kwargs)
    torch.manual_seed(0)
    return Case(
        "images",
        f"efficientnet_lite0, {len(domain.test)} JPEG files 256x256 -> 224 eval transform",
        create_model("efficientnet_lite0", 65, pretrained=False),
        domain.test,
        32,
    )


def measure(
    case: Case, workers: int, repeat: int, device: torch.device
) -> tuple[list[float], list[float]]:
    """Images/s of the plain loop and of ``extract``, ``repeat`` times each, interleaved."""
    loader = DataLoader(
        case.dataset, batch_size=case.batch_size, shuffle=False, num_workers=workers
    )
    model = case.model.to(device)
    n = len(case.dataset)
    sides: dict[str, Callable[[], torch.Tensor]] = {
        "plain": lambda: plain_loop(model, loader, device),
        "calib": lambda: calib_loop(model, loader, device),
    }
    reference = sides["plain"]()  # warm-up passes, and the equality check
    torch.testing.assert_close(sides["calib"](), reference)
    rates: dict[str, list[float]] = {"plain": [], "calib": []}
    for r in range(repeat):
        for side in ("plain", "calib") if r % 2 == 0 else ("calib", "plain"):
            start = time.perf_counter()
            sides[side]()
            rates[side].append(n / (time.perf_counter() - start))
    return rates["plain"], rates["calib"]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0]} ({len(names)} cores)" if names else platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=["digits", "images", "all"], default="all")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--workers", type=int, nargs="+", default=[0], help="DataLoader workers")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-per-class", type=int, default=4, help="images case: per class")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="also write the table (Markdown) to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        if args.case in ("digits", "all"):
            cases.append(digits_case())
        if args.case in ("images", "all"):
            cases.append(images_case(tmp, args.n_per_class))
        for case in cases:
            for workers in args.workers:
                plain, ours = measure(case, workers, args.repeat, device)
                med_p, med_c = statistics.median(plain), statistics.median(ours)
                rows.append(
                    f"| {case.name} | {case.description} | {case.batch_size} | {workers} | "
                    f"{med_p:,.0f} ({max(plain):,.0f}) | {med_c:,.0f} ({max(ours):,.0f}) | "
                    f"{med_c / med_p:.3f} |"
                )
                print(rows[-1], flush=True)

    cpu = _cpu_name()
    header = [
        f"Command: `python benchmarks/bench_extract.py --case {args.case} --repeat {args.repeat} "
        f"--workers {' '.join(map(str, args.workers))} --threads {args.threads} "
        f"--n-per-class {args.n_per_class}`",
        f"Measured {datetime.date.today().isoformat()} on {cpu}, {device}, "
        f"{args.threads} torch thread(s), torch {torch.__version__}, Python "
        f"{platform.python_version()}; {args.repeat} interleaved repeats per side.",
        "",
        "| case | model and data | batch | workers | plain loop img/s median (best) "
        "| calib extract img/s median (best) | ratio of medians |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    table = "\n".join(header + rows) + "\n"
    print()
    print(table)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(table)


if __name__ == "__main__":
    main()
