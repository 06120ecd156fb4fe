"""Results of a run and the one renderer of every calib table (Markdown and CSV).

A run's results are a plain dict (what ``results.json`` holds)::

    {"pretrained": {metric: value, ...},
     "finetuned":  {metric: value, ...},
     "calibrated": {"alg": {metric: value, ..., "gamma": γ}, "oracle": {...}, ...},
     "premise": {...},                                 # optional: calib.metrics.premise_check
     "meta": {...}}                                    # optional: run settings

Metric values are fractions in [0, 1] (NaN where undefined, stored as JSON ``null``).
``meta.average`` says how the accuracies were averaged (``micro``: per sample; ``macro``:
class-balanced), and the table says so under it.
Display helpers print percentages. :func:`format_cell`, :data:`HEADERS` and
:func:`markdown_table` are the single place a metric becomes a table cell: the run's table,
``calib-collate`` and the paper-style tables all go through them.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from calib.io import atomic_write_json, atomic_write_text, json_safe

__all__ = [
    "HEADERS",
    "TABLE_COLUMNS",
    "format_cell",
    "markdown_table",
    "rows_to_csv",
    "result_rows",
    "format_table",
    "AVERAGE_TEXT",
    "flatten_results",
    "write_results",
]

#: Short column header of each metric key (a key without one is shown as itself).
HEADERS: dict[str, str] = {
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

#: (metric key, column header) shown in the printed table, in order.
TABLE_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (k, HEADERS[k])
    for k in (
        "gamma",
        "acc_all",
        "acc_seen",
        "acc_absent",
        "hmean",
        "acc_seen_seen",
        "acc_absent_absent",
        "ausuc",
        "ncm_acc_all",
    )
)


#: How the table names the average of its accuracies (``results["meta"]["average"]``).
AVERAGE_TEXT: dict[str, str] = {
    "micro": "per-sample accuracies (micro average)",
    "macro": "class-balanced accuracies (macro average: the mean over the classes of each "
    "group of the per-class accuracy)",
}


def average_line(results: Mapping[str, Any]) -> str | None:
    """The line that says how ``results``' accuracies are averaged; None when ``meta`` does
    not say (results of a version before ``eval.average``)."""
    meta = results.get("meta")
    average = meta.get("average") if isinstance(meta, Mapping) else None
    if average is None:
        return None
    if average not in AVERAGE_TEXT:
        raise ValueError(
            f"results meta.average must be one of {tuple(AVERAGE_TEXT)}, got {average!r}"
        )
    return f"Accuracies: {AVERAGE_TEXT[average]}."


def result_rows(results: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(row label, metrics) pairs in display order: pre-trained, fine-tuned, each selector, then
    each post-hoc correction (``results["corrected"]``, no γ)."""
    rows: list[tuple[str, Mapping[str, Any]]] = []
    if "pretrained" in results:
        rows.append(("pre-trained", results["pretrained"]))
    if "finetuned" in results:
        rows.append(("fine-tuned", results["finetuned"]))
    for name, metrics in results.get("calibrated", {}).items():
        rows.append((f"fine-tuned + γ ({name})", metrics))
    for name, metrics in results.get("corrected", {}).items():
        rows.append((f"fine-tuned + {name} (correction)", metrics))
    return rows


def format_cell(key: str, value: Any) -> str:
    """A metric as a table cell: "—" when undefined, γ with sign in logit units, else percent."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if key == "gamma":
        return f"{float(value):+.3f}"
    if isinstance(value, str):
        return value
    return f"{100 * float(value):.1f}"


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]], n_left: int = 1) -> str:
    """A Markdown table: the first ``n_left`` columns left-aligned, the others right-aligned."""
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(cells: Sequence[str]) -> str:
        padded = [
            c.ljust(w) if i < n_left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|".join(
        "-" * (w + 2) if i < n_left else "-" * (w + 1) + ":" for i, w in enumerate(widths)
    )
    return "\n".join([fmt(header), f"|{rule}|", *map(fmt, body)])


def format_table(
    results: Mapping[str, Any],
    columns: Sequence[tuple[str, str]] = TABLE_COLUMNS,
    title: str | None = None,
) -> str:
    """The run's metrics as a Markdown table (accuracies in %, γ in logit units); under it,
    how the accuracies are averaged (when ``results["meta"]`` says: :func:`average_line`) and
    the premise check's one-line message when ``results`` has one (``results["premise"]``)."""
    rows = result_rows(results)
    present = [(k, h) for k, h in columns if any(k in m for _, m in rows)]
    header = ["model"] + [h for _, h in present]
    body = [[label] + [format_cell(k, m.get(k)) for k, _ in present] for label, m in rows]
    table = markdown_table(header, body, n_left=1)
    average = average_line(results)
    if average is not None:
        table += f"\n\n{average}"
    premise = results.get("premise")
    if isinstance(premise, Mapping) and premise.get("message"):
        table += f"\n\n{premise['message']}"
    return table if title is None else f"**{title}** (accuracies in %)\n\n{table}"


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


def rows_to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV text for many flat rows (the union of their keys as the header)."""
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
    atomic_write_text(paths["csv"], rows_to_csv([flatten_results(safe)]))
    atomic_write_text(paths["markdown"], format_table(safe) + "\n")
    return paths
