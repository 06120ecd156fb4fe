"""What γ does across a sequence of fine-tunings, on the offline digits demo (CPU, a few minutes).

    python benchmarks/sequence_digits.py [--seeds 0 1 2] [--stages 0-2 0-4 0-6 0-8]
        [--no-one-shot] [--json sequence_digits.json] [--figure stages.png]
    python benchmarks/sequence_digits.py --merge seed0.json seed1.json ...   # one table

Per seed: the demo's small CNN trained on MNIST-5k (the demo's source settings: SGD, lr 0.05,
6 epochs, batch 64) is the pre-trained model; :func:`calib.sequence.finetune_sequence` then
fine-tunes it on the digits training rows of S_1 = {0, 1, 2}, the result on S_2 = {0..4}, and
so on (the demo's fine-tuning settings: SGD lr 1e-3 / head 1e-2, 8 epochs, batch 32), and
fits ALG, PCV (3 pseudo splits) and the oracle (the labelled test data: an upper bound, the
bias's size) at every stage. The control ("one-shot"): the pre-trained model fine-tuned once
on S_k's rows, the same settings — the usual single-stage setting for the same S_k (ALG and
the oracle only: PCV would triple its cost). Both are
scored on the digits test set (719 images, all ten classes).

Printed: one table per stage with the mean ± sd over the seeds of γ (logit units) and of the
accuracies in % (Acc S/Y, U/Y, Y/Y, U/U) at γ = 0 and at each selector's γ, sequence beside
one-shot. The seed sets the source training, the fine-tuning order and PCV's splits.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from calib.data.digits import digits_domain, mnist5k_domain
from calib.data.domain import dataset_targets
from calib.io import atomic_write_text
from calib.models import create_model
from calib.sequence import NO_CALIBRATION, Stage, finetune_sequence
from calib.train import TrainConfig, train

SELECTORS = ("alg", "pcv", "oracle")
ONE_SHOT = ("alg", "oracle")  # the control needs no PCV (3 more trainings per stage)
ROWS = (NO_CALIBRATION, *SELECTORS)
METRICS = (
    ("acc_seen", "S/Y"),
    ("acc_absent", "U/Y"),
    ("acc_all", "Y/Y"),
    ("acc_absent_absent", "U/U"),
)


def parse_classes(text: str) -> list[int]:
    """``"0-4"`` → [0, 1, 2, 3, 4]; ``"0,1,2"`` → [0, 1, 2]."""
    if "-" in text:
        lo, hi = (int(v) for v in text.split("-"))
        return list(range(lo, hi + 1))
    return [int(v) for v in text.split(",")]


def source_model(seed: int) -> torch.nn.Module:
    """The demo's pre-trained model: digits_cnn trained on MNIST-5k (all ten classes)."""
    torch.manual_seed(seed)
    model = create_model("digits_cnn", 10)
    cfg = TrainConfig(optimizer="sgd", lr=0.05, epochs=6, batch_size=64, seed=seed)
    train(model, mnist5k_domain().train, cfg, device="cpu", progress=False, log=lambda s: None)
    return model


def make_finetune(seed: int):
    cfg = TrainConfig(optimizer="sgd", lr=1e-3, lr_head=1e-2, epochs=8, batch_size=32, seed=seed)

    def finetune(model, data, classes):
        train(model, data, cfg, device="cpu", progress=False, log=lambda s: None)
        return model

    return finetune


def run_seed(seed: int, stage_classes: list[list[int]], one_shot: bool) -> dict[str, Any]:
    domain = digits_domain()
    labels = dataset_targets(domain.train)
    stages = [
        Stage(Subset(domain.train, np.flatnonzero(np.isin(labels, cs)).tolist()), cs)
        for cs in stage_classes
    ]
    pretrained = source_model(seed)
    finetune = make_finetune(seed)
    kw = {"pcv_options": {"seed": seed}, "progress": False, "device": "cpu"}
    out: dict[str, Any] = {"sequence": [], "one_shot": []}
    seq = finetune_sequence(pretrained, finetune, stages, domain.test, SELECTORS, **kw)
    out["sequence"] = [_numbers(r) for r in seq]
    if one_shot:
        for stage in stages:
            (r,) = finetune_sequence(pretrained, finetune, [stage], domain.test, ONE_SHOT, **kw)
            out["one_shot"].append(_numbers(r))
    return out


def _numbers(result) -> dict[str, Any]:
    return {
        "seen": result.seen_classes.tolist(),
        **{
            name: {
                "gamma": float(report["gamma"]),
                **{key: float(report[key]) for key, _ in METRICS},
            }
            for name, report in result.reports.items()
        },
    }


def _cell(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    v = np.asarray(values) * scale
    return (
        f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"
        if v.size > 1
        else f"{v[0]:.{digits}f}"
    )


def stage_tables(per_seed: list[dict[str, Any]]) -> str:
    """One markdown table per stage: rows selectors (sequence, one-shot), γ and accuracies."""
    lines = []
    n_stages = len(per_seed[0]["sequence"])
    kinds = ["sequence"] + (["one_shot"] if per_seed[0]["one_shot"] else [])
    for k in range(n_stages):
        seen = per_seed[0]["sequence"][k]["seen"]
        lines += [f"stage {k + 1}: S = {seen} ({len(per_seed)} seeds)", ""]
        lines.append("| run | γ by | γ | " + " | ".join(f"Acc {m} %" for _, m in METRICS) + " |")
        lines.append("|---" * (3 + len(METRICS)) + "|")
        for kind in kinds:
            for name in (NO_CALIBRATION, *(SELECTORS if kind == "sequence" else ONE_SHOT)):
                got = [s[kind][k][name] for s in per_seed]
                cells = [_cell([g["gamma"] for g in got], digits=2)]
                cells += [_cell([g[key] for g in got], 100.0) for key, _ in METRICS]
                lines.append(f"| {kind.replace('_', '-')} | {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def mean_reports(per_seed: list[dict[str, Any]]) -> list[dict[str, dict[str, float]]]:
    """The sequence's reports per stage, every number averaged over the seeds."""
    out = []
    for k in range(len(per_seed[0]["sequence"])):
        stage = [s["sequence"][k] for s in per_seed]
        out.append(
            {
                row: {key: float(np.mean([st[row][key] for st in stage])) for key in stage[0][row]}
                for row in ROWS
            }
        )
    return out


def write_figure(per_seed: list[dict[str, Any]], path: Path) -> None:
    """Acc S/Y, U/Y, Y/Y and γ across the stages (means over the seeds)."""
    from calib.figures.files import save_figure
    from calib.figures.stages import plot_stage_series, stage_series

    seen = [st["seen"] for st in per_seed[0]["sequence"]]
    series = stage_series(mean_reports(per_seed), seen_classes=seen)
    title = f"digits, mean of {len(per_seed)} seed(s)"
    save_figure(plot_stage_series(series, title=title), path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--stages", nargs="+", default=["0-2", "0-4", "0-6", "0-8"])
    parser.add_argument("--no-one-shot", action="store_true", help="skip the one-shot control")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    parser.add_argument("--figure", type=Path, help="draw the sequence's seed means here (PNG)")
    parser.add_argument(
        "--merge", type=Path, nargs="+", help="print the tables of these --json files together"
    )
    args = parser.parse_args(argv)
    if args.merge:
        saved = [json.loads(p.read_text()) for p in args.merge]
        per_seed = [run for s in saved for run in s["runs"]]
        print(stage_tables(per_seed))
        if args.figure:
            write_figure(per_seed, args.figure)
        return {"seeds": [x for s in saved for x in s["seeds"]], "runs": per_seed}
    if args.threads:
        torch.set_num_threads(args.threads)
    stage_classes = [parse_classes(s) for s in args.stages]
    start = time.perf_counter()
    per_seed = [run_seed(s, stage_classes, not args.no_one_shot) for s in args.seeds]
    elapsed = time.perf_counter() - start
    print(stage_tables(per_seed))
    print(f"{len(args.seeds)} seeds in {elapsed:.0f} s")
    if args.figure:
        write_figure(per_seed, args.figure)
    result = {"seeds": args.seeds, "stages": stage_classes, "runs": per_seed}
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
