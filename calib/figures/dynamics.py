"""Every training-dynamics figure of a run folder, from its history: :func:`write_dynamics_figures`."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from calib.dynamics.history import epochs_with_arrays, read_epoch_arrays, read_history
from calib.figures._common import check_formats
from calib.figures.classes import (
    accuracy_gains,
    class_weight_norms,
    plot_accuracy_gains,
    plot_weight_norms,
)
from calib.figures.curves import curve_from_arrays, plot_curves_at_epochs, select_epochs
from calib.figures.epochs import (
    accuracy_series,
    logit_series,
    plot_epoch_series,
    update_similarity_series,
)
from calib.figures.files import save_figure

__all__ = ["write_dynamics_figures", "DYNAMICS_FIGURES"]

log = logging.getLogger("calib.figures")

#: File stem of each figure (under ``run_dir/figures/``), in writing order.
DYNAMICS_FIGURES = (
    "accuracies_vs_epoch",
    "logits_vs_epoch",
    "weight_norms",
    "update_similarity_vs_epoch",
    "nn_vs_ncm_gain",
    "curves_by_epoch",
)


def _drawers(
    run_dir: Path,
    rows: list,
    norm_order: str,
    max_curves: int,
    curve_epochs: Sequence[int] | None,
    class_names: Sequence[str] | None,
) -> dict[str, Callable]:
    """Figure stem → ``draw(title) -> Axes``; each raises ValueError when its data are missing."""

    def weight_norms(title):
        epochs = epochs_with_arrays(run_dir, "head")
        if not epochs:
            raise ValueError("no head arrays (the model has no linear head?)")
        last = epochs[-1]
        pre = read_epoch_arrays(run_dir, "head", 0) if epochs[0] == 0 and last != 0 else None
        data = class_weight_norms(read_epoch_arrays(run_dir, "head", last), last, pre, norm_order)
        return plot_weight_norms(data, title=title, class_names=class_names)

    def curves(title):
        by_epoch = {int(r["epoch"]): r for r in rows}
        have = [e for e in epochs_with_arrays(run_dir, "curve") if e in by_epoch]
        if not have:
            raise ValueError("no curve arrays")
        if curve_epochs is None:
            chosen = select_epochs(have, max_curves)
        else:
            chosen = sorted({int(e) for e in curve_epochs})
            missing = [e for e in chosen if e not in have]
            if missing:
                raise ValueError(f"curve_epochs={list(curve_epochs)}: no curve arrays for epochs "
                                 f"{missing}; the history has {have}")  # fmt: skip
        drawn = {e: curve_from_arrays(read_epoch_arrays(run_dir, "curve", e),
                                      by_epoch[e]["n_seen"], by_epoch[e]["n_absent"])
                 for e in chosen}  # fmt: skip
        return plot_curves_at_epochs(drawn, title=title, of=len(have))

    return {
        "accuracies_vs_epoch": lambda t: plot_epoch_series(accuracy_series(rows), title=t),
        "logits_vs_epoch": lambda t: plot_epoch_series(logit_series(rows), title=t),
        "weight_norms": weight_norms,
        "update_similarity_vs_epoch": lambda t: plot_epoch_series(
            update_similarity_series(rows), title=t
        ),
        "nn_vs_ncm_gain": lambda t: plot_accuracy_gains(
            accuracy_gains(rows), title=t, last_epoch=int(rows[-1]["epoch"])
        ),
        "curves_by_epoch": curves,
    }


def write_dynamics_figures(
    run_dir: str | os.PathLike,
    title: str | None = None,
    formats: Sequence[str] = ("png",),
    *,
    norm_order: str = "sorted",
    max_curves: int = 5,
    curve_epochs: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, list[Path]]:
    """Draw every figure of :data:`DYNAMICS_FIGURES` from ``run_dir``'s history into
    ``run_dir/figures/<stem>.<format>`` (atomic writes, headless).

    Args:
        run_dir: a run folder with ``history.jsonl`` (:class:`calib.dynamics.HistoryWriter`).
        title: which run, shown in every title (e.g. its overrides).
        formats: file formats, e.g. ``("png", "pdf")``.
        norm_order: weight-norm bars ``"sorted"`` by norm or by class ``"index"``.
        max_curves: most seen–absent curves in the curves figure (first and last epoch included;
            its title says how many of the evaluated epochs it shows).
        curve_epochs: exactly these epochs in the curves figure instead (each must have
            curve arrays: a missing one is an error, not a silent omission).
        class_names: the domain's class names (index = label), the weight-norm figure's ticks.

    Returns:
        Figure stem → the paths written. A figure whose data the history lacks (no linear
        head, a single evaluated epoch) is skipped, with an INFO log line saying why.

    Raises:
        FileNotFoundError: ``run_dir`` has no history.
    """
    run_dir = Path(run_dir)
    formats = check_formats(formats)
    rows = read_history(run_dir)
    if not rows:
        raise FileNotFoundError(f"{run_dir} has no history.jsonl: was eval.every_epochs set?")
    written: dict[str, list[Path]] = {}
    drawers = _drawers(run_dir, rows, norm_order, max_curves, curve_epochs, class_names)
    for stem, draw in drawers.items():
        try:
            ax = draw(title)
        except ValueError as err:
            if curve_epochs is not None and str(err).startswith("curve_epochs="):
                raise
            log.info("figure %s skipped: %s", stem, err)
            continue
        paths = [run_dir / "figures" / f"{stem}.{fmt}" for fmt in formats]
        for path in paths:
            save_figure(ax.figure, path)
        written[stem] = paths
    return written
