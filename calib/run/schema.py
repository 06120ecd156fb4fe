"""The typed schema of a run config: every known key, its type, range and meaning.

:func:`check_config` walks the config (the keys of ``conf/config.yaml``) before anything is
built and stops at the first bad value with one line naming the key, the value given and what
was expected — ``finetune.lr_scale must be a number > 0, got 'abc'``. Unknown keys in a closed
section are refused with the closest known key. Open sections (a dataset's or model's builder
arguments, optimizer kwargs, selector options) are checked by what they are passed to, at plan
time, still before any work.

Every key also carries a one-line description, the one source of ``calib-run --help``'s
(:func:`config_help`, :func:`describe_key`).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SCHEMA",
    "check_config",
    "config_help",
    "describe_key",
    "non_identity_keys",
    "ConfigError",
]


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


class _Leaf(tuple):
    """A leaf of :data:`SCHEMA`: ``(check, what it must be, one-line description)``, and
    ``identity``: whether its value can change a number (see :func:`non_identity_keys`)."""

    identity: bool

    def __new__(cls, check: Check, need: str, help: str, identity: bool = True) -> _Leaf:
        leaf = super().__new__(cls, (check, need, help))
        leaf.identity = identity
        return leaf


def _key(spec: tuple[Check, str], help: str, *, identity: bool = True) -> _Leaf:
    """A leaf of :data:`SCHEMA`: its check, what it must be, and its one-line description.

    ``identity=False`` declares that the key changes where or how fast a run computes, never
    what it computes (a device, a loader's workers, a folder): it keys no stage.
    """
    if not help:
        raise ValueError("every config key needs a description")
    return _Leaf(*spec, help, identity)


class _Section(dict):
    """A closed section of :data:`SCHEMA`: its known keys (a dict) and its description."""

    def __init__(self, help: str, keys: Mapping[str, Any]) -> None:
        super().__init__(keys)
        self.help = help


@dataclass(frozen=True)
class _Open:
    """An open section: any keys, checked where they are used (a builder's arguments, ...).

    ``known`` describes the keys the shipped configs use; ``each`` any other key;
    ``not_identity``: the known keys that change no number (see :func:`_key`).
    """

    help: str
    each: str
    known: Mapping[str, str] = field(default_factory=dict)
    not_identity: tuple[str, ...] = ()


_TRAIN = {
    "epochs": _key(_int(1), "number of epochs"),
    "iters_per_epoch": _key(_opt(_int(1)), "iterations per epoch; null = one pass over the data"),
    "batch_size": _key(
        _int(1), "samples per iteration, all processes together (each of N takes batch_size / N)"
    ),
    "amp": _key(
        _AMP,
        "mixed precision: auto (GPU: bf16 if native, else fp16; CPU: off) | bf16 | fp16 | off",
        identity=False,  # the stages are keyed by the precision it resolves to on the device
    ),
    "channels_last": _key(_AUTO_BOOL, "channels-last memory format: auto = on CUDA | true | false"),
    "num_workers": _key(_int(0), "data-loading processes", identity=False),
    "grad_clip": _key(_opt(_num(0, strict=True)), "max global gradient norm; null = no clipping"),
    "label_smoothing": _key(_num(0), "cross-entropy label smoothing in [0, 1)"),
    "sync_batchnorm": _key(_bool(), "SyncBatchNorm across torchrun processes (CUDA only)"),
    "min_lr": _key(_num(0), "floor of the cosine schedule"),
    "seed": _key(_int(0), "sample order and initial RNG state; default: the run's seed"),
}

_DATASET_KEYS = {
    "name": "a calib.data.DATASETS key (digits, office_home, imagenet_r, vtab, ...)",
    "root": "folder of the data set on disk",
    "domain": "the domain of a multi-domain data set (Office-Home: Art, Clipart, ...)",
    "task": "the VTAB-1k task (caltech101, cifar, dtd, ...)",
    "size": "image side in px the samples are cropped / scaled to",
    "resize": "evaluation resize in px before the centre crop; null = size / 0.875",
    "mean": "per-channel normalisation mean; null = the data set's",
    "std": "per-channel normalisation std; null = the data set's",
    "channels": "image channels (1 = greyscale, 3 = RGB)",
    "class_names": "class names in label order; null = the data set's",
    "list_dir": "folder of the sample lists; null = the shipped paper lists",
    "check_sample": "check only this many listed files at start; null = all",
    "quarter_turns": "fashion_mnist: the target's rotation in quarter turns (0-3)",
    "noise": "fashion_mnist: σ of the target's Gaussian pixel noise (grey levels in [0, 1])",
}
#: Where the data set lives and how much of it is checked at start: no number depends on it.
_DATASET_NOT_IDENTITY = ("root", "list_dir", "check_sample")

#: Known keys per section, each with its description: a leaf ``(check, need, description)``,
#: a closed section (``_Section``) or an open one (``_Open``, keys checked where used).
SCHEMA: dict[str, Any] = {
    "name": _key(_str(), "run name: output folder and table title", identity=False),
    "seed": _key(_int(0), "seed of the model's initialisation and of every training run"),
    "device": _key(_str(), "auto | cpu | cuda | cuda:1 ...", identity=False),
    "progress": _key(
        _AUTO_BOOL, "progress bars: auto = only on a terminal | true | false", identity=False
    ),
    "run_dir": _key(
        _opt(_str()), "where the run writes; null = outputs/<name>/<overrides>", identity=False
    ),
    "cache_dir": _key(
        _opt(_str()),
        "finished source models, shared by every run with the same source settings",
        identity=False,
    ),
    "imports": _key(
        _list(_str(), "module names or .py paths"),
        "Python modules or .py files imported first: they register models, selectors, ...",
    ),
    "deterministic": _key(
        _bool(),
        "deterministic CUDA kernels (cuDNN, cuBLAS workspace; warn-only): bit-exact GPU resume",
        identity=False,  # same computation, repeatable rounding; numbers equal in expectation
    ),
    "cudnn_benchmark": _key(
        _bool(),
        "cuDNN times its convolution algorithms per input size (fixed-size crops)",
        identity=False,
    ),
    "compile": _key(_bool(), "torch.compile the model for training", identity=False),
    "dist_timeout_min": _key(
        _int(1),
        "minutes a torchrun process waits for the others (process-group timeout)",
        identity=False,
    ),
    "dataset": _Open(
        "the target domain: a data set and its builder's arguments",
        "an argument of the data set's builder (calib.data.DATASETS)",
        _DATASET_KEYS,
        _DATASET_NOT_IDENTITY,
    ),
    "source": _Open(
        "the source domain, trained first (the pre-trained model); null = none; unset keys = dataset's",
        "an argument of the source data set's builder (calib.data.DATASETS)",
        _DATASET_KEYS,
        _DATASET_NOT_IDENTITY,
    ),
    "model": _Section(
        "the classifier",
        {
            "name": _key(_str(), "a calib.models.MODELS key or a timm model name"),
            "pretrained": _key(
                _either(_bool(), _str()),
                "load the model's own pre-trained weights (true), none (false) or a weights tag",
            ),
            "weights": _key(
                _opt(_str()), "a local weights file loaded after building; null = none"
            ),
            "kwargs": _Open(
                "further arguments of the model's builder",
                "an argument of the model's builder (calib.models.create_model)",
                {
                    "in_chans": "input channels of the first layer",
                    "img_size": "input image side in px the model is built for",
                    "class_names": "class names of the zero-shot head; from_dataset = the data set's",
                    "clip_model": "the open_clip architecture of the zero-shot model",
                    "templates": "prompt templates of the zero-shot head ({} = the class name)",
                },
            ),
        },
    ),
    "split": _Section(
        "how the target's classes split into seen S (fine-tuned) and absent U",
        {
            "kind": _key(
                _choice("explicit", "random", "benchmark", "infer"),
                "explicit | random | benchmark | infer (S = the classes of the target's training "
                "labels, U = the rest): which keys below apply (the others stay null)",
            ),
            "n_seen": _key(_opt(_int(1)), "random: number of seen classes"),
            "n_absent": _key(_opt(_int(1)), "random: number of absent classes; null = the rest"),
            "seen_fraction": _key(
                _opt(_num(0, strict=True)), "random: share of the classes seen, in (0, 1)"
            ),
            "seed": _key(_int(0), "random: seed of the draw"),
            "seen": _key(
                _opt(_list(_either(_int(0), _str()), "class indices ≥ 0 or class names")),
                "explicit: the seen classes (column indices or the target's class names)",
            ),
            "absent": _key(
                _opt(_list(_either(_int(0), _str()), "class indices ≥ 0 or class names")),
                "explicit: the absent classes (indices or names); null = the rest",
            ),
            "benchmark": _key(_opt(_str()), "benchmark: office_home | imagenet_r | imagenet_s"),
            "source": _key(
                _opt(_str()), "benchmark: Office-Home's source domain (its class order)"
            ),
        },
    ),
    "sequence": _key(
        _opt(_map()),
        "a sequence of fine-tunings, {stages: [[S_1], [S_2], ...]}: stage k a run on S_k started "
        "from stage k-1's checkpoint (calib.run.sequence_run); null = one run",
        identity=False,  # each stage's plan is keyed by its classes and its predecessor
    ),
    "finetune": _Section(
        "fine-tuning on S (the optimizer and scheduler groups fill the rest)",
        {
            **_TRAIN,
            "lr_scale": _key(
                _num(0, strict=True), "multiplies the optimizer group's lr and lr_head"
            ),
            "method": _key(
                _str(),
                "a calib.methods.METHODS key: full frozen_head linear_probe lp_ft wise_ft "
                "distill_absent lora oracle_all",
            ),
            "method_options": _Open(
                "the method's parameters (its declared defaults fill the rest)",
                "a parameter of the fine-tuning method",
            ),
        },
    ),
    "source_train": _Section(
        "training on the source domain (when source is set)",
        {
            **_TRAIN,
            "optimizer": _key(_str(), "a calib.train.OPTIMIZERS key"),
            "lr": _key(_opt(_num(0, strict=True)), "learning rate; null = the optimizer's"),
            "lr_head": _key(_opt(_num(0, strict=True)), "head learning rate; null = lr"),
            "weight_decay": _key(_opt(_num(0)), "weight decay; null = the optimizer's"),
            "momentum": _key(
                _opt(_num(0)), "null = the optimizer's (sgd: 0.9); sgd and rmsprop only"
            ),
            "nesterov": _key(_opt(_bool()), "Nesterov momentum; null = the optimizer's; sgd only"),
            "scheduler": _key(_str(), "a calib.train.SCHEDULERS key (cosine, constant)"),
            "warmup_iters": _key(_int(0), "linear warm-up iterations"),
            "optimizer_kwargs": _Open(
                "further arguments of the optimizer, merged over its defaults",
                "a constructor argument of the source optimizer",
            ),
        },
    ),
    "optimizer": _Section(
        "the fine-tuning's optimizer; null = its registry default (calib.train.OPTIMIZERS)",
        {
            "name": _key(_str(), "a calib.train.OPTIMIZERS key"),
            "lr": _key(
                _opt(_num(0, strict=True)), "backbone learning rate; null = the optimizer's"
            ),
            "lr_head": _key(
                _opt(_num(0, strict=True)),
                "head learning rate; null = the optimizer's (= lr when lr is set)",
            ),
            "weight_decay": _key(_opt(_num(0)), "weight decay; null = the optimizer's"),
            "momentum": _key(
                _opt(_num(0)), "momentum; null = the optimizer's; sgd and rmsprop only"
            ),
            "kwargs": _Open(
                "further arguments of the optimizer, merged over its defaults",
                "a constructor argument of the optimizer",
            ),
        },
    ),
    "scheduler": _Section(
        "the fine-tuning's learning-rate schedule, stepped every iteration",
        {
            "name": _key(_str(), "a calib.train.SCHEDULERS key (cosine, constant)"),
            "warmup_iters": _key(_int(0), "linear warm-up iterations"),
            "min_lr": _key(_num(0), "floor of the cosine schedule"),
        },
    ),
    "calibration": _Section(
        "the γ selectors the run fits",
        {
            "selectors": _key(
                _list(_str(), "selector keys"),
                "calib.selectors.SELECTORS keys, in table order (alg, pcv, prior, oracle, ...)",
            ),
            "corrections": _key(
                _list(_str(), "correction keys"),
                "post-hoc alternatives to γ fitted beside the selectors (wa, bic, gla; "
                "calib.run.correction_stage.CORRECTIONS); recomputed every run, no stage",
                identity=False,
            ),
            "options": _Open(
                "per selector, its parameters (declared defaults fill the rest)",
                "a selector's parameters (options.<selector>.<parameter>)",
            ),
            "pcv": _Section(
                "Pseudo Cross-Validation: k pseudo splits of S, no absent-class data",
                {
                    "num_splits": _key(_int(1), "k pseudo splits (each fine-tunes one model)"),
                    "absent_fraction": _key(
                        _num(0, strict=True), "share of S's classes made pseudo-absent"
                    ),
                    "holdout_fraction": _key(
                        _num(0, strict=True), "share of each S class held out to score γ"
                    ),
                    "seed": _key(_int(0), "seed of the splits (split j uses seed + j)"),
                    "finetune": _Open(
                        "fine-tuning keys of the pseudo runs; null = the main fine-tuning's",
                        "overrides that key of the fine-tuning in the pseudo runs",
                        {k: leaf[2] for k, leaf in _TRAIN.items()},
                        tuple(k for k, leaf in _TRAIN.items() if not leaf.identity),
                    ),
                },
            ),
        },
    ),
    "eval": _Section(
        "extraction and the per-epoch evaluation",
        {
            "batch_size": _key(_int(1), "extraction batch size per process", identity=False),
            "num_workers": _key(_int(0), "extraction data-loading processes", identity=False),
            "amp": _key(
                _bool(),
                "mixed precision on GPU (as finetune.amp: auto); the heads compute in fp32",
                identity=False,  # keyed by the resolved precision
            ),
            "every_epochs": _key(
                _int(0), "evaluate at epoch 0 and every k fine-tuning epochs; 0 = off"
            ),
            "logits": _key(
                _choice("full", "state"),
                "full: keep each extraction's (N, C) logits; state: stream them into "
                "SeenAbsentStates (O(N) memory; no probabilities, corrections, NCM or "
                "top-k at a selector's γ)",
            ),
            "average": _key(
                _choice("micro", "macro"),
                "how the report averages accuracies: micro = per sample, macro = "
                "class-balanced (mean over the classes of S, U, Y of per-class accuracy)",
                identity=False,  # the report is recomputed from the stages; names the folder
            ),
            "figures": _key(
                _bool(), "draw the run's figures; false: numbers and tables only", identity=False
            ),
            "figures_pdf": _key(_bool(), "also write the figures as PDF", identity=False),
        },
    ),
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
        if isinstance(spec, _Open):
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


def non_identity_keys(schema: Mapping[str, Any] | None = None, prefix: str = "") -> tuple[str, ...]:
    """The dotted keys of :data:`SCHEMA` declared to change no number (``identity=False``;
    ``_Open.not_identity``), in declaration order: :data:`calib.run.identity.NON_IDENTITY_KEYS`.
    """
    out: list[str] = []
    for key, spec in (SCHEMA if schema is None else schema).items():
        if isinstance(spec, _Open):
            out += [f"{prefix}{key}.{k}" for k in spec.not_identity]
        elif isinstance(spec, Mapping):
            out += non_identity_keys(spec, f"{prefix}{key}.")
        elif not spec.identity:
            out.append(f"{prefix}{key}")
    return tuple(out)


def check_config(cfg: Mapping[str, Any]) -> None:
    """Check every known key of ``cfg`` against :data:`SCHEMA`.

    Raises:
        ConfigError: the first bad or unknown key, named with the value given.
    """
    _check(cfg, SCHEMA, "")


def _help_of(spec: Any) -> str:
    return spec.help if isinstance(spec, (_Section, _Open)) else spec[2]


def describe_key(key: str) -> str | None:
    """The one-line description of a dotted config key (``finetune.epochs``).

    A key inside an open section is described when the shipped configs use it (e.g.
    ``dataset.root``, ``model.kwargs.in_chans``); a key inside a mapping-valued leaf
    (``sequence.stages``) by that leaf; ``None`` for any other unknown key.
    """
    spec: Any = _Section("", SCHEMA)
    parts = key.split(".")
    for i, part in enumerate(parts):
        if isinstance(spec, _Open):
            return spec.known.get(part) if i == len(parts) - 1 else None
        if isinstance(spec, _Leaf) and spec[0]({}):  # a mapping-valued leaf holds its own keys
            return _help_of(spec)
        if not isinstance(spec, Mapping) or part not in spec:
            return None
        spec = spec[part]
    return _help_of(spec)


_PLAIN = re.compile(r"[A-Za-z_$/.][\w$/.:,{}+@\-]*")  # shown as is; anything else is quoted


def _scalar(value: Any, in_list: bool = False) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        plain = value == "???" or (  # ???: a value the command line must give
            _PLAIN.fullmatch(value) and value not in ("null", "true", "false")
        )
        if plain and not (in_list and "," in value):
            return value
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k}: {_scalar(v, True)}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_scalar(v, True) for v in value) + "]"
    return repr(value)


def _help_lines(cfg: Mapping[str, Any], spec: Any, indent: str, out: list[tuple[str, str]]) -> None:
    for key, value in cfg.items():
        if isinstance(spec, _Open):
            child: Any = None
            help = spec.known.get(str(key), spec.each)
        elif isinstance(spec, _Leaf):  # inside a mapping-valued leaf: described by the leaf
            child, help = None, _help_of(spec)
        else:
            child = spec.get(key) if isinstance(spec, Mapping) else None
            help = "" if child is None else _help_of(child)
        if isinstance(value, Mapping) and value:
            out.append((f"{indent}{key}:", help))
            # a mapping inside an open section (a selector's options) keeps that section's text
            sub = spec if isinstance(spec, _Open) else child
            sub = sub if isinstance(sub, (_Section, _Open, _Leaf)) else None
            _help_lines(value, sub, indent + "  ", out)
        else:
            out.append((f"{indent}{key}: {_scalar(value)}", help))


def config_help(cfg: Mapping[str, Any], width: int = 40) -> str:
    """``cfg`` as YAML, each key followed by its one-line description (``calib-run --help``).

    Args:
        cfg: the composed config (the keys of ``conf/config.yaml``), unresolved or resolved.
        width: the column the descriptions start at (a longer line pushes its own further).

    Returns:
        One line per key: ``key: value`` in YAML block style (lists and mappings as flow), then
        ``# description``; a key :data:`SCHEMA` does not know (e.g. one added with ``+``) gets
        ``# (unknown key)``.
    """
    lines: list[tuple[str, str]] = []
    _help_lines(cfg, _Section("", SCHEMA), "", lines)
    return "\n".join(
        f"{text:<{width}}  # {help or '(unknown key)'}".rstrip() for text, help in lines
    )
