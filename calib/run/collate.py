"""Collate many runs (a Hydra multirun folder, a benchmark's settings) into one table.

Each run folder holds a ``results.json`` (see :mod:`calib.report`). A run is named by its
path below the collated folder (Hydra names multirun folders by their overrides, e.g.
``optimizer=adam``). The long table has one row per (run, model variant), where the
variants are pre-trained, fine-tuned and fine-tuned + γ of each selector; a closing
block averages every variant over the runs (the paper's "average" row).

:func:`paper_table` (``collate_dir(..., paper=True)``) lays the same numbers out as the
paper's tables: one block per setting (a benchmark's pairs or tasks) with the rows
pre-trained, fine-tuned and fine-tuned + γ from ALG, PCV and the oracle, the columns
Acc S/Y, U/Y, Y/Y, their harmonic mean, AUSUC and NCM accuracy, then the average over
settings.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_write_text
from .results import (
    HEADERS,
    flatten_results,
    format_cell,
    markdown_table,
    result_rows,
    rows_to_csv,
)

__all__ = [
    "find_runs",
    "long_rows",
    "mean_rows",
    "format_long_table",
    "collate_dir",
    "paper_rows",
    "paper_table",
    "DEFAULT_METRICS",
    "PAPER_METRICS",
    "PAPER_SELECTORS",
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

#: Columns of the paper-style table, in order (γ only on calibrated rows).
PAPER_METRICS: tuple[str, ...] = (
    "gamma",
    "acc_seen",
    "acc_absent",
    "acc_all",
    "hmean",
    "ausuc",
    "ncm_acc_all",
)
#: The γ selectors of the paper's tables, in row order.
PAPER_SELECTORS: tuple[str, ...] = ("alg", "pcv", "oracle")

_PAPER_HEADERS = {
    "acc_seen": "Acc S/Y",
    "acc_absent": "Acc U/Y",
    "acc_all": "Acc Y/Y",
    "ncm_acc_all": "NCM Y/Y",
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


def format_long_table(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    """A Markdown table of long rows (accuracies in %, γ in logit units)."""
    header = ["run", "model"] + [HEADERS.get(m, m) for m in metrics]
    body = [
        [str(r["run"]), str(r["variant"])] + [format_cell(m, r.get(m)) for m in metrics]
        for r in rows
    ]
    return markdown_table(header, body, n_left=2)


def _paper_labels(selectors: Sequence[str]) -> dict[str, str]:
    """``{result_rows variant: paper row label}`` in the paper's row order."""
    labels = {"pre-trained": "pre-trained", "fine-tuned": "fine-tuned"}
    for name in selectors:
        shown = name.upper() if name in ("alg", "pcv") else name
        labels[f"fine-tuned + γ ({name})"] = f"fine-tuned + γ {shown}"
    return labels


def paper_rows(
    runs: Mapping[str, Mapping[str, Any]],
    selectors: Sequence[str] = PAPER_SELECTORS,
    metrics: Sequence[str] = PAPER_METRICS,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The paper-style rows: ``(per setting, average over settings)``.

    Each row holds ``setting``, ``model`` (pre-trained, fine-tuned, fine-tuned + γ ALG, PCV,
    oracle, in that order; a selector a run did not fit is left out of its block) and the
    metrics. An average row holds ``n``, the number of settings that have the model, and each
    metric's mean over them (NaN values skipped, as in :func:`mean_rows`); γ is not averaged.
    """
    labels = _paper_labels(selectors)
    per_setting = []
    for setting, results in runs.items():
        values = dict(result_rows(results))
        for variant, label in labels.items():
            if variant in values:
                row = {"setting": setting, "model": label}
                row.update({m: values[variant].get(m) for m in metrics})
                per_setting.append(row)
    average = []
    for label in labels.values():
        group = [r for r in per_setting if r["model"] == label]
        if group:
            row = {"setting": "average", "model": label, "n": len(group)}
            row.update(
                {m: None if m == "gamma" else _mean([r.get(m) for r in group]) for m in metrics}
            )
            average.append(row)
    return per_setting, average


def paper_table(
    runs: Mapping[str, Mapping[str, Any]],
    selectors: Sequence[str] = PAPER_SELECTORS,
    metrics: Sequence[str] = PAPER_METRICS,
    title: str | None = None,
) -> str:
    """The paper-style Markdown report: one table per setting, then the average over settings.

    Accuracies and AUSUC in %, γ in logit units; "—" where a value is undefined (NaN).
    """
    per_setting, average = paper_rows(runs, selectors, metrics)
    names = [_PAPER_HEADERS.get(m, HEADERS.get(m, m)) for m in metrics]
    lines = [] if title is None else [f"## {title}", ""]
    for setting in runs:
        body = [
            [r["model"]] + [format_cell(m, r[m]) for m in metrics]
            for r in per_setting
            if r["setting"] == setting
        ]
        lines += [
            f"**{setting}** (accuracies in %)",
            "",
            markdown_table(["model", *names], body, 1),
            "",
        ]
    if len(runs) > 1:
        kept = [(m, h) for m, h in zip(metrics, names, strict=True) if m != "gamma"]
        body = [
            [r["model"], str(r["n"])] + [format_cell(m, r[m]) for m, _ in kept] for r in average
        ]
        lines += [
            f"**Average over {len(runs)} settings** (accuracies in %; n = settings averaged)",
            "",
            markdown_table(["model", "n", *(h for _, h in kept)], body, 1),
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def collate_dir(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    metrics: Sequence[str] | None = None,
    paper: bool = False,
) -> str:
    """Collate every run below ``root``; write ``<out>.csv``, ``<out>_wide.csv`` and ``<out>.md``.

    ``out`` defaults to ``root/collated``. Returns the Markdown text (runs, then means).
    With ``paper=True`` it also writes ``<out>_paper.md`` and ``<out>_paper.csv``
    (:func:`paper_table`: per setting, then averaged) and returns that table instead.
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
    if not paper:
        return text
    per_setting, average = paper_rows(runs)
    atomic_write_text(f"{prefix}_paper.csv", rows_to_csv(per_setting + average))
    table = paper_table(runs, title=f"{len(runs)} setting(s) in {root}")
    atomic_write_text(f"{prefix}_paper.md", table)
    return table
