"""Group the runs of a sweep by what was swept, and average each group over its seeds (pure).

Input: ``{run name: results}``, each ``results`` a run's ``results.json`` (see
:mod:`calib.run.results`) whose ``meta.config`` holds the run's full resolved config as a nested
dict. The swept keys are the dotted config keys whose values differ across runs; the groups
are the runs that agree on every swept key except the seed, each labelled by the swept keys
alone (``optimizer=adam``), with mean ± sample std over its seeds of every metric::

    groups = group_runs(runs)                  # [RunGroup(label="optimizer=adam", ...), ...]
    rows = grouped_rows(groups)                # one row per (group, model variant), for a table
    print(format_grouped_table(rows))

Keys that change together (``optimizer.name`` and the optimizer's default ``lr``) split
the runs alike; the label names one of them (a ``.name`` key first, else the shortest).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from calib.figures.sweep import variant_label
from calib.run.results import TABLE_COLUMNS

__all__ = [
    "Stat",
    "RunGroup",
    "DEFAULT_METRICS",
    "DEFAULT_IGNORE",
    "flatten_config",
    "swept_keys",
    "group_runs",
    "run_labels",
    "sweep_label_keys",
    "run_variants",
    "grouped_rows",
    "format_grouped_table",
]

#: Metrics summarised by default (fractions in [0, 1]; ``gamma`` in logit units).
DEFAULT_METRICS: tuple[str, ...] = tuple(key for key, _ in TABLE_COLUMNS)  # the run's table
#: Config keys with one of these components never define a group (they name the run itself).
DEFAULT_IGNORE: tuple[str, ...] = ("run_dir", "output_dir", "hydra")

_MISSING = "<missing>"


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation (ddof = 1; NaN for n < 2) and count of finite values."""

    mean: float
    std: float
    n: int


@dataclass(frozen=True)
class RunGroup:
    """Runs that agree on every swept key but the seed.

    Attributes:
        label: the swept keys and their values, e.g. ``"optimizer=adam, lr=0.001"``.
        values: dotted key → value, for every key that defines the group.
        runs: the run names, in input order.
        stats: model variant (``pre-trained``, ``fine-tuned``, then each selector) → metric → Stat.
    """

    label: str
    values: dict[str, Any]
    runs: tuple[str, ...]
    stats: dict[str, dict[str, Stat]]


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"a.b.c": value}``; lists stay values (as lists)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat |= flatten_config(value, dotted + ".")
        else:
            flat[dotted] = value
    return flat


def _configs(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    if not runs:
        raise ValueError("no runs to group")
    out = {}
    for name, results in runs.items():
        config = (results.get("meta") or {}).get("config") if isinstance(results, Mapping) else None
        if not isinstance(config, Mapping):
            raise ValueError(
                f"run {name!r} has no meta.config (its resolved config) in its results"
            )
        out[name] = flatten_config(config)
    return out


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _ignored(key: str, ignore: Sequence[str], ignore_keys: Sequence[str] = ()) -> bool:
    return any(part in ignore for part in key.split(".")) or any(
        key == k or key.startswith(k + ".") for k in ignore_keys
    )


def swept_keys(
    runs: Mapping[str, Mapping[str, Any]],
    ignore: Sequence[str] = DEFAULT_IGNORE,
    ignore_keys: Sequence[str] = (),
) -> list[str]:
    """The dotted config keys whose values differ across ``runs`` (a key missing in some runs
    differs), sorted; keys with a component in ``ignore`` are left out, and so are the dotted
    keys ``ignore_keys`` with everything below them (e.g. ``"eval.batch_size"``, ``"name"``)."""
    configs = _configs(runs)
    keys = sorted({k for c in configs.values() for k in c})
    return [
        k
        for k in keys
        if not _ignored(k, ignore, ignore_keys)
        and len({_canon(c.get(k, _MISSING)) for c in configs.values()}) > 1
    ]


def _is_seed(key: str, seed_key: str) -> bool:
    return key.split(".")[-1] == seed_key or key == seed_key


def _refines(fine: tuple, coarse: tuple) -> bool:
    """Every class of partition ``fine`` lies inside one class of ``coarse``."""
    inside: dict[int, int] = {}
    return all(inside.setdefault(f, c) == c for f, c in zip(fine, coarse, strict=True))


def _label_keys(keys: list[str], configs: dict[str, dict[str, Any]]) -> list[str]:
    """One representative per set of keys that split the runs identically, and none for a key
    implied by another (``optimizer.lr`` when each optimizer has its own lr, shared by some)."""
    by_partition: dict[tuple, list[str]] = {}
    for key in keys:
        ids: dict[str, int] = {}
        partition = tuple(
            ids.setdefault(_canon(c.get(key, _MISSING)), len(ids)) for c in configs.values()
        )
        by_partition.setdefault(partition, []).append(key)

    def rank(key: str) -> tuple:
        return (key.split(".")[-1] != "name", len(key), key)

    parts = list(by_partition)
    implied = {p for p in parts if any(q != p and _refines(q, p) for q in parts)}
    chosen = {min(by_partition[p], key=rank) for p in parts if p not in implied}
    return [k for k in keys if k in chosen]


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    return _canon(value)


def _short(key: str) -> str:
    return key[: -len(".name")] if key.endswith(".name") else key


def run_variants(results: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """A run's model variants: ``pre-trained``, ``fine-tuned``, then each selector → its metrics."""
    out: dict[str, Mapping[str, Any]] = {}
    if "pretrained" in results:
        out["pre-trained"] = results["pretrained"]
    if "finetuned" in results:
        out["fine-tuned"] = results["finetuned"]
    out |= dict(results.get("calibrated") or {})
    return out


def _stat(values: Sequence[Any]) -> Stat:
    finite = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
              and math.isfinite(v)]  # fmt: skip
    if not finite:
        return Stat(math.nan, math.nan, 0)
    a = np.asarray(finite)
    return Stat(float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else math.nan, int(a.size))


def group_runs(
    runs: Mapping[str, Mapping[str, Any]],
    by: Sequence[str] | None = None,
    seed_key: str = "seed",
    metrics: Sequence[str] = DEFAULT_METRICS,
    ignore: Sequence[str] = DEFAULT_IGNORE,
    ignore_keys: Sequence[str] = (),
) -> list[RunGroup]:
    """Group ``runs`` by the swept keys (or the keys ``by``) except the seed; stats per group.

    Args:
        runs: run name → results (with ``meta.config``).
        by: the dotted keys to group by; default every swept key that is not a seed.
        seed_key: keys whose last component is this are seeds: averaged over, never grouped by.
        metrics: the metrics to summarise, per model variant.
        ignore, ignore_keys: see :func:`swept_keys`.

    Returns:
        The groups in order of their first run. Without any swept key, one group ``"all runs"``.

    Raises:
        ValueError: a run without ``meta.config``, or a ``by`` key no run has.
    """
    configs = _configs(runs)
    if by is None:
        keys = [k for k in swept_keys(runs, ignore, ignore_keys) if not _is_seed(k, seed_key)]
        label_keys = _label_keys(keys, configs)
    else:
        keys = [by] if isinstance(by, str) else list(by)
        known = {k for c in configs.values() for k in c}
        unknown = [k for k in keys if k not in known]
        if unknown:
            raise ValueError(
                f"no run has config key(s) {unknown}; swept keys: "
                f"{swept_keys(runs, ignore, ignore_keys)}"
            )
        label_keys = keys
    members: dict[str, list[str]] = {}
    values: dict[str, dict[str, Any]] = {}
    for name, config in configs.items():
        group_values = {k: config.get(k, _MISSING) for k in keys}
        signature = _canon(group_values)
        members.setdefault(signature, []).append(name)
        values.setdefault(signature, group_values)
    groups = []
    for signature, names in members.items():
        v = values[signature]
        label = ", ".join(f"{_short(k)}={_show(v[k])}" for k in label_keys) or "all runs"
        variants: dict[str, dict[str, Stat]] = {}
        for name in names:
            for variant in run_variants(runs[name]):
                variants.setdefault(variant, {})
        for variant in variants:
            for metric in metrics:
                per_run = [run_variants(runs[n]).get(variant, {}).get(metric) for n in names]
                variants[variant][metric] = _stat(per_run)
        groups.append(RunGroup(label, v, tuple(names), variants))
    return groups


def run_labels(
    runs: Mapping[str, Mapping[str, Any]],
    ignore: Sequence[str] = DEFAULT_IGNORE,
    ignore_keys: Sequence[str] = (),
) -> dict[str, str]:
    """``{run name: short label}`` from the swept keys alone, seeds included
    (``optimizer=adam, seed=1``), keys that change together named once (as in
    :func:`group_runs`). A run whose label is not unique (its config equals another's on every
    swept key), and every run when nothing was swept, is labelled by its name.

    Raises:
        ValueError: a run without ``meta.config``.
    """
    configs = _configs(runs)
    keys = _label_keys(swept_keys(runs, ignore, ignore_keys), configs)
    labels: dict[str, str] = {
        name: ", ".join(f"{_short(k)}={_show(c.get(k, _MISSING))}" for k in keys) or name
        for name, c in configs.items()
    }
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return {name: label if counts[label] == 1 else name for name, label in labels.items()}


def sweep_label_keys(
    runs: Mapping[str, Mapping[str, Any]],
    ignore: Sequence[str] = DEFAULT_IGNORE,
    ignore_keys: Sequence[str] = (),
) -> list[str]:
    """The swept keys as the labels name them (``optimizer``, ``seed``): one per set of keys
    that change together, ``.name`` dropped; e.g. for a figure's title.

    Raises:
        ValueError: a run without ``meta.config``.
    """
    configs = _configs(runs)
    return [_short(k) for k in _label_keys(swept_keys(runs, ignore, ignore_keys), configs)]


def grouped_rows(
    groups: Sequence[RunGroup], metrics: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """One flat row per (group, variant): ``group``, ``variant``, ``n_runs``, the group's key
    values, then per metric ``<m>`` (mean), ``<m>_std`` and ``<m>_n`` — e.g. for a CSV."""
    rows = []
    for group in groups:
        for variant, stats in group.stats.items():
            row: dict[str, Any] = {
                "group": group.label,
                "variant": variant,
                "n_runs": len(group.runs),
            }
            row |= {k: v for k, v in group.values.items()}
            for metric in metrics or list(stats):
                stat = stats.get(metric, Stat(math.nan, math.nan, 0))
                row |= {metric: stat.mean, f"{metric}_std": stat.std, f"{metric}_n": stat.n}
            rows.append(row)
    return rows


def _cell(metric: str, mean: float, std: float) -> str:
    """``format_cell`` of the mean, then ``± std`` in the same unit when the std is finite."""
    from calib.run.results import format_cell

    text = format_cell(metric, mean)
    if text == "—" or not math.isfinite(std):
        return text
    return text + (f" ± {std:.3f}" if metric == "gamma" else f" ± {100 * std:.1f}")


def format_grouped_table(
    rows: Sequence[Mapping[str, Any]], metrics: Sequence[str] = DEFAULT_METRICS
) -> str:
    """A markdown table of :func:`grouped_rows`: mean ± std over seeds, accuracies in %,
    γ in logit units, "—" where undefined; ``n`` is the number of runs (seeds) of the group.
    Rendered by :func:`calib.run.results.markdown_table` with its :data:`~calib.run.results.HEADERS`."""
    from calib.run.results import HEADERS, markdown_table

    headers = ["group", "model", "n", *(HEADERS.get(m, m) for m in metrics)]
    body = [
        [str(r["group"]), variant_label(str(r["variant"])), str(r["n_runs"])]
        + [_cell(m, r.get(m, math.nan), r.get(f"{m}_std", math.nan)) for m in metrics]
        for r in rows
    ]
    return markdown_table(headers, body, n_left=2) + "\n"
