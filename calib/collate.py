"""Collate many runs (a Hydra multirun folder, a benchmark's settings) into one table.

Each run folder holds a ``results.json`` (see :mod:`calib.report`). A run is named by its
path below the collated folder (Hydra names multirun folders by their overrides, e.g.
``optimizer=adam``). The long table has one row per (run, model variant), where the
variants are pre-trained, fine-tuned and fine-tuned + γ of each selector; a closing
block averages every variant over the runs (the paper's "average" row).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .io import atomic_write_text
from .report import flatten_results, result_rows, rows_to_csv

__all__ = [
    "find_runs",
    "long_rows",
    "mean_rows",
    "format_long_table",
    "collate_dir",
    "DEFAULT_METRICS",
]

DEFAULT_METRICS: tuple[str, ...] = (
    "gamma",
    "acc_all",
    "acc_seen",
    "acc_absent",
    "hmean",
    "ausuc",
    "ncm_acc_all",
)

_HEADERS = {
    "gamma": "γ",
    "acc_all": "all",
    "acc_seen": "seen",
    "acc_absent": "absent",
    "hmean": "hmean",
    "acc_seen_seen": "S/S",
    "acc_absent_absent": "U/U",
    "ausuc": "AUSUC",
    "ncm_acc_all": "NCM all",
    "ncm_acc_seen": "NCM seen",
    "ncm_acc_absent": "NCM absent",
}


def find_runs(root: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``{run name: results}`` for every ``results.json`` below ``root``, sorted by name.

    Raises:
        FileNotFoundError: ``root`` is missing or holds no results.json.
        ValueError: a results.json is not valid JSON or lacks the expected keys.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    runs: dict[str, dict[str, Any]] = {}
    for path in sorted(root.rglob("results.json")):
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read {path}: {err}") from err
        if not isinstance(results, dict) or "finetuned" not in results:
            raise ValueError(f"{path} is not a calib results file (no 'finetuned' key)")
        name = str(path.parent.relative_to(root)) if path.parent != root else root.name
        runs[name] = results
    if not runs:
        raise FileNotFoundError(f"no results.json below {root}: did the runs finish?")
    return runs


def long_rows(
    runs: Mapping[str, Mapping[str, Any]], metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per (run, model variant) with the chosen metrics."""
    rows = []
    for run, results in runs.items():
        for variant, values in result_rows(results):
            row = {"run": run, "variant": variant}
            row.update({m: values.get(m) for m in metrics})
            rows.append(row)
    return rows


def _mean(values: Sequence[Any]) -> float | None:
    nums = [
        float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))
    ]
    return sum(nums) / len(nums) if nums else None


def mean_rows(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Each variant's metrics averaged over runs (NaN/missing values skipped), first-seen order."""
    variants: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        variants.setdefault(row["variant"], []).append(row)
    out = []
    for variant, group in variants.items():
        mean = {"run": f"mean of {len(group)}", "variant": variant}
        mean.update({m: _mean([r.get(m) for r in group]) for m in metrics})
        out.append(mean)
    return out


def _cell(metric: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:+.3f}" if metric == "gamma" else f"{100 * float(value):.1f}"


def format_long_table(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    """A Markdown table of long rows (accuracies in %, γ in logit units)."""
    header = ["run", "model"] + [_HEADERS.get(m, m) for m in metrics]
    body = [
        [str(r["run"]), str(r["variant"])] + [_cell(m, r.get(m)) for m in metrics] for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(cells):
        return (
            "| "
            + " | ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    rule = (
        "|"
        + "|".join("-" * (w + 2) if i < 2 else "-" * (w + 1) + ":" for i, w in enumerate(widths))
        + "|"
    )
    return "\n".join([fmt(header), rule, *map(fmt, body)])


def collate_dir(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    metrics: Sequence[str] | None = None,
) -> str:
    """Collate every run below ``root``; write ``<out>.csv``, ``<out>_wide.csv`` and ``<out>.md``.

    ``out`` defaults to ``root/collated``. Returns the Markdown text (runs, then means).
    """
    metrics = tuple(metrics or DEFAULT_METRICS)
    runs = find_runs(root)
    rows = long_rows(runs, metrics)
    means = mean_rows(rows, metrics) if len(runs) > 1 else []
    text = f"**{len(runs)} run(s) in {root}** (accuracies in %)\n\n" + format_long_table(
        rows, metrics
    )
    if means:
        text += "\n\n**Mean over runs**\n\n" + format_long_table(means, metrics)
    prefix = Path(out) if out is not None else Path(root) / "collated"
    atomic_write_text(f"{prefix}.csv", rows_to_csv(rows + means))
    wide = [{"run": name, **flatten_results(res)} for name, res in runs.items()]
    atomic_write_text(f"{prefix}_wide.csv", rows_to_csv(wide))
    atomic_write_text(f"{prefix}.md", text + "\n")
    return text
