"""The typed schema of a run config: every known key, its type and range, checked at start.

:func:`check_config` walks the config (the keys of ``conf/config.yaml``) before anything is
built and stops at the first bad value with one line naming the key, the value given and what
was expected — ``finetune.lr_scale must be a number > 0, got 'abc'``. Unknown keys in a closed
section are refused with the closest known key. Open sections (a dataset's or model's builder
arguments, optimizer kwargs, selector options) are checked by what they are passed to, at plan
time, still before any work.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["SCHEMA", "check_config", "ConfigError"]


class ConfigError(ValueError):
    """A config value is missing or invalid; the message names the key."""


Check = Callable[[Any], bool]


def _int(low: int | None = None) -> tuple[Check, str]:
    def ok(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and (low is None or v >= low)

    return ok, "an integer" if low is None else f"an integer ≥ {low}"


def _num(low: float | None = None, strict: bool = False) -> tuple[Check, str]:
    def ok(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        return low is None or (v > low if strict else v >= low)

    need = "a finite number" if low is None else f"a number {'>' if strict else '≥'} {low:g}"
    return ok, need


def _bool() -> tuple[Check, str]:
    return (lambda v: isinstance(v, bool)), "true or false"


def _str() -> tuple[Check, str]:
    return (lambda v: isinstance(v, str) and v != ""), "a non-empty string"


def _choice(*values: Any) -> tuple[Check, str]:
    return (lambda v: any(v is x or (type(v) is type(x) and v == x) for x in values)), (
        "one of " + ", ".join(repr(x) for x in values)
    )


def _list(of: tuple[Check, str], items: str) -> tuple[Check, str]:
    def ok(v: Any) -> bool:
        return isinstance(v, Sequence) and not isinstance(v, str) and all(of[0](x) for x in v)

    return ok, f"a list of {items}"


def _map() -> tuple[Check, str]:
    return (lambda v: isinstance(v, Mapping)), "a mapping"


def _either(*alternatives: tuple[Check, str]) -> tuple[Check, str]:
    return (lambda v: any(a[0](v) for a in alternatives)), " or ".join(a[1] for a in alternatives)


def _opt(spec: tuple[Check, str]) -> tuple[Check, str]:
    return (lambda v: v is None or spec[0](v)), f"{spec[1]} or null"


_AMP = _either(_bool(), _choice("auto", "bf16", "fp16", "off"))
_AUTO_BOOL = _either(_bool(), _choice("auto"))

_TRAIN = {
    "epochs": _int(1),
    "iters_per_epoch": _opt(_int(1)),
    "batch_size": _int(1),
    "amp": _AMP,
    "channels_last": _AUTO_BOOL,
    "num_workers": _int(0),
    "grad_clip": _opt(_num(0, strict=True)),
    "label_smoothing": _num(0),
    "sync_batchnorm": _bool(),
    "min_lr": _num(0),
    "seed": _int(0),
}

#: Known keys per section: ``None`` marks an open mapping whose keys are checked where used.
SCHEMA: dict[str, Any] = {
    "name": _str(),
    "seed": _int(0),
    "device": _str(),
    "progress": _AUTO_BOOL,
    "run_dir": _opt(_str()),
    "cache_dir": _opt(_str()),
    "imports": _list(_str(), "module names or .py paths"),
    "dataset": None,
    "source": None,
    "model": {
        "name": _str(),
        "pretrained": _either(_bool(), _str()),
        "weights": _opt(_str()),
        "kwargs": None,
    },
    "split": {
        "kind": _choice("explicit", "random", "benchmark"),
        "n_seen": _opt(_int(1)),
        "n_absent": _opt(_int(1)),
        "seen_fraction": _opt(_num(0, strict=True)),
        "seed": _int(0),
        "seen": _opt(_list(_int(0), "class indices ≥ 0")),
        "absent": _opt(_list(_int(0), "class indices ≥ 0")),
        "benchmark": _opt(_str()),
        "source": _opt(_str()),
    },
    "finetune": {
        **_TRAIN,
        "lr_scale": _num(0, strict=True),
        "method": _str(),
        "method_options": None,
    },
    "source_train": {
        **_TRAIN,
        "optimizer": _str(),
        "lr": _opt(_num(0, strict=True)),
        "lr_head": _opt(_num(0, strict=True)),
        "weight_decay": _opt(_num(0)),
        "momentum": _opt(_num(0)),
        "nesterov": _opt(_bool()),
        "scheduler": _str(),
        "warmup_iters": _int(0),
        "optimizer_kwargs": None,
    },
    "optimizer": {
        "name": _str(),
        "lr": _opt(_num(0, strict=True)),
        "lr_head": _opt(_num(0, strict=True)),
        "weight_decay": _opt(_num(0)),
        "momentum": _opt(_num(0)),
        "kwargs": None,
    },
    "scheduler": {"name": _str(), "warmup_iters": _int(0), "min_lr": _num(0)},
    "calibration": {
        "selectors": _list(_str(), "selector keys"),
        "options": None,
        "pcv": {
            "num_splits": _int(1),
            "absent_fraction": _num(0, strict=True),
            "holdout_fraction": _num(0, strict=True),
            "seed": _int(0),
            "finetune": None,
        },
    },
    "eval": {
        "batch_size": _int(1),
        "num_workers": _int(0),
        "amp": _bool(),
        "every_epochs": _int(0),
        "figures": _bool(),
        "figures_pdf": _bool(),
    },
}


def _check(section: Mapping[str, Any], schema: Mapping[str, Any], prefix: str) -> None:
    for key, value in section.items():
        name = f"{prefix}{key}"
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            known = ", ".join(sorted(schema))
            raise ConfigError(f"unknown config key {name}{hint}; known keys here: {known}")
        spec = schema[key]
        if spec is None:  # an open mapping
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"{name} must be a mapping or null, got {value!r}")
        elif isinstance(spec, Mapping):
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"{name} must be a mapping, got {value!r}")
            _check(value, spec, f"{name}.")
        elif not spec[0](value):
            raise ConfigError(f"{name} must be {spec[1]}, got {value!r}")


def check_config(cfg: Mapping[str, Any]) -> None:
    """Check every known key of ``cfg`` against :data:`SCHEMA`.

    Raises:
        ConfigError: the first bad or unknown key, named with the value given.
    """
    _check(cfg, SCHEMA, "")
