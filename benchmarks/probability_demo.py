"""Probability quality before and after γ, and after γ + T, from a finished run folder.

    python benchmarks/probability_demo.py RUN_DIR [--n-bins 15] [--per-group]
        [--figure reliability.png] [--figure-selector pcv] [--json probability.json]

Reads the run's saved logits (``extract/*.pt``), calibrators (``calibrators/*.json``) and PCV
settings (``run.json``) with :func:`calib.run.saved_run.load_saved_run`, which redraws the PCV
pseudo splits by the pipeline's rule and checks them (PCV refitted on them must give the saved
γ), then prints :func:`calib.run.probability_stage.probability_results` as a table: ECE / NLL /
Brier over all test samples, S samples and U samples, for the pre-trained and fine-tuned
models and for each selector + γ and + γ + T, T fitted by NLL on the data that selector may
see (alg: fine-tuning train S; pcv: PCV held-out S; prior: none, T = 1; oracle: the labelled
test data, an upper bound). A second table sets mean confidence beside accuracy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from calib import accuracy_report
from calib.io import atomic_write_text, json_safe
from calib.run.probability_stage import (
    format_probability_table,
    probability_results,
    probability_rows,
    write_reliability_figure,
)
from calib.run.results import markdown_table
from calib.run.saved_run import SavedRun, load_saved_run

GROUPS = (("", "all"), ("_seen", "S"), ("_absent", "U"))


def confidence_table(prob: dict[str, Any], saved: SavedRun) -> str:
    """Mean top-label confidence beside accuracy (both in %), per group, for every row."""
    split = saved.split
    header = ["model"] + [f"{w} {g}" for _, g in GROUPS for w in ("conf", "acc")]
    body = []
    for label, m in probability_rows(prob):
        tag = "pretrained_test" if label == "pre-trained" else "finetuned_test"
        z, y = saved.ex[tag].logits.numpy(), saved.ex[tag].labels.numpy()
        acc = accuracy_report(z, y, split.seen, split.absent, m["gamma"], topk=(1,))
        cells = []
        for suffix, _ in GROUPS:
            cells += [
                f"{100 * m['confidence' + suffix]:.1f}",
                f"{100 * acc['acc' + (suffix or '_all')]:.1f}",
            ]
        body.append([label, *cells])
    return markdown_table(header, body)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--n-bins", type=int, default=15)
    parser.add_argument("--per-group", action="store_true", help="also fit (T_S, T_U)")
    parser.add_argument("--figure", type=Path, help="write the reliability figure here")
    parser.add_argument("--figure-selector", default=None, help="default pcv, else alg")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args(argv)
    try:
        saved = load_saved_run(args.run_dir)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"{args.run_dir}: {err}") from None
    prob = probability_results(
        saved.ex,
        saved.split,
        saved.calibrators,
        saved.pseudo_splits,
        n_bins=args.n_bins,
        per_group=args.per_group,
    )
    print(format_probability_table(prob, title=f"probabilities: {args.run_dir.name}"))
    print()
    print("mean confidence and accuracy (%)\n")
    print(confidence_table(prob, saved))
    if args.figure:
        write_reliability_figure(
            saved.ex,
            saved.split,
            saved.calibrators,
            prob,
            args.figure,
            title=f"reliability: {args.run_dir.name}",
            selector=args.figure_selector,
        )
    if args.json:
        atomic_write_text(args.json, json.dumps(json_safe(prob), indent=2) + "\n")
    return prob


if __name__ == "__main__":
    main()
