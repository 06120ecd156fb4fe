"""The paper-style table of many runs: per setting, one block of rows per fine-tuning method.

A *setting* is a benchmark's pair or task: the run's name (``meta.config.name``, else
``meta.name``, else its folder). Within a setting the runs are split by their fine-tuning
method (``meta.method``; a run without one is ``full``), and each method gives a block::

    pre-trained                       (once per setting)
    full            full + γ ALG      full + γ PCV      full + γ oracle †
                    full + WA         full + BiC        full + GLA     (the post-hoc corrections
                                                                        a run fitted)
    lora            lora + γ ALG      lora + γ PCV      lora + γ oracle †
    oracle_all †    oracle_all † + γ ALG ...

with the columns Acc S/Y, U/Y, Y/Y, their harmonic mean, AUSUC and NCM accuracy; ``†`` marks
a row that used labels of the absent classes U (the oracle γ, a method trained on U's data):
an upper bound, not a method. Runs of one (setting, method) that differ in another swept key
(``optimizer=adam``) get one block each, labelled by it; runs that differ only in the seed
are averaged (γ included) and counted in ``n_runs``. The average over settings closes the
report (``n`` = the settings that have the row; γ is not averaged).

The corrections' rows (``results["corrected"]``, :mod:`calib.run.correction_stage`) follow
the γ rows of their block; γ is empty there (a correction is not an additive γ). None of them
reads a U label (``gla`` reads unlabelled target logits, the ``prior`` selector's data).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from calib.run.identity import NON_IDENTITY_KEYS
from calib.run.results import HEADERS, format_cell, markdown_table, result_rows

__all__ = [
    "PAPER_METRICS",
    "PAPER_SELECTORS",
    "PAPER_CORRECTIONS",
    "U_LABELS_MARK",
    "METHOD_ORDER",
    "run_method",
    "run_setting",
    "paper_rows",
    "paper_table",
]

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
#: The post-hoc corrections, in row order after the γ rows, with their row labels.
PAPER_CORRECTIONS: tuple[str, ...] = ("wa", "bic", "gla")
_CORRECTION_LABELS = {"wa": "WA", "bic": "BiC", "gla": "GLA"}
#: Appended to the label of a row that used labels of U.
U_LABELS_MARK = "†"
#: Methods in the order of the paper's comparison (others follow, alphabetically).
METHOD_ORDER: tuple[str, ...] = (
    "full",
    "frozen_head",
    "linear_probe",
    "lp_ft",
    "wise_ft",
    "distill_absent",
    "lora",
    "oracle_all",
)

_PAPER_HEADERS = {
    "acc_seen": "Acc S/Y",
    "acc_absent": "Acc U/Y",
    "acc_all": "Acc Y/Y",
    "ncm_acc_all": "NCM Y/Y",
}
_FOOTNOTE = (
    f"{U_LABELS_MARK} uses labels of the absent classes U (the oracle γ is chosen on labelled "
    "U test data; `oracle_all` fine-tunes on U's training data): an upper bound, not a method."
)


def _meta(results: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = results.get("meta")
    return meta if isinstance(meta, Mapping) else {}


def run_method(results: Mapping[str, Any]) -> tuple[str, bool]:
    """``(method key, whether it trained on U's data)`` of a run: ``meta.method`` (a key, or a
    mapping with ``name`` and ``uses_absent_data`` as :meth:`MethodSpec.describe` gives);
    ``("full", False)`` without one. For a bare key the flag is
    ``meta.method_uses_absent_data`` when recorded, else true for ``oracle_all`` only."""
    method = _meta(results).get("method")
    if isinstance(method, Mapping):
        name = str(method.get("name") or "full")
        uses = method.get("uses_absent_data")
        return name, bool(uses) if uses is not None else name == "oracle_all"
    name = str(method) if method else "full"
    return name, bool(_meta(results).get("method_uses_absent_data", name == "oracle_all"))


def run_setting(name: str, results: Mapping[str, Any]) -> str:
    """The setting of a run: ``meta.config.name``, else ``meta.name``, else the run's name."""
    meta = _meta(results)
    config = meta.get("config")
    setting = config.get("name") if isinstance(config, Mapping) else None
    return str(setting or meta.get("name") or name)


def _selector_uses_u(results: Mapping[str, Any], selector: str) -> bool:
    info = (_meta(results).get("selectors") or {}).get(selector)
    if isinstance(info, Mapping) and "uses_absent_labels" in info:
        return bool(info["uses_absent_labels"])
    return selector == "oracle"


def _mean(values: Sequence[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(nums) / len(nums) if nums else None


def _same(a: Mapping[str, Any], b: Mapping[str, Any], metrics: Sequence[str]) -> bool:
    def eq(x: Any, y: Any) -> bool:
        if x is None or y is None:
            return x is y
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)

    return all(eq(a.get(m), b.get(m)) for m in metrics if m != "gamma")


def _blocks(
    runs: Mapping[str, Mapping[str, Any]],
) -> dict[str, dict[tuple[str, str], list[str]]]:
    """``{setting: {(method, block label): [run names]}}``; a block's runs differ by seed only."""
    from calib.run.sweep_groups import group_runs

    by_method: dict[str, dict[str, list[str]]] = {}
    for name, results in runs.items():
        method, _ = run_method(results)
        by_method.setdefault(run_setting(name, results), {}).setdefault(method, []).append(name)
    blocks: dict[str, dict[tuple[str, str], list[str]]] = {}
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    for setting, methods in by_method.items():
        out = blocks.setdefault(setting, {})
        for method in sorted(methods, key=lambda m: (rank.get(m, len(rank)), m)):
            names = methods[method]
            try:
                members = {n: runs[n] for n in names}
                groups = group_runs(members, metrics=(), ignore_keys=(*NON_IDENTITY_KEYS, "name"))
                parts = [(g.label, list(g.runs)) for g in groups]
            except ValueError:  # runs without meta.config: one block per run when several
                parts = [("all runs", names)] if len(names) == 1 else [(n, [n]) for n in names]
            for label, members in parts:
                out[(method, method if label == "all runs" else f"{method} ({label})")] = members
    return blocks


def _variant(results: Mapping[str, Any], variant: str) -> Mapping[str, Any] | None:
    """The metrics of one row of a run: a result row, or ``("corrected", name)``."""
    if isinstance(variant, tuple):
        corrected = results.get("corrected")
        return corrected.get(variant[1]) if isinstance(corrected, Mapping) else None
    return dict(result_rows(results)).get(variant)


def _row(setting, method, label, names, runs, variant, metrics, uses_u) -> dict[str, Any] | None:
    values = [_variant(runs[n], variant) for n in names]
    values = [v for v in values if v is not None]
    if not values:
        return None
    row = {"setting": setting, "method": method, "model": label, "n_runs": len(values)}
    row.update({m: _mean([v.get(m) for v in values]) for m in metrics})
    row["uses_absent_labels"] = uses_u
    return row


def paper_rows(
    runs: Mapping[str, Mapping[str, Any]],
    selectors: Sequence[str] = PAPER_SELECTORS,
    metrics: Sequence[str] = PAPER_METRICS,
    corrections: Sequence[str] = PAPER_CORRECTIONS,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The paper-style rows: ``(per setting, average over settings)``.

    A per-setting row holds ``setting``, ``method``, ``model`` (its label, ``†`` when it used
    U labels), ``n_runs`` (seeds averaged), the metrics (means over those runs; NaN values
    skipped, ``None`` when none is finite) and ``uses_absent_labels``. The pre-trained row comes
    once per setting (from the first block); a block whose pre-trained model differs (e.g. a
    cosine head) gets its own ``<method> pre-trained`` row. A selector a block did not fit is
    left out, as is a correction it did not fit (``corrections``: their keys, rows after the
    γ rows; γ stays empty on them). An average row holds ``n``, the number of settings that have the row, and each
    metric's mean over them; γ is not averaged.
    """
    mark = f" {U_LABELS_MARK}"
    per_setting: list[dict[str, Any]] = []
    for setting, blocks in _blocks(runs).items():
        base = None
        for (method, label), names in blocks.items():
            uses_data = any(run_method(runs[n])[1] for n in names)
            shown = label + (mark if uses_data else "")
            pre = _row(setting, method, "pre-trained", names, runs, "pre-trained", metrics, False)
            if pre is not None and base is None:
                base = pre
                per_setting.append(pre)
            elif pre is not None and not _same(pre, base, metrics):
                per_setting.append({**pre, "model": f"{shown} pre-trained"})
            ft = _row(setting, method, shown, names, runs, "fine-tuned", metrics, uses_data)
            per_setting += [ft] if ft is not None else []
            for sel in selectors:
                uses = uses_data or any(_selector_uses_u(runs[n], sel) for n in names)
                sel_label = f"{label}{mark if uses_data else ''} + γ "
                sel_label += (sel.upper() if sel in ("alg", "pcv") else sel) + (
                    mark if uses and not uses_data else ""
                )
                variant = f"fine-tuned + γ ({sel})"
                row = _row(setting, method, sel_label, names, runs, variant, metrics, uses)
                per_setting += [row] if row is not None else []
            for key in corrections:
                corr_label = f"{shown} + {_CORRECTION_LABELS.get(key, key)}"
                row = _row(setting, method, corr_label, names, runs, ("corrected", key),
                           metrics, uses_data)  # fmt: skip
                if row is not None:
                    row["gamma"] = None
                    per_setting.append(row)
    average = []
    for label in dict.fromkeys(r["model"] for r in per_setting):
        group = [r for r in per_setting if r["model"] == label]
        row = {"setting": "average", "method": group[0]["method"], "model": label}
        row["n"] = len(group)
        row.update({m: None if m == "gamma" else _mean([r.get(m) for r in group]) for m in metrics})
        row["uses_absent_labels"] = group[0]["uses_absent_labels"]
        average.append(row)
    return per_setting, average


def paper_table(
    runs: Mapping[str, Mapping[str, Any]],
    selectors: Sequence[str] = PAPER_SELECTORS,
    metrics: Sequence[str] = PAPER_METRICS,
    title: str | None = None,
    corrections: Sequence[str] = PAPER_CORRECTIONS,
) -> str:
    """The paper-style Markdown report: one table per setting (a block of rows per method),
    then the average over settings when there are several, then the ``†`` footnote.

    Accuracies and AUSUC in %, γ in logit units; "—" where a value is undefined (NaN).
    """
    per_setting, average = paper_rows(runs, selectors, metrics, corrections)
    names = [_PAPER_HEADERS.get(m, HEADERS.get(m, m)) for m in metrics]
    seeds = any(r["n_runs"] > 1 for r in per_setting)
    lines = [] if title is None else [f"## {title}", ""]
    settings = list(dict.fromkeys(r["setting"] for r in per_setting))
    for setting in settings:
        rows = [r for r in per_setting if r["setting"] == setting]
        body = [
            [r["model"], *([str(r["n_runs"])] if seeds else [])]
            + [format_cell(m, r[m]) for m in metrics]
            for r in rows
        ]
        head = ["model", *(["runs"] if seeds else []), *names]
        note = "; runs = seeds averaged" if seeds else ""
        lines += [f"**{setting}** (accuracies in %{note})", "", markdown_table(head, body), ""]
    if len(settings) > 1:
        kept = [(m, h) for m, h in zip(metrics, names, strict=True) if m != "gamma"]
        body = [
            [r["model"], str(r["n"])] + [format_cell(m, r[m]) for m, _ in kept] for r in average
        ]
        lines += [
            f"**Average over {len(settings)} settings** (accuracies in %; n = settings averaged)",
            "",
            markdown_table(["model", "n", *(h for _, h in kept)], body, 1),
            "",
        ]
    if any(r["uses_absent_labels"] for r in per_setting):
        lines += [_FOOTNOTE, ""]
    return "\n".join(lines).rstrip() + "\n"
