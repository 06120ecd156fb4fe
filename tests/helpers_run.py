"""The tiny demo run the tests share: its overrides and its composed config (imported by the
tests that need them; the run itself is the ``demo_run`` fixture of conftest.py)."""

from __future__ import annotations

from tests.helpers_paper import compose_experiment

#: The digits demo at one epoch per stage and two PCV splits: the whole pipeline in seconds.
#: Without figures (drawing them took half of such a run): the tests that look at a run's
#: figures draw them (the shared :func:`demo_run` does).
TINY = [
    "progress=false",
    "source_train.epochs=1",
    "finetune.epochs=1",
    "calibration.pcv.num_splits=2",
    "eval.figures=false",
]


def tiny_config(overrides: list[str] = ()) -> dict:
    """The resolved config of the tiny demo plus ``overrides``."""
    return compose_experiment("digits_demo", [*TINY, *overrides])
