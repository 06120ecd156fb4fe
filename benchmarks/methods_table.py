"""One row per fine-tuning method and γ selector, from finished run folders.

    python benchmarks/methods_table.py DIR [DIR ...] [--selectors alg,pcv,oracle] [--check]

Every ``results.json`` below each DIR is one run (a ``calib-run -m finetune.method=...``
sweep). For each run it prints the rows "method" (the fine-tuned model, γ = 0) and
"+ γ SELECTOR" for the chosen selectors, with γ, Acc S/Y, U/Y, Y/Y, their harmonic mean,
AUSUC and NCM Y/Y (accuracies in %). Rows that use absent-class (U) labels or data are
marked: the oracle selector (labelled target test data with U) and methods that declare
``uses_absent_data`` (``oracle_all``). A second table lists WiSE-FT's α path
(``results["alpha_tradeoff"]``): its area, recomputed here by trapezoids in α order from the
stored accuracies, beside the stored area and the area of the α = 1 model's γ curve over the
same Acc S/Y range.

``--check`` recomputes every printed accuracy from the run's saved test logits
(``extract/finetuned_test.pt``) and calibrators (``calibrators/*.json``) with
:func:`calib.accuracy_report` and :func:`calib.ausuc`, and reports any disagreement.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from calib.run.paper_table import METHOD_ORDER  # the paper's comparison, then by name
from calib.run.results import format_cell, markdown_table

COLUMNS = (
    ("gamma", "γ"),
    ("acc_seen", "S/Y"),
    ("acc_absent", "U/Y"),
    ("acc_all", "Y/Y"),
    ("hmean", "hmean"),
    ("ausuc", "AUSUC"),
    ("ncm_acc_all", "NCM Y/Y"),
)
SELECTOR_LABELS = {"alg": "ALG", "pcv": "PCV", "oracle": "oracle", "prior": "prior"}


def find_runs(dirs: list[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """(run folder, results) for every results.json below the given folders, sorted by path."""
    runs = []
    for root in dirs:
        paths = sorted(root.rglob("results.json"))
        if not paths:
            raise SystemExit(f"methods_table: no results.json below {root}")
        for path in paths:
            runs.append((path.parent, json.loads(path.read_text(encoding="utf-8"))))
    return sorted(runs, key=run_order)


def run_order(run: tuple[Path, dict[str, Any]]) -> tuple[int, str, str, str]:
    meta = run[1].get("meta", {})
    method = str(meta.get("method", ""))
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    head = str((meta.get("method_params") or {}).get("head", "linear"))
    return rank, method, head, str(run[0])


def method_label(results: dict[str, Any]) -> str:
    """The method key, its non-default head, and a mark when it trains on U data."""
    meta = results.get("meta", {})
    label = str(meta.get("method", "?"))
    params = meta.get("method_params", {}) or {}
    if params.get("head", "linear") != "linear":
        label += f" [{params['head']} head]"
    if meta.get("uses_absent_data"):
        label += " (uses U data)"
    return label


def method_rows(results: dict[str, Any], selectors: list[str]) -> list[tuple[str, dict]]:
    """(row label, metrics): the fine-tuned model, then each selector that the run fitted."""
    rows = [("method", {**results["finetuned"], "gamma": 0.0})]
    uses_u = results.get("meta", {}).get("selectors", {})
    for name in selectors:
        metrics = results.get("calibrated", {}).get(name)
        if metrics is None:
            continue
        label = f"+ γ {SELECTOR_LABELS.get(name, name)}"
        if uses_u.get(name, {}).get("uses_absent_labels"):
            label += " (U labels)"
        rows.append((label, metrics))
    return rows


def main_table(runs: list[tuple[Path, dict]], selectors: list[str]) -> str:
    header = ["method", "row"] + [h for _, h in COLUMNS]
    body = []

    def start_key(results: dict) -> tuple | None:
        pre = results.get("pretrained")
        return None if pre is None else tuple(pre.get(k) for k, _ in COLUMNS[1:])

    # the pre-trained row once per distinct starting model (a cosine head differs)
    one_start = len({start_key(r) for _, r in runs}) == 1
    shown = []
    for _, results in runs:
        name = method_label(results)
        key = start_key(results)
        if key is not None and key not in shown:
            shown.append(key)
            row = "start of every run" if one_start else f"start of {name}"
            pre = results["pretrained"]
            body.append(
                ["pre-trained", row] + [format_cell(k, pre.get(k, 0.0)) for k, _ in COLUMNS]
            )
        for label, metrics in method_rows(results, selectors):
            body.append([name, label] + [format_cell(k, metrics.get(k)) for k, _ in COLUMNS])
    return markdown_table(header, body)


def trapezoid_area(x: list[float], y: list[float]) -> float:
    """Σ (x_{k+1} − x_k)(y_k + y_{k+1}) / 2 in the given order (NaN with < 2 points)."""
    if len(x) < 2:
        return float("nan")
    return sum((x[k + 1] - x[k]) * (y[k] + y[k + 1]) / 2 for k in range(len(x) - 1))


def alpha_table(runs: list[tuple[Path, dict]]) -> str | None:
    header = ["method", "α grid", "S/Y range", "α-path area", "stored", "γ-curve area (α = 1)"]
    body = []
    for _, results in runs:
        at = results.get("alpha_tradeoff")
        if not at:
            continue
        x, y = at["acc_seen"], at["acc_absent"]
        area = trapezoid_area(x, y)
        grid = f"{at['alpha'][0]:g}..{at['alpha'][-1]:g} ({len(at['alpha'])})"
        rng = f"{100 * min(x):.1f}–{100 * max(x):.1f}"
        gamma_area = at.get("gamma_area_on_alpha_range")
        body.append(
            [method_label(results), grid, rng, f"{100 * area:.2f}", f"{100 * at['area']:.2f}"]
            + [f"{100 * gamma_area:.2f}" if gamma_area is not None else "—"]
        )
    if not body:
        return None
    return markdown_table(header, body, n_left=3)


def alpha_path(runs: list[tuple[Path, dict]]) -> str | None:
    """Each WiSE-FT run's α path point by point (Acc S/Y, U/Y, Y/Y in %)."""
    lines = []
    for _, results in runs:
        at = results.get("alpha_tradeoff")
        if not at:
            continue
        body = [
            [f"{a:g}", f"{100 * s:.1f}", f"{100 * u:.1f}", f"{100 * t:.1f}"]
            for a, s, u, t in zip(
                at["alpha"], at["acc_seen"], at["acc_absent"], at["acc_all"], strict=True
            )
        ]
        lines += [
            f"α path of {method_label(results)}",
            "",
            markdown_table(["α", "S/Y", "U/Y", "Y/Y"], body, 1),
        ]
    return "\n".join(lines) if lines else None


def check_run(run_dir: Path, results: dict, selectors: list[str], tol: float = 1e-12) -> list[str]:
    """Disagreements between results.json and the metrics recomputed from the saved logits."""
    import torch

    from calib import LogitBiasCalibrator, accuracy_report, ausuc

    data = torch.load(
        run_dir / "extract" / "finetuned_test.pt", map_location="cpu", weights_only=True
    )
    z, y = data["logits"].numpy(), data["labels"].numpy()
    seen, absent = results["meta"]["seen_classes"], results["meta"]["absent_classes"]
    problems = []
    area = ausuc(z, y, seen, absent)
    for label, metrics in [("finetuned", results["finetuned"])] + [
        (n, results["calibrated"][n]) for n in selectors if n in results.get("calibrated", {})
    ]:
        gamma = 0.0
        if label != "finetuned":
            gamma = LogitBiasCalibrator.load(run_dir / "calibrators" / f"{label}.json").gamma_
            if abs(gamma - metrics["gamma"]) > tol:
                problems.append(f"{label}: γ {metrics['gamma']} saved vs {gamma} in calibrator")
        rep = accuracy_report(z, y, seen, absent, gamma=gamma, topk=(1,))
        for key in ("acc_seen", "acc_absent", "acc_all", "hmean"):
            if abs(rep[key] - metrics[key]) > tol:
                problems.append(f"{label}: {key} {metrics[key]} saved vs {rep[key]} recomputed")
        if abs(area - metrics["ausuc"]) > tol:
            problems.append(f"{label}: ausuc {metrics['ausuc']} saved vs {area} recomputed")
    return problems


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="folders holding run folders")
    parser.add_argument("--selectors", default="alg,pcv,oracle", help="comma-separated")
    parser.add_argument("--check", action="store_true", help="recompute from the saved logits")
    args = parser.parse_args(argv)
    selectors = [s for s in args.selectors.split(",") if s]
    runs = find_runs(args.dirs)
    parts = ["**Fine-tuning methods** (accuracies and AUSUC in %, γ in logit units)", ""]
    parts.append(main_table(runs, selectors))
    alpha = alpha_table(runs)
    if alpha:
        parts += ["", "**WiSE-FT α path vs γ curve** (areas in % over the path's S/Y range)", ""]
        parts += [alpha, "", alpha_path(runs) or ""]
    if args.check:
        problems = [f"{d.name}: {p}" for d, r in runs for p in check_run(d, r, selectors)]
        parts += ["", "check: " + ("all rows recomputed equal" if not problems else "")]
        parts += problems
    text = "\n".join(parts).rstrip() + "\n"
    print(text, end="")
    return text


if __name__ == "__main__":
    main()
