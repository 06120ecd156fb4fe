"""Figures of calib runs: each a pure compute function (numbers) plus a drawing helper.

The drawing helpers take the compute functions' outputs and draw with matplotlib, imported
inside the functions (headless, no pyplot). :mod:`calib.figures.style` fixes one colour and
marker per selector, model and class group, so a series looks the same in every figure.

Training dynamics (from a run's history, :mod:`calib.dynamics`):

- :mod:`calib.figures.epochs`: accuracies, logits and update similarity vs epoch.
- :mod:`calib.figures.classes`: head weight norms per class; NN vs NCM accuracy gain.
- :mod:`calib.figures.curves`: the seen–absent curves at selected epochs.
- :mod:`calib.figures.dynamics`: :func:`write_dynamics_figures` draws them all.

Sweeps (from many runs, :mod:`calib.run.sweep_groups`): :mod:`calib.figures.sweep`.

The public API (:mod:`calib.figures.display`, loaded on first use): :class:`SeenAbsentDisplay`
(the seen–absent curves, each calibrator's γ marked) and :class:`ReliabilityDisplay` (the
reliability diagrams), each ``from_predictions`` (logits) or ``from_estimator`` (fitted
calibrators); each holds the numbers it draws and ``figure_``, ``ax_`` for further styling.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SeenAbsentDisplay", "ReliabilityDisplay", "OperatingPoint"]


def __getattr__(name: str) -> Any:
    # lazily: ``import calib.figures`` must not import matplotlib or the metrics
    if name in __all__:
        from calib.figures import display

        return getattr(display, name)
    raise AttributeError(f"module 'calib.figures' has no attribute {name!r}")
