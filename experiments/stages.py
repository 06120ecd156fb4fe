"""A sequence of fine-tunings from the command line (:mod:`calib.run.sequence_run`).

    python -m calib.experiments.stages experiment=digits_stages
    python -m calib.experiments.stages experiment=digits_stages 'sequence.stages=[[0,1],[0,1,2,3]]'

The config is ``calib-run``'s (the same groups, overrides and run folders) plus
``sequence.stages``; each stage is an ordinary run in ``<run folder>/stage_<k>/`` and the
sequence is collated in ``sequence.md``, ``sequence.json`` and ``stages.png`` there. Rerunning
the same command resumes it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from calib.experiments.run import CONF_DIR, _fail, error_line, rank_overrides
from calib.launch import launch_env


def run_sequence_config(cfg_dict: dict[str, Any], run_dir: str) -> dict[str, Any] | None:
    """Run the sequence of a composed config (``run_dir`` removed); a user's mistake exits
    with one line."""
    from calib.data import DatasetNotFoundError
    from calib.run import StaleRunError
    from calib.run.schema import ConfigError
    from calib.run.sequence_run import SEQUENCE_KEY, run_sequence
    from calib.train import ConfigMismatchError

    if cfg_dict.get(SEQUENCE_KEY) is None:
        _fail(
            f"{SEQUENCE_KEY}.stages is not set: name the stages' classes "
            "(e.g. experiment=digits_stages), or use calib-run for one run"
        )
    try:
        out = run_sequence(cfg_dict, run_dir)
    except (ConfigError, DatasetNotFoundError, StaleRunError, ConfigMismatchError) as err:
        _fail(str(err))
    if launch_env().is_main:
        print(f"sequence written to {run_dir} (sequence.md, stages.png)")
    return out


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def app(cfg: DictConfig) -> None:
    try:
        cfg_dict = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as err:
        _fail(f"config value {err.full_key} is required: set it on the command line")
    hydra_cfg = HydraConfig.get()
    run_dir = cfg_dict.pop("run_dir", None)
    if run_dir and hydra_cfg.mode == RunMode.MULTIRUN:
        _fail(
            "run_dir names the folder of one sequence; a sweep names its folders by hydra.sweep.dir"
        )
    run_sequence_config(cfg_dict, run_dir or hydra_cfg.runtime.output_dir)


def main() -> None:
    if not CONF_DIR.is_dir():
        sys.exit(f"calib stages: config folder {CONF_DIR} not found; reinstall calib")
    sys.argv.extend(rank_overrides())
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        app()
    except Exception as err:
        line = error_line(err)
        if line is None:
            raise
        print(f"calib stages: {line}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
