"""One look per series, shared by every figure: selectors, models, class groups.

A reader who learns that PCV is a green diamond in one figure finds it a green diamond in
all of them. Colours are from the colour-blind-safe Okabe–Ito palette. Unknown keys (a
selector registered by a user) get a stable look derived from their name.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

__all__ = ["Look", "SELECTOR_LOOKS", "MODEL_LOOKS", "GROUP_LOOKS", "selector_look", "group_look"]


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

#: γ selectors (and the uncalibrated γ = 0 point). The smaller, later-drawn markers sit on
#: top, so two selectors that pick nearly the same γ stay visible.
SELECTOR_LOOKS: dict[str, Look] = {
    "uncalibrated": Look("#000000", "X", zorder=3.0, markersize=9),
    "alg": Look("#0072B2", "o", zorder=3.1, markersize=9),
    "prior": Look("#CC79A7", "s", zorder=3.2, markersize=8),
    "oracle": Look("#D55E00", "*", zorder=3.3, markersize=12),
    "pcv": Look("#009E73", "D", zorder=3.4, markersize=6),
    "fixed": Look("#E69F00", "v", zorder=3.5, markersize=7),
}

#: The models of a run.
MODEL_LOOKS: dict[str, Look] = {
    "pre-trained": Look("#7F7F7F", "o", linestyle="--"),
    "fine-tuned": Look("#0072B2", "o", linestyle="-"),
}

#: Class groups: seen S, absent U, other columns R.
GROUP_LOOKS: dict[str, Look] = {
    "seen": Look("#0072B2", "o"),
    "absent": Look("#D55E00", "^"),
    "other": Look("#7F7F7F", "s"),
    "all": Look("#000000", "D"),
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
