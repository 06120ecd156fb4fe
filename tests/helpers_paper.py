"""Shared by the paper-benchmark tests: compose an experiment, point it at a fake root, shrink it."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from calib.data import ClassSplit, FakeRoot

CONF = Path(__file__).resolve().parent.parent / "conf"

#: Overrides that turn a benchmark experiment into its smoke version (CPU, seconds).
SMOKE = [
    "progress=false",
    "device=cpu",
    "dataset.size=16",  # the smoke CNN takes any size >= 4; 16 px keeps a 1000-class run short
    "finetune.epochs=1",
    "finetune.iters_per_epoch=2",
    "finetune.batch_size=4",
    "finetune.num_workers=0",
    "source_train.epochs=1",
    "source_train.iters_per_epoch=2",
    "source_train.batch_size=4",
    "source_train.num_workers=0",
    "scheduler.warmup_iters=0",
    "eval.batch_size=64",
    "eval.num_workers=0",
    "eval.every_epochs=0",  # the per-epoch evaluation is smoke-tested on one benchmark alone
    "eval.figures=false",  # so are the figures
    "calibration.pcv.num_splits=2",
]


def experiment_names() -> list[str]:
    """Every experiment under conf/experiment, by file stem."""
    return sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def benchmark_kind(experiment: str) -> str | None:
    """The fake-root kind an experiment reads (None: needs no dataset on disk)."""
    for kind in ("office_home", "imagenet_r", "imagenet_s", "vtab"):
        if experiment.startswith(kind):
            return kind
    return None


def compose_config(experiment: str, overrides: list[str] = ()) -> DictConfig:
    """The config of `calib-run experiment=NAME OVERRIDES...`, unresolved."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"experiment={experiment}", *overrides])


def compose_experiment(experiment: str, overrides: list[str] = ()) -> dict:
    """The resolved config of `calib-run experiment=NAME OVERRIDES...`, as a plain dict."""
    return OmegaConf.to_container(compose_config(experiment, overrides), resolve=True)


def benchmark_classes(kind: str) -> list[int]:
    """Every class of the paper's split S ∪ U (Office-Home: all 65)."""
    if kind == "office_home":
        return list(range(65))
    split = ClassSplit.from_benchmark(kind)
    return sorted(set(split.seen) | set(split.absent))


def fake_overrides(fake: FakeRoot) -> list[str]:
    """Point an experiment at a fake root and give it a tiny random-init backbone."""
    if fake.kind == "vtab":
        return [f"dataset.root={fake.root}", "model=tiny_clip", "dataset.size=32"]  # its patches
    return [f"dataset.root={fake.root}", f"dataset.list_dir={fake.list_dir}", "model=smoke_cnn"]
