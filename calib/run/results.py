"""Results of a run and the one renderer of every calib table (Markdown and CSV).

A run's results are a plain dict (what ``results.json`` holds)::

    {"pretrained": {metric: value, ...},
     "finetuned":  {metric: value, ...},
     "calibrated": {"alg": {metric: value, ..., "gamma": γ}, "oracle": {...}, ...},
     "premise": {...},                                 # optional: calib.metrics.premise_check
     "classes": {"names": [...] | None,                # optional: the columns' names (index =
                 "seen": [...], "absent": [...]},      #   label), S and U as column indices
     "meta": {...}}                                    # optional: run settings

Metric values are fractions in [0, 1] (NaN where undefined, stored as JSON ``null``).
``meta.average`` says how the accuracies were averaged (``micro``: per sample; ``macro``:
class-balanced), and the table says so under it; ``classes`` (:func:`class_record`) maps the
columns to their names, and the table lists S and U by name under it when the names say more
than the indices (:func:`classes_line`). Results of an older version lack it.
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

from calib.class_names import describe_classes
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
    "CSV_OMITTED",
    "class_record",
    "classes_line",
    "shown_class_names",
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


#: Keys of the flattened results that the CSV files leave out: the class names (one per
#: column, up to a thousand, with spaces in them) are in ``results.json``.
CSV_OMITTED: tuple[str, ...] = ("classes.names",)


def class_record(split: Any, class_names: Sequence[str] | None) -> dict[str, Any]:
    """``results["classes"]``: ``{"names": [...] or None, "seen": [...], "absent": [...]}``.

    Args:
        split: a :class:`calib.data.ClassSplit` (anything with ``seen``, ``absent`` and
            ``num_classes``).
        class_names: one name per column (index = label), or None.

    Raises:
        ValueError: ``class_names`` has another length than the split's head.
    """
    names = None if class_names is None else [str(n) for n in class_names]
    if names is not None and len(names) != split.num_classes:
        raise ValueError(
            f"class_names has {len(names)} names but the split is for {split.num_classes} classes"
        )
    return {
        "names": names,
        "seen": [int(c) for c in split.seen],
        "absent": [int(c) for c in split.absent],
    }


def shown_class_names(class_names: Sequence[str] | None) -> Sequence[str] | None:
    """``class_names`` when they say more than the column indices; None when there are none
    or every name is its own index (the digits' ``"0"`` … ``"9"``)."""
    if class_names is None:
        return None
    if all(str(n) == str(i) for i, n in enumerate(class_names)):
        return None
    return class_names


def classes_line(results: Mapping[str, Any], limit: int = 10) -> str | None:
    """``"Classes: S = 2 classes: 0 cat, 2 dog; U = 1 class: 1 fox."`` from
    ``results["classes"]``; None without it or when its names are only the indices
    (:func:`shown_class_names`). At most ``limit`` classes of each set are listed."""
    record = results.get("classes")
    if not isinstance(record, Mapping):
        return None
    names = shown_class_names(record.get("names"))
    if names is None:
        return None
    seen = describe_classes(record["seen"], names, limit=limit)
    absent = describe_classes(record["absent"], names, limit=limit)
    return f"Classes: S = {seen}; U = {absent}."


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
    how the accuracies are averaged (when ``results["meta"]`` says: :func:`average_line`), S
    and U by name (when ``results["classes"]`` has names: :func:`classes_line`) and the premise
    check's one-line message when ``results`` has one (``results["premise"]``)."""
    rows = result_rows(results)
    present = [(k, h) for k, h in columns if any(k in m for _, m in rows)]
    header = ["model"] + [h for _, h in present]
    body = [[label] + [format_cell(k, m.get(k)) for k, _ in present] for label, m in rows]
    table = markdown_table(header, body, n_left=1)
    average = average_line(results)
    if average is not None:
        table += f"\n\n{average}"
    classes = classes_line(results)
    if classes is not None:
        table += f"\n\n{classes}"
    premise = results.get("premise")
    if isinstance(premise, Mapping) and premise.get("message"):
        table += f"\n\n{premise['message']}"
    return table if title is None else f"**{title}** (accuracies in %)\n\n{table}"


def flatten_results(
    results: Mapping[str, Any], prefix: str = "", omit: Sequence[str] = CSV_OMITTED
) -> dict[str, Any]:
    """One flat dict: ``finetuned.acc_all``, ``calibrated.alg.gamma``, ``meta.optimizer``, ...

    Lists become space-separated text; the keys in ``omit`` (dotted, from the top) are left
    out (default :data:`CSV_OMITTED`: the class names)."""
    flat: dict[str, Any] = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if name in omit:
            continue
        if isinstance(value, Mapping):
            flat.update(flatten_results(value, prefix=f"{name}.", omit=omit))
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
