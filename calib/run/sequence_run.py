"""A sequence of fine-tunings as runs: stage k is a run that starts from stage k−1's checkpoint.

``sequence.stages`` (a list of class lists, each including the one before) turns a config
into K runs, each an ordinary run (:func:`calib.run.plan.build_plan`, :meth:`RunPlan.run`) in
its own folder::

    run_dir/
      stage_1/        split.seen = stages[0]; the pre-trained model as configured (source…)
      stage_2/        split.seen = stages[1]; model.weights = stage_1/finetune/checkpoints/final.pt
      ...
      sequence.json   every stage's key, identity, classes and results
      sequence.md     one table per stage (the run's table: pre-trained = the stage's start)
      stages.png      Acc S/Y, U/Y, Y/Y before and after γ, and γ, across the stages

Stage k's config is the given one with ``split`` set to ``explicit`` (S_k =
``sequence.stages[k]``, U_k every other class) and, from the second stage on, no source
domain and ``model.weights`` the fine-tuned checkpoint of stage k−1: its "pre-trained" row
is the model it starts from, and its PCV pseudo runs start from that model too (what
:func:`calib.sequence.finetune_sequence` does in Python).

Keys: stage k's key hashes its classes, its config's identity leaves
(:func:`calib.run.identity.identity_leaves`) and the key of stage k−1, so a change that
matters to a stage changes the key of every later one; they are recorded in
``sequence.json``, and a folder made with other settings is refused before any work
(:class:`~calib.run.stages.StaleRunError`, naming the stage and what changed). Every stage's
run keys its own stages as any run does (its starting weights by their digest). Rerunning
resumes: finished stages are read back, an interrupted one resumes at its last checkpoint.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calib import distributed
from calib.class_names import class_ids, describe_classes
from calib.io import atomic_write_json, atomic_write_text
from calib.run.identity import diff_leaves, digest, flatten, format_changes, identity_leaves
from calib.run.plan import build_plan
from calib.run.results import format_table, shown_class_names
from calib.run.schema import ConfigError
from calib.run.sections import domain_from_config, section
from calib.run.stages import StaleRunError

__all__ = [
    "SEQUENCE_KEY",
    "SEQUENCE_FORMAT",
    "SequenceStage",
    "check_sequence_stages",
    "plan_sequence",
    "run_sequence",
    "stage_reports",
    "target_class_names",
]

log = logging.getLogger(__name__)

#: The config key that makes a run a sequence: ``{"stages": [[...], [...], ...]}``.
SEQUENCE_KEY = "sequence"
#: Format tag of ``sequence.json``.
SEQUENCE_FORMAT = "calib.sequence/1"
#: Where a stage's run leaves its fine-tuned weights (:mod:`calib.train.checkpoint`).
FINAL_WEIGHTS = Path("finetune") / "checkpoints" / "final.pt"
_SPLIT_NULLS = ("n_seen", "seen_fraction", "n_absent", "benchmark", "source")


@dataclass(frozen=True)
class SequenceStage:
    """One planned stage of a sequence.

    Attributes:
        index: 0-based. classes: S_k, sorted.
        config: the run config of this stage (no ``sequence`` key).
        run_dir: its run folder (``<run_dir>/stage_<k+1>``).
        start: the weights it starts from (stage k−1's fine-tuned checkpoint), or None for
            the first stage (the model as configured).
        identity: what its numbers depend on; key: its digest.
    """

    index: int
    classes: tuple[int, ...]
    config: dict[str, Any]
    run_dir: Path
    start: Path | None
    identity: dict[str, Any]
    key: str


def check_sequence_stages(
    value: Any, class_names: Sequence[str] | None = None
) -> list[tuple[int, ...]]:
    """``sequence.stages`` as sorted class tuples, each including the one before.

    A stage's classes are column indices or, given ``class_names`` (the target's, index =
    label), class names, or both mixed.

    Raises:
        ConfigError: not a non-empty list of non-empty lists of distinct integers ≥ 0 (or
            class names), a name that is not a class (with a did-you-mean), or a stage that
            drops a class of the stage before (named with the value given).
    """
    where = f"{SEQUENCE_KEY}.stages"
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{where} must be a non-empty list of class lists, got {value!r}")
    out: list[tuple[int, ...]] = []
    for k, classes in enumerate(value):
        name = f"{where}[{k}]"
        if not isinstance(classes, (list, tuple)) or not classes:
            raise ConfigError(f"{name} must be a non-empty list of class indices, got {classes!r}")
        if class_names is not None:
            try:
                classes = class_ids(classes, class_names, name)
            except (TypeError, ValueError) as err:
                raise ConfigError(str(err)) from None
        bad = [c for c in classes if isinstance(c, bool) or not isinstance(c, int) or c < 0]
        if bad:
            names = " (or, with the target's class names, names)" * isinstance(bad[0], str)
            raise ConfigError(f"{name} must hold class indices ≥ 0{names}, got {bad[0]!r}")
        if len(set(classes)) != len(classes):
            raise ConfigError(f"{name} lists a class more than once: {list(value[k])}")
        if out:
            dropped = sorted(set(out[-1]) - set(classes))
            if dropped:
                raise ConfigError(
                    f"{name} = {list(value[k])} drops class(es) {dropped} of stage {k}: a "
                    "stage's classes include the classes of the stage before (S grows)"
                )
        out.append(tuple(sorted(classes)))
    return out


def _names_classes(stages: Any) -> bool:
    """Whether ``sequence.stages`` names a class (a string in some stage)."""
    return isinstance(stages, (list, tuple)) and any(
        isinstance(c, str) for s in stages if isinstance(s, (list, tuple)) for c in s
    )


def target_class_names(cfg: Mapping[str, Any]) -> Sequence[str]:
    """The class names of ``cfg``'s target domain (``dataset``), built to read them.

    Raises:
        ConfigError: a bad ``dataset`` section. calib.data.DatasetNotFoundError: not on disk.
    """
    return domain_from_config(section(cfg, "dataset"), "dataset").class_names


def plan_sequence(cfg: Mapping[str, Any], run_dir: str | os.PathLike) -> list[SequenceStage]:
    """Every stage's config, folder and key, from the config alone (nothing is trained)."""
    spec = cfg.get(SEQUENCE_KEY)
    if not isinstance(spec, Mapping) or set(spec) != {"stages"}:
        raise ConfigError(
            f"{SEQUENCE_KEY} must be a mapping with the one key 'stages', got {spec!r}"
        )
    # names are the target's: its domain is built to read them (indices need no data set);
    # the stages hold column indices, so that names and indices give the same keys
    names = target_class_names(cfg) if _names_classes(spec["stages"]) else None
    stage_classes = check_sequence_stages(spec["stages"], names)
    method = (cfg.get("finetune") or {}).get("method", "full")
    _check_method(method)
    run_dir = Path(run_dir)
    base = {k: copy.deepcopy(v) for k, v in cfg.items() if k != SEQUENCE_KEY}
    stages: list[SequenceStage] = []
    for k, classes in enumerate(stage_classes):
        stage_cfg = copy.deepcopy(base)  # the sequence's name: its tables name the stage
        split = dict(stage_cfg.get("split") or {})
        split.update({key: None for key in _SPLIT_NULLS})
        split.update(kind="explicit", seen=list(classes), absent=None)
        stage_cfg["split"] = split
        start = None
        leaves = identity_leaves(stage_cfg)
        if stages:
            start = stages[-1].run_dir / FINAL_WEIGHTS
            stage_cfg["source"] = None
            stage_cfg["model"] = {**dict(stage_cfg.get("model") or {}), "weights": str(start)}
            # the start is the previous stage (its key below), wherever its folder is
            leaves = identity_leaves(stage_cfg)
            leaves.pop("model.weights", None)
        identity = {
            "stage": k + 1,
            "classes": list(classes),
            "config": leaves,
            "previous": stages[-1].key if stages else None,
        }
        stages.append(
            SequenceStage(
                index=k,
                classes=classes,
                config=stage_cfg,
                run_dir=run_dir / f"stage_{k + 1}",
                start=start,
                identity=identity,
                key=digest(identity),
            )
        )
    return stages


def _check_method(method: Any) -> None:
    from calib.methods import METHODS

    try:
        spec = METHODS.get(method)
    except (KeyError, TypeError):
        return  # build_plan names an unknown method with the registry's message
    if spec.post_training:
        raise ConfigError(
            f"finetune.method={method!r} applies {list(spec.post_training)} after training, so "
            "its fine-tuned model is not the checkpoint the next stage would start from; a "
            "sequence needs a method whose result is its last training checkpoint"
        )


def _check_record(run_dir: Path, stages: list[SequenceStage]) -> None:
    """Refuse a folder whose ``sequence.json`` records other keys for a started stage."""
    path = run_dir / "sequence.json"
    if not path.is_file():
        return
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        old = {int(s["index"]): s for s in record["stages"]}
    except (ValueError, KeyError, TypeError) as err:
        raise StaleRunError(f"{path} is not a sequence record: {err}") from None
    for stage in stages:
        before = old.get(stage.index)
        if before is None or before.get("key") == stage.key:
            continue
        changes = diff_leaves(flatten(before.get("identity") or {}), flatten(stage.identity))
        raise StaleRunError(
            f"{run_dir} holds a sequence made with other settings: stage {stage.index + 1} "
            f"changed ({format_changes(changes)}); use another run_dir or delete the folder"
        )


def _record(
    stages: list[SequenceStage],
    results: list[dict[str, Any] | None],
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``sequence.json``: every stage's classes (column indices), key, identity and results;
    ``class_names``: the target's names (index = label), once known (None before)."""
    return {
        "format": SEQUENCE_FORMAT,
        "class_names": None if class_names is None else [str(n) for n in class_names],
        "stages": [
            {
                "index": s.index,
                "classes": list(s.classes),
                "folder": s.run_dir.name,
                "key": s.key,
                "identity": s.identity,
                "results": None
                if r is None
                else {k: r[k] for k in ("pretrained", "finetuned", "calibrated") if k in r},
            }
            for s, r in zip(stages, results, strict=True)
        ],
    }


def stage_reports(results: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per stage ``{"finetuned": metrics, selector: metrics, ...}`` for
    :func:`calib.figures.stages.stage_series` (``before="finetuned"``)."""
    return [{"finetuned": r["finetuned"], **r.get("calibrated", {})} for r in results]


def sequence_tables(
    stages: list[SequenceStage],
    results: list[Mapping[str, Any]],
    class_names: Sequence[str] | None = None,
) -> str:
    """One table per stage (the run's own table, which lists S and U by name when its results
    hold names), titled with its classes; from the second stage on, with ``class_names`` that
    say more than the indices (:func:`calib.run.results.shown_class_names`), a line under the
    title names the classes the stage adds."""
    names = shown_class_names(class_names)
    parts = []
    for s, r in zip(stages, results, strict=True):
        start = "the configured model" if s.start is None else f"stage {s.index}'s checkpoint"
        title = f"stage {s.index + 1}: S = {list(s.classes)} (pre-trained = {start})"
        named = ""
        if names is not None and s.index:  # S and U by name: under the stage's table
            before = set(stages[s.index - 1].classes)
            added = [c for c in s.classes if c not in before]
            named = f"added to S: {describe_classes(added, names, limit=20)}.\n\n"
        parts.append(f"## {title}\n\n{named}{format_table(r)}\n")
    return "\n".join(parts)


def run_sequence(
    cfg: Mapping[str, Any], run_dir: str | os.PathLike | None = None, title: str | None = None
) -> dict[str, Any]:
    """Run every stage of ``cfg``'s sequence (resuming finished ones) and collate them.

    Args:
        cfg: a run config (the keys of ``conf/config.yaml``) with ``sequence.stages``.
        run_dir: the sequence's folder (default ``cfg["run_dir"]`` or ``outputs/<name>``).
        title: the tables' and figure's title (default the config's name).

    Returns:
        ``{"stages": [{"classes", "key", "folder", "results"}, ...], "tables": markdown}``.

    Raises:
        ConfigError: a bad ``sequence`` or stage config (the key named); a method whose
            result is not its checkpoint. StaleRunError: the folder holds another sequence.
    """
    run_dir = Path(run_dir or cfg.get("run_dir") or os.path.join("outputs", str(cfg.get("name"))))
    stages = plan_sequence(cfg, run_dir)
    _check_record(run_dir, stages)
    title = title or str(cfg.get("name", "run"))
    results: list[dict[str, Any] | None] = [None] * len(stages)
    class_names: Sequence[str] | None = None
    for stage in stages:
        if distributed.is_main():
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(run_dir / "sequence.json", _record(stages, results))
        log.info("sequence stage %d/%d: S = %s", stage.index + 1, len(stages), list(stage.classes))
        try:
            plan = build_plan(stage.config, stage.run_dir)
        except ConfigError as err:
            raise ConfigError(
                f"stage {stage.index + 1} (S = {list(stage.classes)}): {err}"
            ) from err
        class_names = plan.target.class_names
        plan.title = f"{title}: stage {stage.index + 1}, S = {list(stage.classes)}"
        results[stage.index] = plan.run()
        final = stage.run_dir / FINAL_WEIGHTS
        if stage.index + 1 < len(stages) and not final.is_file():
            raise ConfigError(
                f"stage {stage.index + 1} left no {final}: finetune.method="
                f"{stage.config['finetune'].get('method')!r} does not end in a training "
                "checkpoint the next stage could start from"
            )
    done = [r for r in results if r is not None]
    tables = sequence_tables(stages, done, class_names)
    if distributed.is_main():
        atomic_write_json(run_dir / "sequence.json", _record(stages, results, class_names))
        atomic_write_text(run_dir / "sequence.md", f"# {title}\n\n{tables}")
        eval_cfg = cfg.get("eval") or {}
        if eval_cfg.get("figures", True):
            pdf = bool(eval_cfg.get("figures_pdf", False))
            _write_figure(run_dir, stages, done, title, pdf, class_names)
        print(tables)
    return {
        "stages": [
            {"classes": list(s.classes), "key": s.key, "folder": str(s.run_dir), "results": r}
            for s, r in zip(stages, done, strict=True)
        ],
        "tables": tables,
    }


def _write_figure(
    run_dir: Path,
    stages: list[SequenceStage],
    results: list[dict[str, Any]],
    title: str,
    pdf: bool,
    class_names: Sequence[str] | None = None,
) -> None:
    from calib.figures.files import save_figure
    from calib.figures.stages import plot_stage_series, stage_series

    series = stage_series(
        stage_reports(results),
        before="finetuned",
        seen_classes=[s.classes for s in stages],
        class_names=shown_class_names(class_names),
    )
    fig = plot_stage_series(series, title=title)
    save_figure(fig, run_dir / "stages.png")
    if pdf:
        save_figure(fig, run_dir / "stages.pdf")
