"""Deploy a calibrated model: ``CalibratedClassifier`` adds γ to the absent-class logits.

The wrapper is an ``nn.Module`` whose output is the wrapped model's logits plus γ on the
absent columns, as float64, built so that its argmax is the decision rule of
:mod:`calib.rules.gaps` in every input dtype (:func:`calib.rules.gaps.shifted_logits`). γ and the
absent mask are buffers, so they travel with ``.to(device)`` and ``state_dict()``.
:func:`calibrate` is the one-call path for a fine-tuned model: extract its logits on a loader,
fit a :class:`LogitBiasCalibrator`, wrap::

    calibrated = calib.calibrate(model, train_loader, seen_classes, method="alg")
    calibrated(x)                 # model(x) + γ on the absent columns (float64)
    calibrated.forward_proba(x)   # softmax(calibrated(x) / T), T the buffer ``temperature``
    calibrated.calibrator.gamma_  # the fitted calibrator
    calibrated.info               # its info_: how γ was chosen, where T came from
    calibrated.save("calibrated.pt")                  # weights + γ + U + T + the calibrator
    calibrated = calib.CalibratedClassifier.load("calibrated.pt", make_model())  # eval mode

Train and eval mode: ``forward`` follows the module's mode, as any ``nn.Module`` does (call
``.eval()`` before predicting with it); ``forward_proba`` always runs the model in eval mode
and puts every submodule's mode back; :meth:`CalibratedClassifier.load` returns the model in
eval mode; :func:`calibrate` extracts in eval mode and restores the model's modes. No
evaluation changes a buffer (BatchNorm running statistics).

Any model: its inputs are passed through as given (``calibrated(x)``,
``calibrated(input_ids, attention_mask=mask)``, ``calibrated(**tokenizer_output)``), and its
output may be a tensor, a tuple/list (first item) or a mapping such as a Hugging Face
``ModelOutput`` (its ``logits``; ``output_key=`` picks another entry). ``calibrate`` reads
Hugging Face dict batches (``pixel_values``/``input_ids``/``attention_mask``/``labels``) as
they are; see :mod:`calib.extract` for the batch and feature conventions. ``predict`` and
``predict_proba`` give class indices and probabilities, as the estimator does.

Class names: ``calibrate(..., class_names=names)`` (one name per column, index = label) takes S
and U as names (and ``seen_classes="infer"`` for ``alg``: S read off the loader's fine-tuning
labels, logged); the wrapper keeps them (``class_names``, ``absent_class_names``,
``predict_names(x)``) and its file round-trips them. They are plain Python attributes, outside
``forward``: tracing, scripting and exporting see none of them.

Compiling: ``torch.jit.trace``, ``torch.export.export`` and ONNX take the wrapper with any
inputs the model takes (keywords included). ``torch.jit.script`` cannot compile keyword
inputs; scripting the wrapper compiles its tensor form (``forward(x: Tensor) -> Tensor`` and
``forward_proba(x)``, :meth:`CalibratedClassifier.__prepare_scriptable__`), for a model that
takes one tensor and returns a logits tensor. Script the wrapper itself, not a module that
holds it (TorchScript prepares only the object it is given).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from calib.class_names import check_class_names, class_ids
from calib.estimator.calibrator import LogitBiasCalibrator, NotFittedError
from calib.estimator.file import calibrator_from_payload, calibrator_payload
from calib.extract import (
    check_batch_keys,
    evaluating,
    extract,
    features_and_logits,
    model_device,
    output_logits,
)
from calib.io import atomic_save
from calib.rules.torch_ops import shifted_logits_torch, softmax_rows_torch
from calib.selectors import check_gamma, selector_spec
from calib.validation import _class_index, temperature_value

__all__ = ["CalibratedClassifier", "calibrate", "shifted_logits_torch", "softmax_rows_torch"]

#: Format tag and version of :meth:`CalibratedClassifier.save` files.
FILE_FORMAT = "calib.CalibratedClassifier"
FILE_VERSION = 3
# version 1: before the temperature (loads with T = 1); 2: before the calibrator (loads
# with calibrator None)
_READ_VERSIONS = (1, 2, 3)


class CalibratedClassifier(nn.Module):
    """``model(x) + γ · 1[c ∈ U]``: a classifier with its absent-class logits raised by γ.

    The output is float64 (N, C) whatever the model's dtype, so that ``argmax`` of it is the
    rule that :meth:`LogitBiasCalibrator.predict` and :func:`calib.accuracy_report` apply
    (see :mod:`calib.estimator.calibrator`); it is ``LogitBiasCalibrator.transform`` of the model's
    logits. The wrapped model's weights are never changed; the wrapper starts in the model's
    train/eval mode, and ``forward`` runs in the mode the module is in (``.eval()`` to
    predict); :meth:`forward_proba` always runs in eval mode.

    Args:
        model: the fine-tuned classifier; its logits must be (N, num_classes): its output
            itself, the first item of a tuple/list, or a mapping's / Hugging Face
            ``ModelOutput``'s ``"logits"`` (see ``output_key``).
        gamma: the bias γ in logit units (finite).
        absent_classes: U, the columns that receive γ.
        num_classes: C, the number of logit columns.
        temperature: T of :meth:`forward_proba`: a number > 0 (1 = none) or a pair
            (T_S, T_U) (a sample predicted in U is divided by T_U, any other by T_S).
        output_key: where the logits are in the model's output: a mapping's key (default
            ``"logits"``) or a tuple's index (default 0); None for a tensor or the defaults.
            Saved with the wrapper.
        class_names: one name per column (index = label), or None; ``absent_classes`` may
            then be names. Saved with the wrapper; read them as :attr:`class_names`.

    Calling: ``forward``, ``forward_proba``, ``predict``, ``predict_proba`` and
    ``forward_features_logits`` pass their positional and keyword inputs to the model as given
    (``wrapped(input_ids, attention_mask=mask)``, ``wrapped(**batch)``).

    Buffers:
        gamma: 0-d float64 tensor. absent_mask: (C,) bool tensor, True on U.
        temperature: 0-d float64 tensor T, or (2,) float64 tensor (T_S, T_U).

    Attributes:
        calibrator: the fitted :class:`LogitBiasCalibrator` this wrapper was built from (or
            read back by :meth:`load`), or None: the wrapper does not know how γ and T were
            chosen (built from numbers, or loaded from a file written without a calibrator).
        info: the calibrator's ``info_`` (the selector's details and the temperature's
            provenance: ``temperature_data``, ``temperature_samples``, ...), or None with
            ``calibrator``.
    """

    def __init__(
        self,
        model: nn.Module,
        gamma: float,
        absent_classes: Any,
        num_classes: int,
        temperature: float | tuple[float, float] = 1.0,
        *,
        output_key: str | int | None = None,
        class_names: Any = None,
    ) -> None:
        super().__init__()
        if (
            isinstance(num_classes, bool)
            or not isinstance(num_classes, (int, np.integer))
            or num_classes < 2
        ):
            raise ValueError(f"num_classes must be an integer ≥ 2, got {num_classes!r}")
        num_classes = int(num_classes)
        names = check_class_names(class_names, num_classes)
        absent_classes = class_ids(absent_classes, names, "absent_classes")
        absent = _class_index(absent_classes, num_classes, "absent_classes")
        if absent.size == num_classes:
            raise ValueError(
                "absent_classes covers every column: at least one column must stay un-shifted"
            )
        gamma = check_gamma(gamma)
        _check_output_key(output_key)
        t = temperature_value(temperature)  # one T, or a pair (list, tuple, array, tensor)
        t_value = list(t) if isinstance(t, tuple) else t
        device = model_device(model)
        mask = torch.zeros(num_classes, dtype=torch.bool, device=device)
        mask[torch.as_tensor(absent, device=device)] = True
        self.model = model
        self.num_classes = num_classes
        self.register_buffer("gamma", torch.tensor(gamma, dtype=torch.float64, device=device))
        self.register_buffer("absent_mask", mask)
        self.register_buffer(
            "temperature", torch.tensor(t_value, dtype=torch.float64, device=device)
        )
        self.output_key = output_key
        self._class_names = names
        self.calibrator: LogitBiasCalibrator | None = None
        self.training = model.training  # the wrapper's own flag only: submodules keep theirs

    @classmethod
    def from_calibrator(
        cls,
        model: nn.Module,
        calibrator: LogitBiasCalibrator,
        *,
        output_key: str | int | None = None,
        class_names: Any = None,
    ) -> CalibratedClassifier:
        """Wrap ``model`` with the γ, absent classes and temperature of a fitted calibrator.

        The calibrator is kept as ``.calibrator``; a calibrator without ``temperature_``
        (pickled before it existed) gives T = 1. ``output_key``: as in the constructor.
        ``class_names``: default the calibrator's ``class_names_``; given, they must equal
        those (when it has any).
        """
        if not hasattr(calibrator, "gamma_"):
            raise NotFittedError("from_calibrator needs a fitted calibrator: call fit(...) first")
        fitted_names = getattr(calibrator, "class_names_", None)
        names = check_class_names(class_names, calibrator.num_classes_)
        if names is None:
            names = fitted_names
        elif fitted_names is not None and names != tuple(fitted_names):
            raise ValueError(
                "class_names differ from the calibrator's class_names_ (fitted with other "
                "names): give the same names, or none (the calibrator's are used)"
            )
        wrapped = cls(
            model,
            calibrator.gamma_,
            calibrator.absent_classes_,
            calibrator.num_classes_,
            getattr(calibrator, "temperature_", 1.0),
            output_key=output_key,
            class_names=names,
        )
        wrapped.calibrator = calibrator
        return wrapped

    @property
    def info(self) -> dict[str, Any] | None:
        """The calibrator's ``info_`` (how γ was chosen, where T came from); None when the
        wrapper knows no calibrator (see :attr:`calibrator`)."""
        return None if self.calibrator is None else getattr(self.calibrator, "info_", None)

    @property
    def absent_classes(self) -> np.ndarray:
        """U as a sorted int64 numpy array."""
        return torch.nonzero(self.absent_mask).flatten().cpu().numpy()

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The name of every column (index = label), or None when none were given."""
        return self._class_names

    @property
    def absent_class_names(self) -> tuple[str, ...] | None:
        """The names of U, in column order, or None without :attr:`class_names`."""
        names = self._class_names
        return None if names is None else tuple(names[c] for c in self.absent_classes.tolist())

    def predict_names(self, x: Any = None, *args: Any, **kwargs: Any) -> list[str]:
        """The names of :meth:`predict`'s classes: a list of N str. Inputs as in
        :meth:`forward`.

        Raises:
            ValueError: the wrapper has no :attr:`class_names`.
        """
        names = self._class_names
        if names is None:
            raise ValueError(
                "predict_names needs class_names: build the wrapper (or calibrate) with "
                "class_names=[one name per column]; predict gives the column indices"
            )
        return [names[c] for c in self.predict(x, *args, **kwargs).tolist()]

    def _check(self, out: Any) -> torch.Tensor:
        return _checked_logits(out, self.num_classes)

    def forward(self, x: Any = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Calibrated logits (N, C) float64: the model's logits plus γ on the absent columns.

        ``wrapped(x)``, ``wrapped(x, mask)``, ``wrapped(input_ids, attention_mask=mask)`` or
        ``wrapped(**batch)``: the inputs go to the model as given.
        """
        return self._calibrated(x, args, kwargs)

    def _calibrated(self, x: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
        out = self.model(*_inputs(x, args), **kwargs)
        return shifted_logits_torch(
            self._check(output_logits(out, self.output_key)), self.absent_mask, self.gamma
        )

    def forward_proba(self, x: Any = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Calibrated probabilities (N, C) float64: softmax(forward(x) / T), rows summing to 1.

        A prediction, never a training step: the model runs in eval mode (dropout off,
        BatchNorm on its running statistics, which stay unchanged) whatever the module's
        mode, and every submodule's train/eval flag is put back afterwards. ``argmax`` equals
        that of :meth:`forward` in eval mode (T never moves a prediction; see
        :func:`softmax_rows_torch`); equal to :meth:`LogitBiasCalibrator.predict_proba` of
        the model's logits to float64 rounding. Inputs as in :meth:`forward`.

        Scripted (``torch.jit.script``), it takes one tensor and raises ``torch.jit.Error``
        in train mode (a script cannot switch its submodules' modes: call ``.eval()`` first).
        """
        with self._eval_mode():
            return softmax_rows_torch(
                self._calibrated(x, args, kwargs), self.absent_mask, self.temperature
            )

    def predict_proba(self, x: Any = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Calibrated probabilities (N, C) float64, rows summing to 1: :meth:`forward_proba`
        (the estimator's name, :meth:`LogitBiasCalibrator.predict_proba`)."""
        return self.forward_proba(x, *args, **kwargs)

    def predict(self, x: Any = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Predicted classes (N,) int64, on the model's device: ``argmax`` of the calibrated
        logits, i.e. the rule of :meth:`LogitBiasCalibrator.predict` on the model's logits.
        Runs in eval mode as :meth:`forward_proba` does. Inputs as in :meth:`forward`."""
        with self._eval_mode():
            return self._calibrated(x, args, kwargs).argmax(dim=1)

    def _eval_mode(self) -> Any:
        """``evaluating(self)`` when any submodule is in train mode (else nothing to switch)."""
        if any(module.training for module in self.modules()):
            return evaluating(self)
        return contextlib.nullcontext()

    def forward_features_logits(
        self, x: Any = None, *args: Any, features_from: str | None = None, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, calibrated logits): see :func:`calib.extract.features_and_logits`
        (``features_from`` names the model's head, e.g. ``"classifier"``, for a model without
        ``forward_features_logits`` or timm's split)."""
        features, out = features_and_logits(
            self.model,
            *_inputs(x, args),
            features_from=features_from,
            output_key=self.output_key,
            **kwargs,
        )
        return features, shifted_logits_torch(self._check(out), self.absent_mask, self.gamma)

    def __prepare_scriptable__(self) -> nn.Module:
        """What ``torch.jit.script(wrapped)`` compiles: the tensor form of this wrapper (same
        model, same buffers), ``forward(x: Tensor) -> Tensor`` and ``forward_proba(x)``.

        Raises:
            TypeError: an ``output_key`` is set (a script takes a logits tensor from the
                model; trace or ``torch.export`` the wrapper instead).
        """
        if self.output_key is not None:
            raise TypeError(
                f"torch.jit.script needs a model that returns a logits tensor; this wrapper "
                f"reads output_key={self.output_key!r} of its output: use torch.jit.trace or "
                "torch.export.export instead"
            )
        return _ScriptableCalibrated(self)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        gamma = state_dict.get(prefix + "gamma")
        if gamma is not None and (gamma.numel() != 1 or not torch.isfinite(gamma).all()):
            raise ValueError(
                f"state_dict entry {prefix}gamma must be one finite number, got {gamma}"
            )
        self._load_temperature(state_dict.get(prefix + "temperature"), prefix)
        mask = state_dict.get(prefix + "absent_mask")
        if mask is not None:
            if mask.dtype != torch.bool or tuple(mask.shape) != (self.num_classes,):
                raise ValueError(
                    f"state_dict entry {prefix}absent_mask must be a ({self.num_classes},) bool "
                    f"tensor, got {mask.dtype} of shape {tuple(mask.shape)}"
                )
            n_absent = int(mask.sum())
            if n_absent == 0 or n_absent == self.num_classes:
                raise ValueError(
                    f"state_dict entry {prefix}absent_mask marks {n_absent} of "
                    f"{self.num_classes} columns: at least one must be absent and one not"
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _load_temperature(self, t: Any, prefix: str) -> None:
        """Check a state dict's T; a 0-d T replacing a (2,) one (or back) resizes the buffer."""
        if t is None:
            return
        ok = isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() in (0, 1)
        ok = ok and t.numel() == (1 if t.dim() == 0 else 2)
        if not ok or not bool(torch.isfinite(t).all() and (t > 0).all()):
            raise ValueError(
                f"state_dict entry {prefix}temperature must be one number > 0 or a pair "
                f"(T_S, T_U) of them (0-d or (2,) float tensor), got {t!r}"
            )
        if t.shape != self.temperature.shape:
            self.temperature = torch.zeros_like(t, dtype=torch.float64, device=self.gamma.device)

    def extra_repr(self) -> str:
        n_absent = int(self.absent_mask.sum())
        t = self.temperature.tolist()
        t_text = f"{t:.6g}" if isinstance(t, float) else "({:.6g}, {:.6g})".format(*t)
        return (
            f"gamma={float(self.gamma):.6g}, absent_classes={n_absent} of {self.num_classes}, "
            f"temperature={t_text}"
        )

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike) -> None:
        """Write γ, U, C, T, ``output_key``, the calibrator and the wrapped model's
        ``state_dict`` to ``path``, atomically.

        The calibrator (parameters, fit and ``info_``, as in its own JSON file) is written when
        it agrees with the wrapper's γ, U, C and T; one changed since (e.g. by
        ``load_state_dict``), or none, is written as None, with a warning in the first case,
        and :meth:`load` then gives ``calibrator = info = None``. Only tensors, numbers,
        strings, lists and dicts: the file loads with ``torch.load(weights_only=True)``
        (:meth:`load` does that).
        """
        payload = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "gamma": float(self.gamma),
            "temperature": self.temperature.tolist(),
            "absent_classes": self.absent_classes.tolist(),
            "num_classes": self.num_classes,
            "calibrator": self._calibrator_record(),
            "output_key": self.output_key,
            "class_names": None if self._class_names is None else list(self._class_names),
            "model_state_dict": self.model.state_dict(),
        }
        atomic_save(path, lambda fh: torch.save(payload, fh))

    def _calibrator_record(self) -> dict[str, Any] | None:
        """The calibrator's JSON object for :meth:`save`, or None (none, or not this γ/U/T)."""
        cal = self.calibrator
        if cal is None:
            return None
        if not isinstance(cal, LogitBiasCalibrator) or not hasattr(cal, "gamma_"):
            warnings.warn(
                f"the wrapper's calibrator is a {type(cal).__name__}, not a fitted "
                "LogitBiasCalibrator: the file keeps no calibrator",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        if not _agrees(
            cal,
            float(self.gamma),
            self.absent_classes.tolist(),
            self.num_classes,
            self.temperature.tolist(),
        ):
            warnings.warn(
                "the wrapper's γ, absent classes or temperature differ from its calibrator's "
                "(changed after wrapping): the file keeps no calibrator",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        return calibrator_payload(cal)

    @classmethod
    def load(
        cls, path: str | os.PathLike, model: nn.Module, map_location: Any = None
    ) -> CalibratedClassifier:
        """Read a file of :meth:`save` into ``model`` (an instance of the wrapped architecture).

        Loads with ``torch.load(weights_only=True)``: no code is unpickled. ``model``'s weights
        and buffers are replaced by the saved ones (strictly: every key must match). The
        wrapper comes back in **eval mode** (``model`` included, every submodule), ready to
        predict what the saved one predicted in eval mode; call ``.train()`` to fine-tune it
        further. Its ``calibrator`` (and ``info``) is the saved calibrator, or None for a file
        written without one (before file version 3, or from a wrapper without a calibrator).
        Its ``class_names`` are the saved ones (None for a file written before them: the
        names came without a new version, as they change no number). A calibrator of a
        user-registered selector needs that selector registered first.

        Raises:
            FileNotFoundError: no file. ValueError: not such a file, or invalid γ / classes /
                calibrator.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no calibrated-model file at {path}")
        if map_location is None:
            map_location = model_device(model)
        try:
            data = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:  # a truncated file, a pickle with code, ...
            raise ValueError(f"{path} is not a calibrated-model file: {err}") from None
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise ValueError(f"{path} is not a calibrated-model file (format tag missing)")
        if data.get("version") not in _READ_VERSIONS:
            raise ValueError(
                f"{path}: version {data.get('version')!r}, expected one of {_READ_VERSIONS}"
            )
        model.load_state_dict(data["model_state_dict"])
        try:
            t = data.get("temperature", 1.0)  # version 1: T = 1
            wrapped = cls(
                model,
                data["gamma"],
                data["absent_classes"],
                data["num_classes"],
                t,
                output_key=data.get("output_key"),  # older files: none
                class_names=data.get("class_names"),  # older files: none
            )
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"{path} is a corrupt calibrated-model file: {err}") from None
        record = data.get("calibrator")  # versions 1 and 2: none
        if record is not None:
            cal = calibrator_from_payload(
                LogitBiasCalibrator, record, f"{path}: the calibrator entry"
            )
            args = (data["gamma"], wrapped.absent_classes.tolist(), wrapped.num_classes, t)
            fitted_names = cal.class_names_
            if not _agrees(cal, *args) or (
                None not in (fitted_names, wrapped.class_names)
                and fitted_names != wrapped.class_names
            ):
                raise ValueError(
                    f"{path} is a corrupt calibrated-model file: its calibrator's γ, classes, "
                    "temperature or class names differ from the file's"
                )
            wrapped.calibrator = cal
        return wrapped.eval()


class _ScriptableCalibrated(nn.Module):
    """The tensor form of a :class:`CalibratedClassifier` that ``torch.jit.script`` compiles:
    the same model and the same buffers (shared, not copied), ``forward(x: Tensor) -> Tensor``
    and ``forward_proba(x)``; the model must return a logits tensor."""

    def __init__(self, wrapped: CalibratedClassifier) -> None:
        super().__init__()
        self.model = wrapped.model
        self.num_classes = wrapped.num_classes
        self.register_buffer("gamma", wrapped.gamma)
        self.register_buffer("absent_mask", wrapped.absent_mask)
        self.register_buffer("temperature", wrapped.temperature)
        self.training = wrapped.training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated logits (N, C) float64."""
        return self._calibrated(x)

    def _calibrated(self, x: torch.Tensor) -> torch.Tensor:
        # forward's body, apart from forward: jit.trace after jit.script of a module whose
        # exported forward_proba called forward would define forward twice
        out = self.model(x)
        return shifted_logits_torch(
            _checked_shape(out, self.num_classes), self.absent_mask, self.gamma
        )

    @torch.jit.export
    def forward_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities (N, C) float64; refuses train mode (see
        :meth:`CalibratedClassifier.forward_proba`)."""
        if self.training or self.model.training:
            raise RuntimeError(
                "forward_proba of a scripted CalibratedClassifier in train mode: call .eval() "
                "on it first (a script cannot switch its submodules to eval mode)"
            )
        return softmax_rows_torch(self._calibrated(x), self.absent_mask, self.temperature)


def _inputs(x: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The model's positional inputs: ``x`` and ``args``, none when called with keywords only."""
    return args if x is None and not args else (x, *args)


def _checked_logits(out: Any, num_classes: int) -> torch.Tensor:
    """``out`` when it is an (N, num_classes) real tensor; else a clear error."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"the wrapped model's logits must be a tensor, got {type(out).__name__} (pick the "
            "entry of its output that holds them with output_key=...)"
        )
    return _checked_shape(out, num_classes)


def _checked_shape(out: torch.Tensor, num_classes: int) -> torch.Tensor:
    if out.dim() != 2 or out.shape[1] != num_classes:
        raise ValueError(
            f"the wrapped model must return (N, {num_classes}) logits, got shape {list(out.shape)}"
        )
    if out.is_complex():
        raise ValueError("the wrapped model returned complex logits")
    return out


def _check_output_key(output_key: Any) -> None:
    if output_key is not None and (
        isinstance(output_key, bool) or not isinstance(output_key, (str, int)) or output_key == ""
    ):
        raise ValueError(
            "output_key must be None, a key of the model's output mapping (a string, e.g. "
            f"'logits') or an index of its output tuple (an int), got {output_key!r}"
        )


def _agrees(cal: Any, gamma: float, absent: list, num_classes: int, temperature: Any) -> bool:
    """Whether the fitted calibrator ``cal`` has this γ, U (list), C and T (number or pair)."""
    t_cal = getattr(cal, "temperature_", 1.0)
    return (
        cal.gamma_ == gamma
        and cal.num_classes_ == num_classes
        and np.asarray(cal.absent_classes_).tolist() == list(absent)
        and np.atleast_1d(t_cal).tolist() == np.atleast_1d(temperature).tolist()
    )


def _check_device(device: Any) -> torch.device | None:
    if device is None:
        return None
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a torch device: {err}") from None
    if device.type == "meta":
        raise ValueError(
            "device='meta' holds no data: calibrate needs a device that computes (cpu, cuda, ...)"
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} but CUDA is not available on this machine")
    return device


def calibrate(
    model: nn.Module,
    loader: Any,
    seen_classes: Any,
    absent_classes: Any = None,
    method: str = "alg",
    device: str | torch.device | None = None,
    num_classes: int | None = None,
    progress: bool = True,
    *,
    output_key: str | int | None = None,
    batch_keys: Mapping[str, str | None] | None = None,
    class_names: Any = None,
    **selector_kwargs: Any,
) -> CalibratedClassifier:
    """Extract ``model``'s logits on ``loader``, fit a :class:`LogitBiasCalibrator`, wrap.

    What runs is read from the selector's declaration (:class:`calib.selectors.SelectorSpec`):
    the model runs over ``loader`` only when the selector reads logits (or to learn the
    number of columns when nothing else tells it), and the loader's labels are passed only
    to selectors that read labels. So ``loader`` holds:

    - ``alg`` (``finetune_train``): the fine-tuning training data (labels in S only).
    - ``oracle`` (``target_labelled``): labelled target data including absent classes.
    - ``prior`` (``target_unlabelled``): target data; its labels, if any, are not used.
    - ``pcv`` and ``fixed``: nothing (``loader`` may be None): pass ``pseudo_splits=`` for
      ``pcv``, ``gamma=`` for ``fixed``, and ``num_classes`` unless the loader should be
      run to learn it.

    Args:
        model: the fine-tuned classifier; its weights and buffers are not changed; the
            extraction runs in eval mode and every submodule's train/eval mode is restored
            after it. The wrapper starts in the model's mode: ``.eval()`` it to predict with
            ``forward`` (``forward_proba`` runs in eval mode by itself).
        loader: yields ``(x, y)`` batches or dicts: calib's ``"image"``/``"label"``, or
            Hugging Face's ``"pixel_values"`` or ``"input_ids"`` (+ ``"attention_mask"``, any
            other entry: keyword inputs of the model) and ``"labels"``; see
            :func:`calib.extract.split_batch`.
        seen_classes: S: column indices, or names given ``class_names``; ``"infer"`` for
            ``alg``: S = the distinct labels of ``loader`` (the fine-tuning data), logged
            (:func:`calib.infer_seen_classes`); other methods refuse it, before the model runs.
        absent_classes: U (default every column not in S), indices or names.
        method: selector key (see :mod:`calib.selectors`).
        device: where to run the model (None = where it is); a given device moves the model.
        num_classes: C, when no logits tell it.
        progress: show a progress bar during extraction.
        output_key: where the logits are in the model's output (default: the output itself,
            a tuple's first item, a mapping's / ``ModelOutput``'s ``"logits"``); kept by the
            wrapper.
        batch_keys: dict-batch keys ``{"input": ..., "label": ...}`` other than the defaults
            (see :func:`calib.extract.extract`).
        class_names: one name per column (index = label): S and U may be names (a name that
            is not a class stops before the model runs, with the closest names); kept by the
            calibrator (``class_names_``) and the wrapper (``class_names``).
        **selector_kwargs: ``gamma``, ``criterion``, ``prior``, ``options``, ``temperature``
            (calibrator parameters; ``temperature="fit"`` fits T on the same data as γ), any parameter the selector declares (goes into ``options``), and
            ``pseudo_splits`` (data for ``pcv``).

    Returns:
        The :class:`CalibratedClassifier`, with the fitted calibrator as ``.calibrator``.
    """
    spec = selector_spec(method, "calibrate(method")
    device = _check_device(device)
    _check_output_key(output_key)
    batch_keys = check_batch_keys(batch_keys)
    pseudo_splits = selector_kwargs.pop("pseudo_splits", None)
    explicit = {
        k: selector_kwargs.pop(k)
        for k in ("gamma", "criterion", "prior", "options", "temperature")
        if k in selector_kwargs
    }
    unknown = sorted(set(selector_kwargs) - set(spec.params))
    if unknown:
        raise TypeError(
            f"calibrate() got unexpected keyword(s) {unknown}; method {method!r} takes "
            f"{sorted(spec.params) or 'no parameters'} (and pseudo_splits for pcv)"
        )
    if selector_kwargs:
        explicit["options"] = {**(explicit.get("options") or {}), **selector_kwargs}
    calibrator = LogitBiasCalibrator(method=method, **explicit)
    calibrator._selector_params(spec)  # bad parameters stop before the model runs
    calibrator._temperature_param(spec)
    calibrator._check_classes_param(spec, seen_classes, absent_classes, class_names)

    fit_data: dict[str, Any] = {}
    needs_width = num_classes is None and pseudo_splits is None
    if spec.needs_logits or needs_width:
        if loader is None:
            raise ValueError(f"method {method!r} needs a loader to extract logits from")
        extracted = extract(
            model,
            loader,
            device,
            progress=progress,
            desc=f"calibrate ({method})",
            output_key=output_key,
            batch_keys=batch_keys,
        )
        if spec.needs_logits:
            fit_data["logits"] = extracted.logits
        if spec.needs_labels:
            if extracted.labels is None:
                raise ValueError(
                    f"method {method!r} needs labels, but the loader's batches have none (a "
                    "dict batch keeps them under 'label' or 'labels'; name another key with "
                    "batch_keys={'label': ...})"
                )
            fit_data["labels"] = extracted.labels
        if needs_width:
            num_classes = int(extracted.logits.shape[1])
    elif device is not None:
        model.to(device)

    calibrator.fit(
        seen_classes=seen_classes,
        absent_classes=absent_classes,
        pseudo_splits=pseudo_splits,
        num_classes=num_classes,
        class_names=class_names,
        **fit_data,
    )
    return CalibratedClassifier.from_calibrator(model, calibrator, output_key=output_key)
