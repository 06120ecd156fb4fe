"""One look per series, shared by every figure: selectors, models, class groups.

A reader who learns that PCV is a green diamond in one figure finds it a green diamond in
all of them. Colours are from the colour-blind-safe Okabe–Ito palette. Unknown keys (a
selector registered by a user) get a stable look derived from their name.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

__all__ = [
    "Look",
    "SELECTOR_LOOKS",
    "MODEL_LOOKS",
    "GROUP_LOOKS",
    "METRIC_LOOKS",
    "selector_look",
    "group_look",
    "metric_look",
    "model_look",
    "cycle_look",
    "sequential_colors",
]


@dataclass(frozen=True)
class Look:
    """How one series is drawn: matplotlib colour, marker, line style and z-order."""

    color: str
    marker: str = "o"
    linestyle: str = "-"
    zorder: float = 2.0
    markersize: float = 8.0

    def plot_kwargs(self) -> dict:
        return {
            "color": self.color,
            "marker": self.marker,
            "linestyle": self.linestyle,
            "zorder": self.zorder,
            "markersize": self.markersize,
        }


# Okabe–Ito: black, orange, sky blue, bluish green, yellow, blue, vermillion, reddish purple
_PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")

#: γ selectors (and the uncalibrated γ = 0 point). Drawn from the largest marker up, so that
#: selectors that pick nearly the same γ stay visible (the star's points around the circle,
#: the diamond inside both), and the thin γ = 0 cross on top of them all.
SELECTOR_LOOKS: dict[str, Look] = {
    "oracle": Look("#D55E00", "*", zorder=3.0, markersize=13),
    "alg": Look("#0072B2", "o", zorder=3.1, markersize=9),
    "prior": Look("#CC79A7", "s", zorder=3.2, markersize=8),
    "fixed": Look("#E69F00", "v", zorder=3.3, markersize=7),
    "pcv": Look("#009E73", "D", zorder=3.4, markersize=6),
    "uncalibrated": Look("#000000", "X", zorder=3.5, markersize=8),
}

#: The models of a run.
MODEL_LOOKS: dict[str, Look] = {
    "pre-trained": Look("#7F7F7F", "o", linestyle="--"),
    # the fine-tuned model at γ = 0 is the uncalibrated point: the same black X, and no
    # selector's look (ALG is the blue circle)
    "fine-tuned": Look("#000000", "X", linestyle="-"),
}

#: Class groups: seen S, absent U, other columns R.
GROUP_LOOKS: dict[str, Look] = {
    "seen": Look("#0072B2", "o"),
    "absent": Look("#D55E00", "^"),
    "other": Look("#7F7F7F", "s"),
    "all": Look("#000000", "D"),
}


_SEEN, _ABSENT, _BOTH = GROUP_LOOKS["seen"].color, GROUP_LOOKS["absent"].color, "#000000"

#: Series of the per-epoch figures: the colour says which class group a series is about
#: (blue = seen S, vermillion = absent U, black = both), marker and line style which quantity.
METRIC_LOOKS: dict[str, Look] = {
    "acc_seen": Look(_SEEN, "o", "-"),
    "acc_seen_seen": Look(_SEEN, "v", "--"),
    "ncm_acc_seen": Look(_SEEN, "s", ":"),
    "acc_absent": Look(_ABSENT, "^", "-"),
    "acc_absent_absent": Look(_ABSENT, "v", "--"),
    "ncm_acc_absent": Look(_ABSENT, "s", ":"),
    "alg_acc_absent": Look(_ABSENT, "o", "-."),
    "acc_all": Look(_BOTH, "o", "-"),
    "hmean": Look(_BOTH, "h", "--"),
    "ausuc": Look(_BOTH, "D", "-."),
    "logit_seen_mean": Look(_SEEN, "o", "-"),
    "logit_seen_max_on_absent": Look(_SEEN, "s", "--"),
    "logit_absent_mean": Look(_ABSENT, "^", "-"),
    "logit_gt_absent": Look(_ABSENT, "*", ":", markersize=10),
    "logit_other_absent_max": Look(_ABSENT, "v", "--"),
    "update_cos_absent_absent": Look(_ABSENT, "^", "-"),
    "update_cos_seen_absent": Look(_BOTH, "D", "--"),
    "weight_norm_seen_mean": Look(_SEEN, "o", "-"),
    "weight_norm_absent_mean": Look(_ABSENT, "^", "-"),
}


def _derived(name: str) -> Look:
    markers = "PhHd<>p"
    h = zlib.crc32(name.encode())
    return Look(_PALETTE[h % len(_PALETTE)], markers[(h // 7) % len(markers)], zorder=3.6)


def selector_look(name: str) -> Look:
    """The look of selector ``name`` (a stable derived one for unknown names)."""
    return SELECTOR_LOOKS.get(name) or _derived(name)


def group_look(group: str) -> Look:
    """The look of class group ``group`` (``seen``, ``absent``, ``other``, ``all``)."""
    return GROUP_LOOKS.get(group) or _derived(group)


def metric_look(key: str) -> Look:
    """The look of a per-epoch series (a history key; a stable derived one for others)."""
    return METRIC_LOOKS.get(key) or _derived(key)


def model_look(name: str) -> Look | None:
    """The look of a model variant (``pre-trained``, ``fine-tuned``), None for other names."""
    return MODEL_LOOKS.get(name)


def cycle_look(index: int) -> Look:
    """The ``index``-th look of a series of peers (e.g. the groups of a sweep): palette order."""
    markers = "os^Dv<>P"
    # sky blue and orange first: not the blue / vermillion of the class groups seen and absent
    colors = ("#56B4E9", "#E69F00", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#000000")
    return Look(colors[index % len(colors)], markers[index % len(markers)])


def sequential_colors(n: int) -> list[str]:
    """``n`` colours from dark to light (viridis, its too-light end left out) for ordered
    series such as epochs: the later, the lighter."""
    if n < 1:
        return []
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["viridis"]
    return [to_hex(cmap(0.85 * i / max(n - 1, 1))) for i in range(n)]
