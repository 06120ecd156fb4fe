"""Probability quality before and after γ, and after γ + T, from a finished run folder.

    python benchmarks/probability_demo.py RUN_DIR [--n-bins 15] [--figure reliability.png]

Reads the run's saved logits (``extract/*.pt``) and γ (``calibrators/*.json``) and prints
ECE / NLL / Brier over all test samples, S samples and U samples for: the pre-trained and
fine-tuned models, the fine-tuned model with temperature scaling alone (T fitted on the
fine-tuning training data of S), and for each selector + γ and + γ + T, where T is fitted by
NLL on the data that selector may see (:mod:`calib.temperature`):

- ``alg``: the fine-tuning training logits of the S samples (what ALG itself uses);
- ``pcv``: the held-out S data of the PCV pseudo splits, each split's pseudo-absent classes
  shifted by γ. The run folder does not store which classes each split made pseudo-absent,
  so they are redrawn with the pipeline's rule (``--pcv-seed``, ``--pcv-absent-fraction``)
  and checked: PCV is refitted on them and must give the saved γ;
- ``prior``: label-free, so T = 1 (its + γ + T row equals its + γ row);
- ``oracle``: the labelled test data (in-sample: an upper bound).

``T_S/T_U`` rows use per-group temperatures (rows predicted outside / inside U).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from calib import accuracy_report
from calib.calibrator import LogitBiasCalibrator
from calib.probability import probability_report, reliability_diagram
from calib.selectors import PseudoSplit
from calib.temperature import fit_temperature, fit_temperature_pseudo_splits

GROUPS = (("", "all"), ("_seen", "S"), ("_absent", "U"))


def load_extract(run_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    data = torch.load(run_dir / "extract" / f"{name}.pt", map_location="cpu", weights_only=False)
    return data["logits"].numpy().astype(np.float64), data["labels"].numpy()


def redraw_pseudo_splits(
    run_dir: Path,
    seen_classes: np.ndarray,
    absent_classes: np.ndarray,
    train_labels: np.ndarray,
    seed: int,
    fraction: float,
) -> list[PseudoSplit]:
    """The PCV splits of the run, their class sets redrawn as ``calib.pipeline`` draws them."""
    seen = np.intersect1d(seen_classes, train_labels)
    files = sorted((run_dir / "extract").glob("pcv_split_*_heldout.pt"))
    splits = []
    for j in range(len(files)):
        order = np.random.default_rng(seed + j).permutation(seen)
        n_absent = min(max(1, round(fraction * seen.size)), seen.size - 1)
        z, y = load_extract(run_dir, f"pcv_split_{j}_heldout")
        splits.append(
            PseudoSplit(
                logits=z,
                labels=y,
                seen_classes=np.sort(order[n_absent:]),
                absent_classes=np.union1d(order[:n_absent], absent_classes),
            )
        )
    return splits


def pseudo_splits(
    run_dir: Path, cal: LogitBiasCalibrator, train_labels: np.ndarray, seed: int, fraction: float
) -> list[PseudoSplit]:
    """The redrawn splits, checked: PCV refitted on them must give the γ the run saved."""
    splits = redraw_pseudo_splits(
        run_dir, cal.seen_classes_, cal.absent_classes_, train_labels, seed, fraction
    )
    refit = LogitBiasCalibrator(method="pcv", criterion=cal.criterion).fit(
        pseudo_splits=splits,
        seen_classes=cal.seen_classes_,
        absent_classes=cal.absent_classes_,
        num_classes=cal.num_classes_,
    )
    if not np.isclose(refit.gamma_, cal.gamma_, rtol=0, atol=1e-9):
        raise SystemExit(
            f"the redrawn PCV splits give γ = {refit.gamma_:.6f}, the run saved "
            f"{cal.gamma_:.6f}: pass the run's --pcv-seed / --pcv-absent-fraction"
        )
    return splits


def temperatures(
    name: str, cal: LogitBiasCalibrator, run_dir: Path, args: argparse.Namespace
) -> tuple[Any, Any, str]:
    """(T, (T_S, T_U), data) for selector ``name``, fitted on the data it may see."""
    seen, absent, gamma = cal.seen_classes_, cal.absent_classes_, cal.gamma_
    if name == "prior":
        return 1.0, (1.0, 1.0), "none (label-free)"
    if name == "pcv":
        train_labels = load_extract(run_dir, "finetuned_train")[1]
        splits = pseudo_splits(run_dir, cal, train_labels, args.pcv_seed, args.pcv_absent_fraction)
        return (
            fit_temperature_pseudo_splits(splits, gamma),
            fit_temperature_pseudo_splits(splits, gamma, per_group=True),
            "PCV held-out S",
        )
    if name == "alg":
        z, y = load_extract(run_dir, "finetuned_train")
        data = "fine-tuning train S"
    elif name == "oracle":
        z, y = load_extract(run_dir, "finetuned_test")
        data = "labelled test (in-sample)"
    else:
        return 1.0, (1.0, 1.0), "none"
    keep = np.isin(y, seen) if name == "alg" else np.ones(y.size, bool)
    kw = dict(absent_classes=absent, gamma=gamma, seen_classes=seen)
    return (
        fit_temperature(z[keep], y[keep], **kw),
        fit_temperature(z[keep], y[keep], per_group=True, **kw),
        data,
    )


def rows(run_dir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    cals = {
        p.stem: LogitBiasCalibrator.load(p)
        for p in sorted((run_dir / "calibrators").glob("*.json"))
    }
    order = [n for n in ("alg", "pcv", "prior", "oracle") if n in cals] + sorted(
        set(cals) - {"alg", "pcv", "prior", "oracle"}
    )
    any_cal = next(iter(cals.values()))
    seen, absent = any_cal.seen_classes_, any_cal.absent_classes_
    z_ft, y_ft = load_extract(run_dir, "finetuned_test")
    z_pre, y_pre = load_extract(run_dir, "pretrained_test")
    z_tr, y_tr = load_extract(run_dir, "finetuned_train")
    in_s = np.isin(y_tr, seen)

    def row(model, z, y, gamma, t, data):
        r = probability_report(z, y, seen, absent, gamma, t, args.n_bins)
        acc = accuracy_report(z, y, seen, absent, gamma, topk=(1,))  # T never changes it
        r |= {
            "_acc": acc["acc_all"],
            "_acc_seen": acc["acc_seen"],
            "_acc_absent": acc["acc_absent"],
        }
        t_text = f"{t:.3f}" if not isinstance(t, tuple) else f"{t[0]:.2f}/{t[1]:.2f}"
        return {"model": model, "gamma": gamma, "T": t_text, "T data": data, **r}

    out = [
        row("pre-trained", z_pre, y_pre, 0.0, 1.0, "—"),
        row("fine-tuned", z_ft, y_ft, 0.0, 1.0, "—"),
        row(
            "fine-tuned + T",
            z_ft,
            y_ft,
            0.0,
            fit_temperature(z_tr[in_s], y_tr[in_s]),
            "fine-tuning train S",
        ),
    ]
    for name in order:
        cal = cals[name]
        t, pair, data = temperatures(name, cal, run_dir, args)
        out.append(row(f"+ γ ({name})", z_ft, y_ft, cal.gamma_, 1.0, "—"))
        out.append(row(f"+ γ + T ({name})", z_ft, y_ft, cal.gamma_, t, data))
        if name != "prior":
            out.append(row(f"+ γ + T_S/T_U ({name})", z_ft, y_ft, cal.gamma_, pair, data))
    return out


def markdown(table: list[dict[str, Any]]) -> str:
    head = ["model", "γ", "T", "T fitted on"] + [
        f"{m} {g}" for m in ("ECE", "NLL", "Brier") for _, g in GROUPS
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * 9) + "|"]
    for r in table:
        cells = [r["model"], f"{r['gamma']:+.3f}", r["T"], r["T data"]]
        for key in ("ece", "nll", "brier"):
            cells += [f"{r[key + s]:.3f}" for s, _ in GROUPS]
        lines.append("| " + " | ".join(cells) + " |")
    conf = [
        "",
        "| model | conf all | acc all | conf S | acc S | conf U | acc U |",
        "|---|" + "---:|" * 6,
    ]
    for r in table:
        cells = [f"{r['confidence' + s]:.3f} | {r['_acc' + s]:.3f}" for s, _ in GROUPS]
        conf.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines + conf)


def figure(run_dir: Path, table: list[dict[str, Any]], args: argparse.Namespace) -> None:
    from calib.figures.reliability import plot_reliability_groups
    from calib.plotting import save_figure

    any_cal = LogitBiasCalibrator.load(next((run_dir / "calibrators").glob("*.json")))
    seen, absent = any_cal.seen_classes_, any_cal.absent_classes_
    z, y = load_extract(run_dir, "finetuned_test")
    picked = {r["model"]: r for r in table}
    names = ["fine-tuned", f"+ γ ({args.figure_selector})", f"+ γ + T ({args.figure_selector})"]
    if names[1] not in picked:
        raise SystemExit(
            f"--figure-selector {args.figure_selector!r}: the run has no such selector"
        )
    groups = {}
    for group in ("all", "seen", "absent"):
        groups[group] = {}
        for name in names:
            r = picked[name]
            t = (r["temperature_seen"], r["temperature_absent"])
            groups[group][name] = reliability_diagram(
                z, y, seen, absent, r["gamma"], t, args.n_bins, group=group
            )
    save_figure(plot_reliability_groups(groups, title=f"reliability: {run_dir.name}"), args.figure)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--n-bins", type=int, default=15)
    parser.add_argument("--pcv-seed", type=int, default=0, help="the run's pcv.seed")
    parser.add_argument("--pcv-absent-fraction", type=float, default=0.5)
    parser.add_argument("--figure", type=Path, help="write the reliability figure here")
    parser.add_argument("--figure-selector", default="pcv")
    parser.add_argument("--json", type=Path, help="write the table's numbers here")
    args = parser.parse_args()
    table = rows(args.run_dir, args)
    print(markdown(table))
    if args.figure:
        figure(args.run_dir, table, args)
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
