"""`calib-run`: the Hydra entry point of the main job.

    calib-run                                   # the offline digits demo
    calib-run experiment=office_home_ar_cl dataset.root=/data/office_home
    calib-run -m optimizer=sgd,adam,adamw,adabelief,adadelta,adagrad,rmsprop
    torchrun --nproc_per_node 4 -m calib.experiments.run experiment=imagenet_r   # one run, 4 GPUs

All the work happens in the library (:func:`calib.run.build_plan`, :mod:`calib.run.pipeline`);
this file only hands it the composed config and the run directory. torch and the rest of
calib are imported when a run starts, so ``--help`` and tab completion answer at once.

Run folders: ``outputs/<name>/<overrides>`` (``defaults`` without overrides), never one inside
another; ``run_dir=PATH`` replaces the whole folder (Hydra's log and config record go there
too). Under ``torchrun`` every rank composes the same config and gets the same run directory;
rank 0 alone writes Hydra's ``.hydra/`` record, each other rank logs to its own
``<job>_rank<r>.log``. A SLURM job of several tasks started by the submitit launcher
(``hydra/launcher=slurm`` with ``tasks_per_node > 1``) gets the variables torchrun would set.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from calib.launch import launch_env

#: The config tree: ``conf/`` beside ``experiments/`` in a clone; in an installed wheel both ship
#: inside the package (``calib/conf``, ``calib/experiments``), so the same relative path holds.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

log = logging.getLogger("calib-run")


def folder_name(overrides: str | None) -> str:
    """A run's folder name from Hydra's ``override_dirname``: ``defaults`` when there are no
    overrides, and no path separator (a value such as a weights path must not nest folders).

    A separator is written ``%2F`` and a ``%`` itself ``%25`` (percent-encoding): the name stays
    ASCII a user can type, and two different override strings never share a folder.
    """
    name = (overrides or "defaults").replace("%", "%25").replace("/", "%2F")
    return name.replace(os.sep, "%2F")


def run_folder(run_dir: str | None, base: str, overrides: str | None) -> str:
    """``run_dir`` when given, else ``<base>/<folder_name(overrides)>``."""
    return run_dir if run_dir else f"{base}/{folder_name(overrides)}"


def config_listing(*, _root_: DictConfig) -> str:
    """``--help``'s config listing (``${calib_config_help:}`` in conf/hydra/help/calib.yaml):
    the composed config, every key followed by its description (:mod:`calib.run.schema`)."""
    from calib.run.schema import config_help  # no torch

    cfg = OmegaConf.to_container(_root_, resolve=False)
    cfg.pop("hydra", None)
    return config_help(cfg).replace("$", "$$")  # Hydra fills the help in as a string.Template


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("calib_folder"):
        OmegaConf.register_new_resolver("calib_folder", folder_name)
        OmegaConf.register_new_resolver("calib_run_dir", run_folder)
        OmegaConf.register_new_resolver("calib_config_help", config_listing)


_register_resolvers()  # before Hydra composes; also for the compose API (tests, notebooks)


def slurm_task_env() -> dict[str, str]:
    """The torchrun variables for a task of a multi-task SLURM job started by submitit.

    Empty unless submitit runs this process (``SUBMITIT_EXECUTOR=slurm``) in a job of several
    tasks and torchrun's variables are unset. Rank, world size and local rank come from SLURM;
    the master is the job's first node, on a port derived from the job id (submitit's rule).
    """
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or "RANK" in os.environ:
        return {}
    if int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return {}
    from submitit.helpers import TorchDistributedEnvironment  # the optional "slurm" extra

    job = TorchDistributedEnvironment()
    return {
        "MASTER_ADDR": job.master_addr,
        "MASTER_PORT": str(job.master_port),
        "RANK": str(job.rank),
        "WORLD_SIZE": str(job.world_size),
        "LOCAL_RANK": str(job.local_rank),
        "LOCAL_WORLD_SIZE": str(job.local_world_size),
    }


def _fail(message: str) -> None:
    log.error("%s", message)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def app(cfg: DictConfig) -> float | None:
    os.environ.update(slurm_task_env())
    try:
        cfg_dict = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as err:  # a `???` the experiment leaves to the command line
        _fail(f"config value {err.full_key} is required: set it on the command line")
    hydra_cfg = HydraConfig.get()
    run_dir = cfg_dict.pop("run_dir", None)
    if run_dir and hydra_cfg.mode == RunMode.MULTIRUN:
        _fail("run_dir names the folder of one run; a sweep names its folders by hydra.sweep.dir")
    run_dir = run_dir or hydra_cfg.runtime.output_dir
    from calib.run.schema import ConfigError, check_config  # no torch: a typo fails at once

    try:
        check_config(cfg_dict)
    except ConfigError as err:
        _fail(str(err))

    # the heavy part (torch, the data sets, the models) loads only now
    from calib.data import DatasetNotFoundError
    from calib.run import StaleRunError, build_plan
    from calib.train import ConfigMismatchError

    if cfg_dict.get("sequence") is not None:  # a sequence of fine-tunings: one run per stage
        from calib.run.sequence_run import run_sequence

        try:
            run_sequence(cfg_dict, run_dir)
        except (ConfigError, DatasetNotFoundError, StaleRunError, ConfigMismatchError) as err:
            _fail(str(err))
        if launch_env().is_main:
            log.info("sequence written to %s (sequence.md, stages.png)", run_dir)
        return None

    try:
        # under torchrun the group is joined here, with the configured timeout (a rank may wait
        # at a barrier while rank 0 waits for a source model another job is training);
        # run_pipeline's distributed_context reuses it
        with process_group(cfg_dict):
            plan = build_plan(cfg_dict, run_dir=run_dir)
            overrides = folder_name(hydra_cfg.job.override_dirname).replace(",", ", ")
            plan.title = f"{plan.name}: {overrides}"
            results = plan.run()
    except (ConfigError, DatasetNotFoundError, StaleRunError, ConfigMismatchError) as err:
        _fail(str(err))
    if launch_env().is_main:
        log.info("results written to %s", plan.run_dir)
    # a sweeper may optimise this: AUSUC of the fine-tuned model
    return results["finetuned"].get("ausuc")


def process_group(cfg: dict):
    """:func:`calib.distributed.distributed_context` on the run's device, waiting at most
    ``dist_timeout_min`` minutes for the other ranks (a no-op in one process).

    Raises:
        ConfigError: ``device`` is not one this machine has (checked before joining).
    """
    import datetime

    from calib import distributed
    from calib.run.plan import COMPUTE_DEFAULTS, check_device

    device = str(cfg.get("device", "auto"))
    check_device(device)
    minutes = cfg.get("dist_timeout_min", COMPUTE_DEFAULTS["dist_timeout_min"])
    return distributed.distributed_context(device, timeout=datetime.timedelta(minutes=minutes))


def rank_overrides(environ: dict[str, str] | None = None) -> list[str]:
    """Hydra overrides added on ranks > 0 of a ``torchrun`` job (none otherwise).

    They change nothing in the run directory's name (Hydra overrides are not part of
    ``override_dirname``): rank 0 writes ``.hydra/``, the others skip it and log to their own file.
    """
    rank = launch_env(os.environ if environ is None else environ).rank
    if rank == 0:
        return []
    return [
        "hydra.output_subdir=null",
        "hydra.job_logging.handlers.file.filename="
        f"${{hydra.runtime.output_dir}}/${{hydra.job.name}}_rank{rank}.log",
    ]


def unknown_key_message(err: Exception) -> str | None:
    """calib's own "did you mean" for an override Hydra refused because the key is unknown.

    Hydra answers ``finetune.epoch=3`` with "To append to your config use +finetune.epoch=3",
    the wrong advice for a typo; :func:`calib.run.schema.check_config` names the closest known
    key instead. ``None`` when ``err`` is not about an unknown key of a closed section.
    """
    match = re.search(r"Could not override '([^']+)'", str(err))
    if match is None:
        return None
    from calib.run.schema import ConfigError, check_config  # no torch

    *sections, leaf = match.group(1).split(".")
    probe: dict = {leaf: None}
    for section in reversed(sections):
        probe = {section: probe}
    try:
        check_config(probe)
    except ConfigError as config_err:
        if "unknown config key" in str(config_err):
            return str(config_err)
    return None


def error_line(err: BaseException) -> str | None:
    """One line for a user's mistake that Hydra or the file system reports, else ``None``.

    Covered: Hydra's own composition and override errors (with calib's did-you-mean for an
    unknown key first), and file-system errors (a read-only run folder, an output path below a
    file, a full disk), named with their path.
    """
    from hydra.errors import CompactHydraException

    if isinstance(err, CompactHydraException):
        hint = unknown_key_message(err)
        if hint is not None:
            return hint
        cause = f" ({err.__cause__})" if err.__cause__ is not None else ""
        text = f"{err}{cause}".split("Config search path:")[0]  # Hydra's internals, not the user's
        return " ".join(text.split())
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, OSError):
        # logging's dictConfig wraps the log file's OSError in a ValueError
        cause = cause.__cause__
    if isinstance(cause, OSError) and cause.filename is not None:
        reason = cause.strerror or str(cause)  # reading or writing: "Permission denied", ...
        return f"{cause.filename}: {reason}"
    if isinstance(cause, OSError) and str(cause).startswith("cannot "):  # calib.io's messages
        return str(cause)
    return None


def main() -> None:
    if not CONF_DIR.is_dir():
        sys.exit(f"calib-run: config folder {CONF_DIR} not found; reinstall calib")
    sys.argv.extend(rank_overrides())
    # Hydra would print its own (partial) traceback for every error; with HYDRA_FULL_ERROR the
    # errors reach this frame, and a user's mistake becomes one line (a bug keeps its traceback).
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        app()
    except Exception as err:
        line = error_line(err)
        if line is None:
            raise
        print(f"calib-run: {line}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
