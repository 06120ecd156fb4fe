"""Is one γ enough? The γ selectors beside ``wa``, ``bic`` and ``gla``, over tasks, methods, seeds.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/alternatives_table.py OUT \
        [--tasks digits_demo,fashion_shift] [--methods full,frozen_head,lp_ft] [--seeds 0,1,2]
    PYTHONPATH=$PWD .venv/bin/python benchmarks/alternatives_table.py OUT --table-only

Each (task, method, seed) is one run of the harness (``calib.run.build_plan`` of the composed
experiment, ``finetune.method=`` overridden, selectors alg, pcv, prior, oracle). A seed is the
fine-tuning's and the PCV splits' seed (``finetune.seed``, ``calibration.pcv.seed``): the source
("pre-trained") model is one, trained once with the run seed 0 and shared through the cache.
Runs are in ``OUT/<task>/<method>/seed<s>``; each run fits the corrections itself
(``calibration.corrections=[wa,bic,gla]``, :mod:`calib.run.correction_stage`) from its own
extractions, pseudo splits and fine-tuned model. Each run's rows go to ``OUT/<task>/<method>/seed<s>.json``; the table (mean ± std
over seeds, accuracies in %) is printed from those files, so ``--table-only`` reprints it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

CONF = Path(__file__).resolve().parent.parent / "conf"
SELECTORS = ("alg", "pcv", "prior", "oracle")
CORRECTIONS = ("wa", "bic", "gla")
DATA = {
    "none": "—",
    "alg": "fine-tuning train logits of S",
    "pcv": "PCV pseudo splits (held-out S)",
    "prior": "unlabelled target test logits",
    "oracle": "labelled target test, U included †",
    "wa": "fine-tuned head only",
    "bic": "PCV pseudo splits (held-out S)",
    "gla": "unlabelled pre-trained target test logits",
}
COST = {"gla": "2 forward passes"}
COLUMNS = (
    ("acc_all", "Y/Y"),
    ("acc_seen", "S/Y"),
    ("acc_absent", "U/Y"),
    ("hmean", "hmean"),
    ("ece", "ECE"),
    ("ausuc", "AUSUC"),
)


def compose(experiment: str, overrides: list[str]) -> dict[str, Any]:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("config", overrides=[f"experiment={experiment}", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def run_one(
    task: str, method: str, seed: int, out: Path, cache: Path, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """One harness run and every row of the table for it (the corrections fitted by the run
    itself: ``calibration.corrections``)."""
    from calib.run import build_plan

    overrides = [
        f"+finetune.seed={seed}",
        f"calibration.pcv.seed={seed}",
        f"finetune.method={method}",
        f"calibration.selectors=[{','.join(SELECTORS)}]",
        f"calibration.corrections=[{','.join(CORRECTIONS)}]",
        "progress=false",
        "eval.figures=false",
        "eval.every_epochs=0",
        f"cache_dir={cache}",
        *extra,
    ]
    plan = build_plan(compose(task, overrides), run_dir=out / task / method / f"seed{seed}")
    start = time.perf_counter()
    results = plan.run()
    seconds = time.perf_counter() - start
    prob = results["probability"]
    rows = {"none": {**results["finetuned"], "ece": prob["finetuned"]["ece"], "temperature": 1.0}}
    for name in SELECTORS:
        p = prob["calibrated"][name]
        rows[name] = {
            **results["calibrated"][name],
            "ece": p["gamma_and_T"]["ece"],
            "temperature": p["temperature"],
        }
    for name in CORRECTIONS:
        rows[name] = results["corrected"][name]
    n_test = len(plan.target.test)
    return {
        "task": task,
        "method": method,
        "seed": seed,
        "seconds": seconds,
        "n_test": n_test,
        "rows": rows,
    }


def _mean_std(values: list[float], scale: float) -> str:
    vals = [v * scale for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:.1f}"
    return f"{statistics.mean(vals):.1f} ± {statistics.stdev(vals):.1f}"


def _temperature(values: list[Any]) -> str:
    ts = [v for v in values if isinstance(v, (int, float))]
    if not ts:
        return "pair"
    if all(t == 1.0 for t in ts):
        return "1"
    return f"{statistics.mean(ts):.2f}"


def _noise(task_runs: list[dict[str, Any]]) -> str:
    """The sampling noise of one test set: the binomial standard error sqrt(p(1 − p)/n) of the
    no-correction row's accuracies (first run), in points."""
    row = task_runs[0]["rows"]["none"]
    parts = []
    for key, n_key, name in (
        ("acc_all", "n_samples", "Y/Y"),
        ("acc_seen", "n_seen", "S/Y"),
        ("acc_absent", "n_absent", "U/Y"),
    ):
        p, n = row.get(key), row.get(n_key)
        if isinstance(p, (int, float)) and isinstance(n, (int, float)) and n > 0:
            parts.append(f"{name} ±{100 * math.sqrt(p * (1 - p) / n):.1f} (n = {int(n)})")
    return "sampling noise of one test set (binomial SE at the uncorrected row): " + ", ".join(
        parts
    )


def table(out: Path) -> str:
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*/*/seed*.json"))]
    lines = []
    for task in dict.fromkeys(r["task"] for r in runs):
        task_runs = [r for r in runs if r["task"] == task]
        n_test = task_runs[0]["n_test"]
        lines += [f"**{task}** ({n_test} test samples; mean ± std over seeds, in %)", ""]
        head = ["method", "row", "seeds", *(h for _, h in COLUMNS), "T", "fitted on", "inference"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for method in dict.fromkeys(r["method"] for r in task_runs):
            group = [r for r in task_runs if r["method"] == method]
            for name in ("none", *SELECTORS, *CORRECTIONS):
                label = "no correction" if name == "none" else (
                    f"+ γ {name}" if name in SELECTORS else f"+ {name}"
                )  # fmt: skip
                cells = [method, label, str(len(group))]
                for key, _ in COLUMNS:
                    cells.append(_mean_std([r["rows"][name].get(key) for r in group], 100.0))
                cells.append(_temperature([r["rows"][name].get("temperature") for r in group]))
                cells += [DATA[name], COST.get(name, "1 forward pass")]
                lines.append("| " + " | ".join(cells) + " |")
        secs = [r["seconds"] for r in task_runs]
        lines += ["", f"run time per run: {min(secs):.0f}–{max(secs):.0f} s", _noise(task_runs), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tasks", default="digits_demo")
    parser.add_argument("--methods", default="full,frozen_head,lp_ft")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--override", action="append", default=[], help="more config overrides")
    args = parser.parse_args()
    if not args.table_only:
        cache = args.cache or args.out / "cache"
        for task in args.tasks.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                for method in args.methods.split(","):
                    path = args.out / task / method / f"seed{seed}.json"
                    if path.is_file():
                        continue
                    record = run_one(task, method, seed, args.out, cache, tuple(args.override))
                    path.write_text(json.dumps(record, default=float, indent=1))
                    print(f"{task} {method} seed {seed}: {record['seconds']:.0f} s", flush=True)
    print(table(args.out))


if __name__ == "__main__":
    main()
