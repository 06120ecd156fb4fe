"""Config sections → built objects: domains, the class split, training and calibration settings.

Each builder reads one section of the config (the keys of ``conf/config.yaml``) and re-raises
a bad value as :class:`~calib.run.schema.ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from calib.class_names import class_ids
from calib.data import DATASETS, ClassSplit, Domain
from calib.run.schema import ConfigError
from calib.run.settings import CalibrationConfig, MethodConfig, PCVConfig
from calib.train import TrainConfig

__all__ = [
    "build_calibration",
    "build_method",
    "build_split",
    "build_train_config",
    "resolved_split_classes",
    "split_names_classes",
    "domain_from_config",
    "section",
    "source_spec",
    "wrap",
]


def section(cfg: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = cfg.get(key)
    return {} if value is None else dict(value)


def wrap(key: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; re-raise value/type/key errors as ConfigError naming the config key."""
    try:
        return fn()
    except ConfigError:
        raise
    except (ValueError, TypeError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ConfigError(f"invalid {key}: {msg}") from err


def domain_from_config(spec: Mapping[str, Any], key: str = "dataset") -> Domain:
    """A :class:`~calib.data.Domain` from ``{name: <DATASETS key>, **builder kwargs}``."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if not name:
        raise ConfigError(f"{key}.name is required (one of: {', '.join(DATASETS.names())})")
    builder = wrap(f"{key}.name", lambda: DATASETS.get(name))
    return wrap(key, lambda: builder(**spec))


def source_spec(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The source domain's builder arguments: ``source`` over ``dataset`` when both name the
    same dataset (a source domain of the target's dataset shares its root and image settings,
    so an experiment only sets what differs, e.g. ``source.domain``)."""
    source = cfg.get("source")
    if not source:
        return None
    source = dict(source)
    dataset = section(cfg, "dataset")
    if source.get("name", dataset.get("name")) == dataset.get("name"):
        return {**dataset, **source}
    return source


def build_split(
    spec: Mapping[str, Any],
    num_classes: int,
    class_names: Sequence[str] | None = None,
    train_labels: Callable[[], Any] | None = None,
) -> ClassSplit:
    """The seen/absent class split from the ``split`` config section.

    ``kind``: ``explicit`` (``seen``, ``absent`` or null = the rest; column indices or, given
    ``class_names``, the target's class names), ``random`` (``n_seen`` or ``seen_fraction``
    (n_seen = ⌊fraction · C⌋), ``n_absent`` or null, ``seed``), ``benchmark`` (``benchmark``,
    ``source`` for Office-Home), ``infer`` (S = the classes present in ``train_labels()``, the
    target's fine-tuning labels, U = every other column; logged on ``calib.classes``). A key of
    another kind must stay null.

    Args:
        spec: the ``split`` section.
        num_classes: C, the target's head size.
        class_names: the target's class names (index = label) for named classes.
        train_labels: returns the target's (N,) training labels; needed by ``infer`` only.

    Raises:
        ConfigError: naming the key: a missing or stray key, a name that is not a class of the
            target (``split.seen: 'cta' is not a class name; did you mean 'cat'?``), a split
            the classes cannot give.
    """
    kind = spec.get("kind", "random")
    used = {
        "explicit": {"seen", "absent"},
        "random": {"n_seen", "seen_fraction", "n_absent", "seed"},
        "benchmark": {"benchmark", "source"},
        "infer": set(),
    }
    if kind not in used:
        raise ConfigError(f"split.kind must be explicit, random, benchmark or infer, got {kind!r}")
    stray = sorted(
        k for k, v in spec.items() if k not in used[kind] | {"kind", "seed"} and v is not None
    )
    if stray:
        takes = f"it takes {', '.join(sorted(used[kind]))}" if used[kind] else "it takes none"
        raise ConfigError(
            f"split.{stray[0]} is not used with split.kind={kind} ({takes}); set it to null"
        )

    def make() -> ClassSplit:
        if kind == "explicit":
            if spec.get("seen") is None:
                raise ConfigError("split.seen is required with split.kind=explicit")
            seen, absent = resolved_split_classes(spec, class_names)
            return ClassSplit.explicit(seen, absent, num_classes=num_classes)
        if kind == "infer":
            if train_labels is None:
                raise ConfigError("split.kind=infer needs the target's training labels")
            return ClassSplit.inferred(
                train_labels(), num_classes, class_names, source="target training labels"
            )
        if kind == "random":
            return ClassSplit.random(
                num_classes,
                _n_seen(spec, num_classes),
                spec.get("n_absent"),
                seed=spec.get("seed", 0),
            )
        if spec.get("benchmark") is None:
            raise ConfigError("split.benchmark is required with split.kind=benchmark")
        split = ClassSplit.from_benchmark(spec["benchmark"], source=spec.get("source"))
        if split.num_classes != num_classes:
            raise ConfigError(
                f"split.benchmark={spec['benchmark']} is a {split.num_classes}-class split "
                f"but the dataset has {num_classes} classes"
            )
        return split

    return wrap("split", make)


def split_names_classes(spec: Mapping[str, Any]) -> bool:
    """Whether the ``split`` section names classes (a string in ``seen`` or ``absent``)."""
    return any(
        isinstance(c, str)
        for key in ("seen", "absent")
        if isinstance(spec.get(key), (list, tuple))
        for c in spec[key]
    )


def resolved_split_classes(
    spec: Mapping[str, Any], class_names: Sequence[str] | None
) -> tuple[list[int] | None, list[int] | None]:
    """``split.seen`` and ``split.absent`` with every class name replaced by its column index,
    in the order given (None stays None): what a run given the indices would have said.

    Raises:
        ConfigError: a name that is not one of ``class_names`` (did-you-mean), or names
            without ``class_names``; naming ``split.seen`` or ``split.absent``.
    """
    out = []
    for key in ("seen", "absent"):
        value = spec.get(key)
        if value is None:
            out.append(None)
            continue
        try:
            out.append(list(class_ids(value, class_names, f"split.{key}")))
        except (TypeError, ValueError) as err:
            raise ConfigError(str(err)) from None
    return out[0], out[1]


def _n_seen(spec: Mapping[str, Any], num_classes: int) -> int:
    n_seen, fraction = spec.get("n_seen"), spec.get("seen_fraction")
    if (n_seen is None) == (fraction is None):
        raise ConfigError(
            "split.kind=random takes exactly one of split.n_seen, split.seen_fraction"
        )
    if n_seen is not None:
        return int(n_seen)
    if not 0 < fraction < 1:
        raise ConfigError(f"split.seen_fraction must be in (0, 1), got {fraction!r}")
    return max(1, int(fraction * num_classes))


def build_train_config(
    section: Mapping[str, Any],
    *,
    optimizer: Mapping[str, Any] | None,
    scheduler: Mapping[str, Any] | None,
    seed: int,
    key: str,
) -> TrainConfig:
    """A :class:`~calib.train.TrainConfig` from a training section plus optimizer/scheduler groups.

    With ``optimizer`` given (fine-tuning), the optimizer's lr and head lr (its registry
    defaults where the group leaves them null) are multiplied by the section's ``lr_scale``;
    without it (source training) the section names its own optimizer (``source_train.optimizer``,
    ``lr``, ``lr_head``, ``weight_decay``, ``momentum``, ``nesterov``, ``optimizer_kwargs``).

    One rule for the optimizer's settings, in both sections: null is the chosen optimizer's own
    default (:data:`calib.train.OPTIMIZERS`), so the shipped configs, which leave every
    optimizer-specific key null, run with any optimizer; a value that is set and that the chosen
    optimizer does not take (``momentum`` for adam, ``nesterov`` for rmsprop, a kwarg its
    constructor lacks) is refused, naming the key, the optimizer and what it takes.

    Raises:
        ConfigError: a bad value or an argument the optimizer does not take, naming the key.
    """
    s = dict(section)
    lr_scale = s.pop("lr_scale", 1.0)
    s.pop("method", None), s.pop("method_options", None)  # how to train: build_method
    if optimizer is not None:
        opt = dict(optimizer)
        s.update(
            optimizer=opt.get("name"),
            lr=opt.get("lr"),
            lr_head=opt.get("lr_head"),
            weight_decay=opt.get("weight_decay"),
            momentum=opt.get("momentum"),
            optimizer_kwargs=dict(opt.get("kwargs") or {}),
        )
        names = {"optimizer": "optimizer", "momentum": "optimizer.momentum"}
        kwargs_key = "optimizer.kwargs"
    else:
        kwargs = dict(s.pop("optimizer_kwargs", None) or {})
        nesterov = s.pop("nesterov", None)
        if nesterov is not None:
            kwargs["nesterov"] = nesterov
        s["optimizer_kwargs"] = kwargs
        names = {
            "optimizer": f"{key}.optimizer",
            "momentum": f"{key}.momentum",
            "nesterov": f"{key}.nesterov",
        }
        kwargs_key = f"{key}.optimizer_kwargs"
    _refuse_untaken_arguments(s, names, kwargs_key)
    if scheduler is not None:
        s["scheduler"] = scheduler.get("name", "cosine")
        s["warmup_iters"] = int(scheduler.get("warmup_iters", 0) or 0)
        if scheduler.get("min_lr") is not None:
            s["min_lr"] = scheduler["min_lr"]
    s.setdefault("seed", seed)
    cfg = wrap(key, lambda: TrainConfig(**s))
    return cfg if lr_scale == 1.0 else wrap(key, lambda: _scaled(cfg, float(lr_scale)))


def _refuse_untaken_arguments(
    settings: Mapping[str, Any], names: Mapping[str, str], kwargs_key: str
) -> None:
    """Refuse a set ``momentum`` or optimizer kwarg that the chosen optimizer does not take.

    ``names`` maps ``optimizer``, ``momentum`` (and ``nesterov`` where it has a key of its own)
    to their config keys; the other kwargs are named ``<kwargs_key>.<argument>``.
    """
    from calib.train.optim import OPTIMIZERS, describe_arguments, refused_arguments

    name = settings.get("optimizer", "sgd")
    kwargs = settings.get("optimizer_kwargs")
    if not isinstance(name, str) or name not in OPTIMIZERS or not isinstance(kwargs, Mapping):
        return  # TrainConfig names the bad value
    momentum = settings.get("momentum")
    refused = refused_arguments(name, momentum=momentum, kwargs=kwargs)
    if not refused:
        return
    arg = refused[0]
    value = momentum if arg == "momentum" else kwargs[arg]
    if arg in names:
        key, remedy = names[arg], f"set {names[arg]}=null (the optimizer's own default)"
    else:
        key = f"{kwargs_key}.{arg}"
        remedy = f"remove it (~{key})"
    raise ConfigError(
        f"{key}={value!r}: {names['optimizer']}={name} takes no {arg}; it takes "
        f"{describe_arguments(name)}; {remedy}"
    )


def _scaled(cfg: TrainConfig, scale: float) -> TrainConfig:
    with_scale = getattr(cfg, "with_lr_scale", None)
    if callable(with_scale):
        return with_scale(scale)
    from calib.train.optim import OPTIMIZERS

    spec = OPTIMIZERS.get(cfg.optimizer)
    lr = spec.lr if cfg.lr is None else cfg.lr
    lr_head = cfg.lr_head if cfg.lr_head is not None else (getattr(spec, "lr_head", None) or lr)
    return dataclasses.replace(cfg, lr=lr * scale, lr_head=lr_head * scale)


def build_method(section: Mapping[str, Any]) -> MethodConfig:
    """The fine-tuning method from ``finetune.method`` and ``finetune.method_options``."""
    options = dict(section.get("method_options") or {})
    return wrap(
        "finetune.method",
        lambda: MethodConfig(name=section.get("method", "full"), params=options),
    )


def _override(cfg: TrainConfig, override: Mapping[str, Any]) -> TrainConfig:
    """``cfg`` with some fields replaced; another optimizer starts from its own defaults."""
    fields = dataclasses.asdict(cfg)
    if "optimizer" in override and override["optimizer"] != cfg.optimizer:
        fields.update(lr=None, lr_head=None, weight_decay=None, momentum=None, optimizer_kwargs={})
    fields.update(override)
    return TrainConfig(**fields)


def build_calibration(
    spec: Mapping[str, Any], finetune: TrainConfig, seed: int
) -> CalibrationConfig:
    spec = dict(spec)
    pcv_spec = spec.pop("pcv", None)
    pcv = None
    if pcv_spec is not None:
        pcv_spec = dict(pcv_spec)
        ft_override = pcv_spec.pop("finetune", None)
        pcv_ft = None
        if ft_override:
            pcv_ft = wrap("calibration.pcv.finetune", lambda: _override(finetune, ft_override))
        pcv_spec.setdefault("seed", seed)
        pcv = wrap("calibration.pcv", lambda: PCVConfig(**pcv_spec, finetune=pcv_ft))
    options = {k: dict(v or {}) for k, v in (spec.pop("options", None) or {}).items()}
    return wrap("calibration", lambda: CalibrationConfig(**spec, options=options, pcv=pcv))
