"""Collate many runs (a Hydra multirun folder, a benchmark's settings) into tables and figures.

Each run folder holds a ``results.json`` (see :mod:`calib.run.results`) whose ``meta.config``
is the run's full resolved config. The runs are grouped by the swept keys
(:mod:`calib.run.sweep_groups`: the config keys whose values differ, less those that cannot change
a number, :data:`IGNORE_KEYS`); a run's label names its swept keys only
(``optimizer=adam, seed=1``) and a group's label the swept keys but the seed
(``optimizer=adam``). :func:`collate_dir` writes::

    collated.md / .csv      one row per (run, model variant), then the mean ± std over seeds
                            per group (the CSV holds the per-run rows only)
    collated_groups.csv     the grouped rows (mean, std, n per metric)
    collated_wide.csv       one row per run, every key of its results
    figures/sweep.png       per group: Acc U/Y, S/Y, Y/Y and AUSUC before and after γ
    figures/sweep_<m>_vs_epoch.png   every run's per-epoch curve (its history.jsonl), if any

A run without ``meta.config`` (results written before it was recorded) is its own group,
labelled by its folder. The paper-style table (``paper=True``) is :mod:`calib.run.paper_table`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from calib.io import atomic_write_text
from calib.run.identity import NON_IDENTITY_KEYS
from calib.run.paper_table import PAPER_METRICS, PAPER_SELECTORS, paper_rows, paper_table
from calib.run.results import (
    HEADERS,
    flatten_results,
    format_cell,
    markdown_table,
    result_rows,
    rows_to_csv,
)
from calib.run.sweep_groups import (
    RunGroup,
    format_grouped_table,
    group_runs,
    grouped_rows,
    run_labels,
    sweep_label_keys,
)

__all__ = [
    "DEFAULT_METRICS",
    "IGNORE_KEYS",
    "PAPER_METRICS",
    "PAPER_SELECTORS",
    "find_runs",
    "run_folder",
    "short_labels",
    "sweep_groups",
    "sweep_title",
    "long_rows",
    "format_long_table",
    "write_sweep_figures_of",
    "collate_dir",
    "paper_rows",
    "paper_table",
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
#: Config keys (dotted, each covering the keys below it) that never define a group or a label:
#: those that cannot change a number, and the run's name.
IGNORE_KEYS: tuple[str, ...] = tuple(dict.fromkeys((*NON_IDENTITY_KEYS, "name")))


def find_runs(root: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``{run name: results}`` for every ``results.json`` below ``root``, sorted by name.

    A run's name is its folder relative to ``root`` (``root``'s own name for a results.json
    directly in ``root``).

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


def run_folder(root: str | os.PathLike, name: str) -> Path:
    """The folder of the run :func:`find_runs` named ``name`` below ``root``."""
    root = Path(root)
    return root if (root / "results.json").is_file() and name == root.name else root / name


def _have_configs(runs: Mapping[str, Mapping[str, Any]]) -> bool:
    return all(isinstance((r.get("meta") or {}).get("config"), Mapping) for r in runs.values())


def short_labels(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``{run name: label}``: the swept keys with the run's values (``optimizer=adam,
    seed=1``); the run's name when the runs lack ``meta.config`` or nothing was swept."""
    if not _have_configs(runs):
        return {name: name for name in runs}
    return run_labels(runs, ignore_keys=IGNORE_KEYS)


def sweep_groups(
    runs: Mapping[str, Mapping[str, Any]], metrics: Sequence[str] | None = None
) -> list[RunGroup]:
    """The runs grouped by the swept keys but the seed (:func:`calib.run.sweep_groups.group_runs`,
    ignoring :data:`IGNORE_KEYS`); each run its own group (labelled by its name) when the runs
    lack ``meta.config``."""
    kw = {} if metrics is None else {"metrics": tuple(metrics)}
    if _have_configs(runs):
        return group_runs(runs, ignore_keys=IGNORE_KEYS, **kw)
    groups = []
    for name, results in runs.items():
        one = {name: {**results, "meta": {**(results.get("meta") or {}), "config": {}}}}
        groups.append(dataclasses.replace(group_runs(one, **kw)[0], label=name))
    return groups


def sweep_title(root: str | os.PathLike, runs: Mapping[str, Mapping[str, Any]]) -> str:
    """Which sweep: ``"<root>, swept: optimizer, seed"`` (``"<root>"`` when nothing was)."""
    keys = sweep_label_keys(runs, ignore_keys=IGNORE_KEYS) if _have_configs(runs) else []
    return f"{root}, swept: {', '.join(keys)}" if keys else str(root)


def long_rows(
    runs: Mapping[str, Mapping[str, Any]],
    metrics: Sequence[str],
    labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One row per (run, model variant): ``run`` (its label, default the run's name),
    ``folder`` (the run's name), ``variant`` and the chosen metrics."""
    rows = []
    for run, results in runs.items():
        for variant, values in result_rows(results):
            row = {"run": (labels or {}).get(run, run), "folder": run, "variant": variant}
            row.update({m: values.get(m) for m in metrics})
            rows.append(row)
    return rows


def format_long_table(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    """A Markdown table of long rows (accuracies in %, γ in logit units)."""
    header = ["run", "model"] + [HEADERS.get(m, m) for m in metrics]
    body = [
        [str(r["run"]), str(r["variant"])] + [format_cell(m, r.get(m)) for m in metrics]
        for r in rows
    ]
    return markdown_table(header, body, n_left=2)


def write_sweep_figures_of(
    root: str | os.PathLike,
    runs: Mapping[str, Mapping[str, Any]],
    groups: Sequence[RunGroup],
    out_dir: str | os.PathLike,
    title: str,
) -> dict[str, list[Path]]:
    """Write the sweep figures (:func:`calib.figures.sweep.write_sweep_figures`) of ``groups``
    into ``out_dir``, with every run's ``history.jsonl`` (read from its folder) where it has one.
    Returns figure stem → written paths."""
    from calib.dynamics.history import read_history  # torch and matplotlib only when drawing
    from calib.figures.sweep import histories_by_group, write_sweep_figures

    histories = {name: read_history(run_folder(root, name)) for name in runs}
    by_group = histories_by_group(groups, histories)
    return write_sweep_figures(out_dir, groups, by_group or None, title=title)


def _check_metrics(runs: Mapping[str, Mapping[str, Any]], metrics: Sequence[str]) -> None:
    known = {k for r in runs.values() for _, values in result_rows(r) for k in values}
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise ValueError(
            f"metrics {unknown} are in no run's results; known: {', '.join(sorted(known))}"
        )


def collate_dir(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    metrics: Sequence[str] | None = None,
    paper: bool = False,
    figures: bool = True,
) -> str:
    """Collate every run below ``root``: write the tables and figures listed in the module doc.

    ``out`` is the prefix of the tables (default ``root/collated``); the figures go to the
    folder ``figures`` next to it (``figures=False``: none). Returns the Markdown text (runs,
    then the grouped means). With ``paper=True`` it also writes ``<out>_paper.md`` and
    ``<out>_paper.csv`` (:func:`paper_table`) and returns that table instead.
    """
    runs = find_runs(root)
    if metrics:  # a metric no run has is a typo; the default ones may be missing (NCM off)
        _check_metrics(runs, metrics)
    metrics = tuple(metrics or DEFAULT_METRICS)
    groups = sweep_groups(runs, metrics)
    title = sweep_title(root, runs)
    rows = long_rows(runs, metrics, short_labels(runs))
    means = grouped_rows(groups, metrics)
    text = f"**{len(runs)} run(s) in {title}** (accuracies in %)\n\n" + format_long_table(
        rows, metrics
    )
    text += (
        f"\n\n**Mean ± sample std over seeds, {len(groups)} group(s)** (accuracies in %; "
        "n = runs in the group)\n\n" + format_grouped_table(means, metrics).rstrip("\n")
    )
    prefix = Path(out) if out is not None else Path(root) / "collated"
    atomic_write_text(f"{prefix}.csv", rows_to_csv(rows))
    atomic_write_text(f"{prefix}_groups.csv", rows_to_csv(means))
    wide = [{"run": name, **flatten_results(res)} for name, res in runs.items()]
    atomic_write_text(f"{prefix}_wide.csv", rows_to_csv(wide))
    atomic_write_text(f"{prefix}.md", text + "\n")
    if figures:
        # the figures name the sweep's folder, not its absolute path
        figure_title = sweep_title(Path(root).name or str(root), runs)
        write_sweep_figures_of(root, runs, groups, prefix.parent / "figures", figure_title)
    if not paper:
        return text
    per_setting, average = paper_rows(runs)
    atomic_write_text(f"{prefix}_paper.csv", rows_to_csv(per_setting + average))
    table = paper_table(runs, title=f"{len(runs)} run(s) in {root}")
    atomic_write_text(f"{prefix}_paper.md", table)
    return table
