"""`calib-run`: the Hydra entry point of the main job.

    calib-run                                   # the offline digits demo
    calib-run experiment=office_home_ar_cl dataset.root=/data/office_home
    calib-run -m optimizer=sgd,adam,adamw,adabelief,adadelta,adagrad,rmsprop

All the work happens in the library (:func:`calib.config.build_plan`, :mod:`calib.pipeline`);
this file only hands it the composed config and the run directory.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from calib.config import ConfigError, build_plan
from calib.data import DatasetNotFoundError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

log = logging.getLogger("calib-run")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def app(cfg: DictConfig) -> float | None:
    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    run_dir = cfg_dict.pop("run_dir", None) or HydraConfig.get().runtime.output_dir
    try:
        plan = build_plan(cfg_dict, run_dir=run_dir)
    except (ConfigError, DatasetNotFoundError) as err:
        log.error("%s", err)
        sys.exit(2)
    results = plan.run()
    log.info("results written to %s", plan.run_dir)
    # a sweeper may optimise this: AUSUC of the fine-tuned model
    return results["finetuned"].get("ausuc")


def main() -> None:
    if not CONF_DIR.is_dir():
        sys.exit(
            f"calib-run: config folder {CONF_DIR} not found; install calib from a clone with `pip install -e .`"
        )
    app()


if __name__ == "__main__":
    main()
