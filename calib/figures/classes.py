"""Per class group: the head's weight norms, and the accuracy gain of NN vs NCM.

- :func:`class_weight_norms` / :func:`plot_weight_norms`: the L2 norm of every head row
  at one epoch (the last, by default), S and U coloured, the pre-trained norms marked.
- :func:`accuracy_gains` / :func:`plot_accuracy_gains`: from the pre-trained model
  (epoch 0) to the fine-tuned one (last epoch), the change of Acc S/Y and Acc U/Y of the
  network's own head (NN) and of the NCM classifier on its features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from calib.figures._common import finish_axes, new_axes
from calib.figures.style import group_look

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = [
    "ClassNorms",
    "class_weight_norms",
    "plot_weight_norms",
    "norm_limits",
    "accuracy_gains",
    "plot_accuracy_gains",
    "GROUP_LABELS",
]

GROUP_LABELS = {"seen": "seen S", "absent": "absent U", "other": "other columns"}


@dataclass(frozen=True)
class ClassNorms:
    """Head-row norms in drawing order.

    Attributes:
        classes: (K,) class indices, in x order.
        norms: (K,) L2 norm of each class's head row at ``epoch`` (weight units).
        groups: (K,) ``"seen"``, ``"absent"`` or ``"other"``.
        pretrained: (K,) the norms at epoch 0, or None.
        epoch: the epoch of ``norms``.
        order: ``"sorted"`` (by norm, largest first) or ``"index"``.
    """

    classes: np.ndarray
    norms: np.ndarray
    groups: np.ndarray
    pretrained: np.ndarray | None
    epoch: int
    order: str


def class_weight_norms(
    head: Mapping[str, Any],
    epoch: int,
    pretrained: Mapping[str, Any] | None = None,
    order: str = "sorted",
) -> ClassNorms:
    """The per-class norms of a ``history/head_epoch<k>.npz`` (``weight_norm``, ``seen``, ``absent``).

    Args:
        head: the arrays of the epoch to show. epoch: its number.
        pretrained: the arrays of epoch 0, drawn as reference marks (None: none).
        order: ``"sorted"``: by norm at ``epoch``, largest first; ``"index"``: by class index.
    """
    if order not in ("sorted", "index"):
        raise ValueError(f"order must be 'sorted' or 'index', got {order!r}")
    norms = np.asarray(head["weight_norm"], dtype=np.float64)
    groups = np.full(norms.size, "other", dtype=object)
    groups[np.asarray(head["seen"], dtype=np.int64)] = "seen"
    groups[np.asarray(head["absent"], dtype=np.int64)] = "absent"
    pre = None if pretrained is None else np.asarray(pretrained["weight_norm"], dtype=np.float64)
    if pre is not None and pre.shape != norms.shape:
        raise ValueError(f"pretrained norms have shape {pre.shape}, the epoch's {norms.shape}")
    # stable sort, largest first: ties keep class order
    idx = np.argsort(-norms, kind="stable") if order == "sorted" else np.arange(norms.size)
    return ClassNorms(idx, norms[idx], groups[idx].astype(str),
                      None if pre is None else pre[idx], int(epoch), order)  # fmt: skip


def norm_limits(data: ClassNorms) -> tuple[float, float]:
    """y limits around the norms (pre-trained ones included), not from 0: the differences
    between classes and epochs, a few % of the norm, are the figure's point."""
    values = data.norms if data.pretrained is None else np.r_[data.norms, data.pretrained]
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    pad = 0.08 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1e-12)
    return lo - pad, hi + pad


def plot_weight_norms(
    data: ClassNorms,
    ax: Axes | None = None,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
) -> Axes:
    """Dots of the head-row norms, coloured by class group; the pre-trained norms as ticks,
    joined to the epoch's dot (the change). The y axis spans the norms, not from 0.

    ``class_names``: the domain's names (index = label) for the ticks; default the indices.
    """
    ax = new_axes(ax)
    x = np.arange(data.classes.size)
    if class_names is not None and len(class_names) <= int(data.classes.max()):
        raise ValueError(
            f"class_names has {len(class_names)} names, the head has class {int(data.classes.max())}"
        )
    if data.pretrained is not None:
        ax.vlines(x, data.pretrained, data.norms, color="0.6", linewidth=1.0, zorder=1)
        ax.plot(x, data.pretrained, linestyle="none", marker="_", markersize=12 if x.size < 80 else 4,
                markeredgewidth=2, color="black", label="pre-trained (epoch 0)")  # fmt: skip
    for group in ("seen", "absent", "other"):
        sel = data.groups == group
        if sel.any():
            look = group_look(group)
            ax.plot(x[sel], data.norms[sel], linestyle="none", marker=look.marker,
                    markersize=7 if x.size < 80 else 3, color=look.color, zorder=3,
                    label=f"{GROUP_LABELS[group]} (epoch {data.epoch})")  # fmt: skip
    ax.set_ylim(*norm_limits(data))
    if x.size <= 40:  # class names as ticks; upright while they fit (index order, or a few)
        names = [str(c) if class_names is None else str(class_names[c]) for c in data.classes]
        upright = max(len(n) for n in names) <= 3 and (data.order == "index" or x.size <= 12)
        ax.set_xticks(x, names, fontsize="small" if upright else "x-small",
                      rotation=0 if upright else 90)  # fmt: skip
    xlabel = "class (sorted by weight norm)" if data.order == "sorted" else "class index"
    finish_axes(ax, title, xlabel, "L2 norm of the class's head weights (weight units)",
                f"Head weight norms per class after {data.epoch} epochs")  # fmt: skip
    return ax


def accuracy_gains(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Change of accuracy from the first row (epoch 0) to the last, in percentage points.

    Returns:
        ``{"NN": {"seen": Δ Acc S/Y, "absent": Δ Acc U/Y}, "NN within group": {"seen":
        Δ Acc S/S, "absent": Δ Acc U/U}, "NCM": {"seen": Δ NCM Acc S/Y, "absent":
        Δ NCM Acc U/Y}}``; a classifier whose values the history lacks is left out.

    Raises:
        ValueError: fewer than two rows, or a first row that is not epoch 0.
    """
    if len(rows) < 2 or int(rows[0]["epoch"]) != 0:
        raise ValueError("accuracy gains need the epoch-0 row and a later one")
    first, last = rows[0], rows[-1]
    out = {}
    keys = {
        "NN": ("acc_seen", "acc_absent"),
        "NN within group": ("acc_seen_seen", "acc_absent_absent"),
        "NCM": ("ncm_acc_seen", "ncm_acc_absent"),
    }
    for name, pair in keys.items():
        gains = {g: 100.0 * (float(last[k]) - float(first[k]))
                 for g, k in zip(("seen", "absent"), pair, strict=True) if k in first}  # fmt: skip
        if gains and not all(np.isnan(v) for v in gains.values()):
            out[name] = gains
    return out


def plot_accuracy_gains(
    gains: Mapping[str, Mapping[str, float]],
    ax: Axes | None = None,
    title: str | None = None,
    last_epoch: int | None = None,
) -> Axes:
    """Grouped bars: per classifier (NN head, NCM), the gain of each class group, labelled."""
    ax = new_axes(ax, figsize=(7.5, 4.5))
    names = list(gains)
    x = np.arange(len(names))
    width = 0.38
    for j, group in enumerate(("seen", "absent")):
        values = np.array([gains[n].get(group, np.nan) for n in names])
        look = group_look(group)
        bars = ax.bar(x + (j - 0.5) * width, values, width, color=look.color,
                      label=f"{GROUP_LABELS[group]} classes")  # fmt: skip
        ax.bar_label(bars, labels=[f"{v:+.1f}" for v in values], padding=2, fontsize="small")
    ax.axhline(0.0, color="black", linewidth=0.8)
    labels = {
        "NN": "network head, γ = 0\n(Acc S/Y, U/Y)",
        "NN within group": "network head\n(Acc S/S, U/U)",
        "NCM": "NCM on the features\n(NCM Acc S/Y, U/Y)",
    }
    ax.set_xticks(x, [labels.get(n, n) for n in names])
    ax.margins(y=0.15)
    span = f"epoch 0 → {last_epoch}" if last_epoch is not None else "pre-trained → fine-tuned"
    finish_axes(ax, title, "classifier", f"test accuracy gain, {span} (percentage points)",
                "Accuracy gain by fine-tuning: NN vs NCM")  # fmt: skip
    return ax
