"""What a finished run hands back: its results dict, its files, figures and printed tables.

:func:`run_results` assembles ``results.json``'s content from the extractions and the fitted
calibrators (see :mod:`calib.run.results` for the schema); :func:`write_outputs` writes it
(``results.json/.csv/.md``), draws the run's figures (``curve.png``, ``reliability.png``, the
training dynamics, WiSE-FT's ``alpha_tradeoff.png``; each time anew, so that no figure of an
earlier run stays beside these results) and prints the tables. Rank 0 only.

A run with ``eval.logits=state`` hands :func:`run_results` the test states in place of the
logits (:mod:`calib.run.pipeline`): the same rows, premise and ``curve.png``; what needs the
logits themselves (the probability section, ``reliability.png``, NCM, top-k at a selector's γ)
is absent, :func:`state_mode_notes` says why under ``results["meta"]["not_computed"]``, and
the printed tables say so in one line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from calib.data import ClassSplit, Domain
from calib.estimator.calibrator import LogitBiasCalibrator
from calib.extract import Extracted
from calib.metrics.streaming import SeenAbsentState
from calib.run.probability_stage import format_probability_table, write_reliability_figure
from calib.run.report_metrics import model_metrics, plot_alpha_tradeoff_figure, premise_results
from calib.run.results import class_record, format_table, write_results
from calib.run.settings import EvalConfig
from calib.run.stage_plan import StagePlan
from calib.selectors import SELECTORS

__all__ = ["compute_environment", "run_results", "state_mode_notes", "write_outputs"]


def state_mode_notes() -> dict[str, str]:
    """What a run with ``eval.logits=state`` does not compute, and why
    (``results["meta"]["not_computed"]``)."""
    return {
        "probability": "ECE/NLL/Brier and each selector's T need a softmax over every column; "
        "eval.logits=state keeps no logits (T = 1, reliability.png not drawn)",
        "ncm": "NCM needs the features, which eval.logits=state does not extract",
        "calibrated_topk": "top-5 at a selector's γ: γ is not known when the test data is "
        "streamed; top-5 is kept at γ = 0 (the pre-trained and fine-tuned rows)",
    }


def compute_environment(device: Any) -> dict[str, Any]:
    """What computed the run, for ``results["meta"]["environment"]``: torch's version, the CUDA
    and cuDNN versions torch was built with (``None`` where it has none), and on a CUDA device
    its name and compute capability (``None`` on the CPU)."""
    device = torch.device(device)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    env: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "gpu": None,
        "gpu_capability": None,
    }
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        env["gpu"] = torch.cuda.get_device_name(index)
        env["gpu_capability"] = f"{major}.{minor}"
    return env


def write_outputs(
    results: Mapping[str, Any],
    ex: Mapping[str, Any],
    plan: StagePlan,
    split: ClassSplit,
    run_dir: Path,
    title: str | None,
    name: str,
    plot: bool,
    eval_cfg: EvalConfig,
    *,
    class_names: Sequence[str] | None = None,
) -> None:
    """Write ``results``, draw the figures (when ``plot`` and ``eval_cfg.figures``) and print.

    Args:
        ex: the run's extractions, plus WiSE-FT's ``"alpha"`` test logits when it has them.
        title: the tables' title (None: ``name``). The figures' titles say what they show
            and on which domain (``name``), never the run's folder or overrides.
        name: the target domain's name.
        class_names: the domain's class names (index = label), for figures that show classes.
    """
    write_results(results, run_dir)
    _remove_figures(run_dir)  # an earlier run's figures would not show these results
    if plot and eval_cfg.figures:
        _write_figures(results, ex, plan, split, run_dir, name, eval_cfg, class_names)
    print(format_table(results, title=title or name))
    if "probability" in results:
        print("\n" + format_probability_table(results["probability"], title="probabilities"))
    else:
        print(
            "\neval.logits=state: no probabilities, NCM or top-5 at a selector's γ "
            "(they need the full logits; results.json meta.not_computed says why)"
        )


def _write_figures(results, ex, plan, split, run_dir, name, eval_cfg, class_names) -> None:
    from calib.figures.display import SeenAbsentDisplay
    from calib.figures.files import save_figure

    pre, ft = ex["pretrained_test"], ex["finetuned_test"]
    streamed = isinstance(ft, SeenAbsentState)  # eval.logits=state: the curves of the states
    gammas = {sel: m["gamma"] for sel, m in results["calibrated"].items()}
    corrections = {
        key: (row["acc_seen"], row["acc_absent"])
        for key, row in results.get("corrected", {}).items()
    }
    scores = {"pre-trained": pre, "fine-tuned": ft}
    if not streamed:
        scores = {label: e.logits for label, e in scores.items()}
    curve = SeenAbsentDisplay.from_predictions(
        scores, None if streamed else ft.labels, split.seen,
        split.absent, gammas=gammas, corrections=corrections,
        title=f"{name}: seen–absent trade-off, "
        + ("selectors' γ and corrections marked" if corrections else "each selector's γ marked"),
    )  # fmt: skip
    save_figure(curve.figure_, run_dir / "curve.png")
    if "probability" in results:
        write_reliability_figure(
            ex, split, None, results["probability"], run_dir / "reliability.png",
            title=f"{name}: reliability of the fine-tuned model's confidence, before and after γ",
        )  # fmt: skip
    if plan.history is not None:
        from calib.figures.dynamics import write_dynamics_figures

        formats = ("png", "pdf") if eval_cfg.figures_pdf else ("png",)
        write_dynamics_figures(run_dir, title=name, formats=formats, class_names=class_names)
    if "alpha" in ex:
        plot_alpha_tradeoff_figure(
            ex, split, run_dir / "alpha_tradeoff.png", f"{name}: WiSE-FT's α path against γ"
        )


#: The figures a run draws into its folder (``figures/``: the training dynamics).
RUN_FIGURES = ("curve", "reliability", "alpha_tradeoff")


def _remove_figures(run_dir: Path) -> None:
    from calib.figures.dynamics import DYNAMICS_FIGURES

    stems = [run_dir / s for s in RUN_FIGURES] + [run_dir / "figures" / s for s in DYNAMICS_FIGURES]
    for stem in stems:
        for fmt in ("png", "pdf"):
            stem.with_suffix(f".{fmt}").unlink(missing_ok=True)


def run_results(
    ex: Mapping[str, Extracted],
    split: ClassSplit,
    calibrators: Mapping[str, LogitBiasCalibrator],
    target: Domain,
    device: Any,
    stage_keys: Mapping[str, str],
    average: str = "micro",
) -> dict[str, Any]:
    """The run's metrics: pre-trained, fine-tuned, fine-tuned + each selector's γ, and meta.

    Args:
        ex: the run's extractions (``pretrained_*`` and ``finetuned_*``, train and test), or
            with ``eval.logits=state`` the test states (the train extractions then unused).
        calibrators: selector name -> fitted calibrator.
        stage_keys: ``{stage name: key}`` (recorded under ``meta.stage_keys``).
        average: how the accuracies are averaged (``eval.average``), recorded under
            ``meta.average``.
    """
    results: dict[str, Any] = {
        "pretrained": model_metrics(
            ex["pretrained_test"], ex.get("pretrained_train"), split, average=average
        ),
        "finetuned": model_metrics(
            ex["finetuned_test"], ex.get("finetuned_train"), split, average=average
        ),
        "calibrated": {},
        "meta": {
            "target": target.name,
            "num_classes": target.num_classes,
            "seen_classes": list(map(int, split.seen)),
            "absent_classes": list(map(int, split.absent)),
            "device": str(device),
            "average": average,
            "environment": compute_environment(device),
            "stage_keys": dict(stage_keys),
            "selectors": {
                name: {
                    "data": SELECTORS.get(name).data,
                    "uses_absent_labels": SELECTORS.get(name).uses_absent_labels,
                }
                for name in calibrators
            },
        },
    }
    for name, cal in calibrators.items():
        metrics = model_metrics(
            ex["finetuned_test"], ex.get("finetuned_train"), split, gamma=cal.gamma_,
            average=average,
        )  # fmt: skip
        metrics["gamma"] = cal.gamma_
        results["calibrated"][name] = metrics
    results["classes"] = class_record(split, target.class_names)
    results["premise"] = premise_results(
        results, ex["pretrained_test"], ex["finetuned_test"], split
    )
    return results
