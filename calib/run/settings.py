"""The settings of a run besides training: which γ selectors, PCV, extraction.

Plain frozen dataclasses, validated at construction (``ValueError`` naming the field and the
value). :func:`calib.run.plan.build_plan` builds them from the config's ``calibration`` and
``eval`` sections; Python users construct them directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from calib.run.correction_stage import check_corrections
from calib.selectors import SELECTORS
from calib.train import TrainConfig
from calib.validation import check_fraction, check_int

__all__ = ["PCVConfig", "CalibrationConfig", "EvalConfig", "MethodConfig", "LOGITS_MODES"]

#: The values of ``eval.logits``: keep each extraction's (N, C) logits, or stream them into a
#: :class:`calib.SeenAbsentState` (see :class:`EvalConfig`).
LOGITS_MODES = ("full", "state")


@dataclass(frozen=True)
class PCVConfig:
    """Pseudo Cross-Validation: k pseudo splits of S; no absent-class data is touched.

    Attributes:
        num_splits: k, the number of random pseudo splits of S (each fine-tunes one model).
        absent_fraction: share of S's classes made pseudo-absent in each split.
        holdout_fraction: share of each S class's training samples held out to score γ.
        seed: seed of the splits (split j uses ``seed + j``).
        finetune: training config of the pseudo runs; ``None`` = the main fine-tuning config.

    The criterion PCV maximises is a parameter of the ``pcv`` selector
    (``CalibrationConfig.options["pcv"]["criterion"]``).
    """

    num_splits: int = 3
    absent_fraction: float = 0.5
    holdout_fraction: float = 0.2
    seed: int = 0
    finetune: TrainConfig | None = None

    def __post_init__(self) -> None:
        check_int(self.num_splits, "pcv.num_splits", 1)
        check_fraction(self.absent_fraction, "pcv.absent_fraction")
        check_fraction(self.holdout_fraction, "pcv.holdout_fraction")
        check_int(self.seed, "pcv.seed", 0)
        if self.finetune is not None and not isinstance(self.finetune, TrainConfig):
            raise ValueError(f"pcv.finetune must be a TrainConfig or None, got {self.finetune!r}")


@dataclass(frozen=True)
class CalibrationConfig:
    """Which γ selectors a run fits, with their parameters.

    Attributes:
        selectors: keys of :data:`calib.selectors.SELECTORS`, in table order.
        options: ``{selector: {parameter: value}}``; a selector's declared parameters not given
            here take their declared defaults. Validated against each selector's declaration.
        pcv: settings of the PCV stage; required when a selector takes ``pseudo_splits``
            (or the ``bic`` correction is listed).
        corrections: post-hoc alternatives to γ fitted beside the selectors, keys of
            :data:`calib.run.correction_stage.CORRECTIONS` (``wa``, ``bic``, ``gla``).
    """

    selectors: tuple[str, ...] = ("alg", "oracle")
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pcv: PCVConfig | None = None
    corrections: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.selectors, str):
            raise ValueError(
                f"calibration.selectors must be a list of keys, got {self.selectors!r}"
            )
        selectors = tuple(self.selectors)
        object.__setattr__(self, "selectors", selectors)
        if len(set(selectors)) != len(selectors):
            raise ValueError(f"calibration.selectors lists a selector twice: {list(selectors)}")
        if not isinstance(self.options, Mapping):
            raise ValueError(f"calibration.options must be a mapping, got {self.options!r}")
        unused = sorted(set(self.options) - set(selectors))
        if unused:
            raise ValueError(
                f"calibration.options sets {unused}, which calibration.selectors does not list "
                f"({list(selectors)})"
            )
        resolved = {}
        for name in selectors:
            spec = SELECTORS.get(name)  # unknown key -> KeyError listing the known ones
            given = self.options.get(name) or {}
            if not isinstance(given, Mapping):
                raise ValueError(f"calibration.options.{name} must be a mapping, got {given!r}")
            try:
                resolved[name] = spec.check_params(dict(given))
            except (TypeError, ValueError) as err:
                raise ValueError(f"calibration.options.{name}: {err}") from None
            if "pseudo_splits" in spec.kind.inputs and self.pcv is None:
                raise ValueError(
                    f"selector {name!r} takes pseudo splits, but calibration.pcv is not set"
                )
        object.__setattr__(self, "options", resolved)
        checked = check_corrections(self.corrections, has_pcv=self.pcv is not None)
        object.__setattr__(self, "corrections", checked)

    def params(self, name: str) -> dict[str, Any]:
        """The full, validated parameters of selector ``name``."""
        return dict(self.options[name])

    @property
    def needs_pcv(self) -> bool:
        return "bic" in self.corrections or any(
            "pseudo_splits" in SELECTORS.get(n).kind.inputs for n in self.selectors
        )


@dataclass(frozen=True)
class EvalConfig:
    """Extraction settings and the per-epoch evaluation of the fine-tuning.

    Attributes:
        batch_size: extraction batch size per process.
        num_workers: extraction loader processes.
        amp: mixed precision on GPU.
        every_epochs: evaluate the model at epoch 0 and every k epochs of the fine-tuning (and
            at its last epoch) into ``history.jsonl`` and the dynamics figures; 0 = off.
        average: ``micro`` (per-sample accuracies) or ``macro`` (class-balanced: the mean over
            the classes of each group of the per-class accuracy, :mod:`calib.metrics.weights`).
        logits: ``full`` (default): each extraction stage caches the (N, C) logits (and
            features); ``state``: it streams them, batch by batch on the model's device, into
            a :class:`calib.SeenAbsentState` (O(N) memory whatever C) and caches that; the
            report, the curve and the selectors ``alg``, ``oracle``, ``prior``, ``pcv`` and
            ``fixed`` are computed from the states, equal to ``full``'s. What needs the logits
            themselves is not computed (the probability section and T: a softmax over every
            column; NCM: features; top-k at a selector's γ: top-k is kept at γ = 0 only), and a
            stage that needs them (``calibration.corrections``, a selector of another kind)
            stops the run at its start (:func:`calib.run.stage_plan.check_state_mode`).
            WiSE-FT's α trade-off streams each α's test data into a state too.
        figures: draw the run's figures (``curve.png``, ``reliability.png``, the dynamics
            figures, WiSE-FT's ``alpha_tradeoff.png``); off, a run writes its numbers and tables
            only (e.g. the points of a large sweep, whose figures ``calib-collate`` draws).
        figures_pdf: also write the figures as PDF.
    """

    batch_size: int = 256
    num_workers: int = 0
    amp: bool = True
    every_epochs: int = 0
    average: str = "micro"
    figures: bool = True
    figures_pdf: bool = False
    logits: str = "full"

    def __post_init__(self) -> None:
        check_int(self.batch_size, "eval.batch_size", 1)
        if self.logits not in LOGITS_MODES:
            raise ValueError(f"eval.logits must be one of {LOGITS_MODES}, got {self.logits!r}")
        check_int(self.num_workers, "eval.num_workers", 0)
        check_int(self.every_epochs, "eval.every_epochs", 0)
        if self.average not in ("micro", "macro"):
            raise ValueError(
                f"eval.average must be one of ('micro', 'macro'), got {self.average!r}"
            )
        if not isinstance(self.figures, bool):
            raise ValueError(f"eval.figures must be true or false, got {self.figures!r}")
        if not isinstance(self.figures_pdf, bool):
            raise ValueError(f"eval.figures_pdf must be true or false, got {self.figures_pdf!r}")
        if not isinstance(self.amp, bool):
            raise ValueError(f"eval.amp must be true or false, got {self.amp!r}")


@dataclass(frozen=True)
class MethodConfig:
    """How the model is fine-tuned: a :data:`calib.methods.METHODS` key and its parameters.

    Attributes:
        name: the method (``full``, ``frozen_head``, ``linear_probe``, ``lp_ft``, ``wise_ft``,
            ``distill_absent``, ``lora``, ``oracle_all`` or a registered one).
        params: the method's parameters; the declared defaults fill the rest (validated).
    """

    name: str = "full"
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from calib.methods import METHODS

        spec = METHODS.get(self.name)  # unknown key -> KeyError listing the known ones
        if not isinstance(self.params, Mapping):
            raise ValueError(f"finetune.method_options must be a mapping, got {self.params!r}")
        try:
            checked = spec.check_params(dict(self.params))
        except ValueError as err:
            raise ValueError(f"finetune.method_options: {err}") from None
        object.__setattr__(self, "params", checked)

    @property
    def spec(self):
        from calib.methods import METHODS

        return METHODS.get(self.name)
