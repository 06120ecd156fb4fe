"""Results of one run: the metrics table, ``results.json`` and its one-row CSV.

A run's results are a plain dict (what ``results.json`` holds)::

    {"pretrained": {metric: value, ...},
     "finetuned":  {metric: value, ...},
     "calibrated": {"alg": {metric: value, ..., "gamma": γ}, "oracle": {...}, ...},
     "meta": {...}}                                    # optional: run settings

Metric values are fractions in [0, 1] (NaN where undefined, stored as JSON ``null``).
Display helpers print percentages.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .io import atomic_write_json, atomic_write_text, json_safe

__all__ = [
    "TABLE_COLUMNS",
    "result_rows",
    "format_table",
    "flatten_results",
    "write_results",
]

#: (metric key, column header) shown in the printed table, in order.
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("gamma", "γ"),
    ("acc_all", "all"),
    ("acc_seen", "seen"),
    ("acc_absent", "absent"),
    ("hmean", "hmean"),
    ("acc_seen_seen", "S/S"),
    ("acc_absent_absent", "U/U"),
    ("ausuc", "AUSUC"),
    ("ncm_acc_all", "NCM all"),
)


def result_rows(results: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(row label, metrics) pairs in display order: pre-trained, fine-tuned, then each selector."""
    rows: list[tuple[str, Mapping[str, Any]]] = []
    if "pretrained" in results:
        rows.append(("pre-trained", results["pretrained"]))
    if "finetuned" in results:
        rows.append(("fine-tuned", results["finetuned"]))
    for name, metrics in results.get("calibrated", {}).items():
        rows.append((f"fine-tuned + γ ({name})", metrics))
    return rows


def _cell(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if key == "gamma":
        return f"{value:+.3f}"
    return f"{100 * value:.1f}"


def format_table(
    results: Mapping[str, Any],
    columns: Sequence[tuple[str, str]] = TABLE_COLUMNS,
    title: str | None = None,
) -> str:
    """The run's metrics as a Markdown table (accuracies in %, γ in logit units)."""
    rows = result_rows(results)
    present = [(k, h) for k, h in columns if any(k in m for _, m in rows)]
    header = ["model"] + [h for _, h in present]
    body = [[label] + [_cell(k, m.get(k)) for k, _ in present] for label, m in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "| " + " | ".join([first, *rest]) + " |"

    out = [] if title is None else [f"**{title}** (accuracies in %)", ""]
    out.append(line(header))
    out.append(
        "|" + "|".join(["-" * (widths[0] + 2)] + ["-" * (w + 1) + ":" for w in widths[1:]]) + "|"
    )
    out.extend(line(r) for r in body)
    return "\n".join(out)


def flatten_results(results: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """One flat dict: ``finetuned.acc_all``, ``calibrated.alg.gamma``, ``meta.optimizer``, ..."""
    flat: dict[str, Any] = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_results(value, prefix=f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = " ".join(str(v) for v in value)
        else:
            flat[name] = value
    return flat


def _csv_text(rows: Iterable[Mapping[str, Any]]) -> str:
    rows = list(rows)
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def write_results(results: Mapping[str, Any], run_dir: str | os.PathLike) -> dict[str, str]:
    """Write ``results.json``, ``results.csv`` (one row) and ``results.md`` atomically.

    Returns the written paths by kind.
    """
    safe = json_safe(results)
    paths = {
        "json": os.path.join(run_dir, "results.json"),
        "csv": os.path.join(run_dir, "results.csv"),
        "markdown": os.path.join(run_dir, "results.md"),
    }
    atomic_write_json(paths["json"], safe)
    atomic_write_text(paths["csv"], _csv_text([flatten_results(safe)]))
    atomic_write_text(paths["markdown"], format_table(safe) + "\n")
    return paths


def rows_to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV text for many flat rows (union of their keys as the header)."""
    return _csv_text(rows)
