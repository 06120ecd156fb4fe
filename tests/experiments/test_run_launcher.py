"""conf/hydra/launcher/slurm.yaml composes into the sbatch job Hydra's submitit launcher submits;
calib-run's rank handling keeps one run folder per command (torchrun, multi-task SLURM jobs)."""

from __future__ import annotations

import pytest

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the optional slurm extra")

import submitit  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.types import HydraContext  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from submitit.slurm.slurm import SlurmExecutor  # noqa: E402

from calib.distributed import launch_env  # noqa: E402
from experiments.run import CONF_DIR, rank_overrides, slurm_task_env  # noqa: E402


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


class _Submitted(Exception):
    """Raised instead of submitting: carries the executor and the jobs' arguments."""


def _submission(monkeypatch, tmp_path, overrides: list[str], sweep: list[list[str]]):
    """Run the real SlurmLauncher.launch up to the submission; return (executor, sbatch, jobs)."""
    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # "srun exists"

    def submit(executor, fn, *columns):
        raise _Submitted(executor, list(zip(*columns, strict=True)))

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", submit)
    cfg = _compose(["hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path}", *overrides])
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(
        hydra_context=HydraContext(config_loader=None, callbacks=None),
        task_function=lambda _cfg: None,
        config=cfg,
    )
    with pytest.raises(_Submitted) as caught:
        launcher.launch(sweep, initial_job_idx=0)
    executor, jobs = caught.value.args
    sbatch = executor._executor._make_submission_file_text("python job.py", "uid")
    header = {
        line.split("=", 1)[0][len("#SBATCH ") :]: line.split("=", 1)[1]
        for line in sbatch.splitlines()
        if line.startswith("#SBATCH --") and "=" in line
    }
    return executor, header, jobs


def test_slurm_sweep_config_becomes_a_job_array_with_our_resources(monkeypatch, tmp_path):
    executor, header, jobs = _submission(
        monkeypatch,
        tmp_path,
        ["hydra.launcher.partition=gpu"],
        [["optimizer=sgd"], ["optimizer=adam"]],
    )
    assert header["--partition"] == "gpu"
    assert header["--time"] == "720"
    assert header["--gpus-per-node"] == "1" and header["--ntasks-per-node"] == "1"
    assert header["--cpus-per-task"] == "8" and header["--mem"] == "48GB"
    assert header["--job-name"] == "calib-digits_demo"
    assert executor._executor.max_num_timeout == 3  # timeouts and preemptions are requeued
    assert [job[0] for job in jobs] == [["optimizer=sgd"], ["optimizer=adam"]]


def test_multi_gpu_runs_take_one_task_per_gpu(monkeypatch, tmp_path):
    gpus = ["hydra.launcher.gpus_per_node=4", "hydra.launcher.tasks_per_node=4"]
    _, header, _ = _submission(monkeypatch, tmp_path, gpus, [["seed=1"]])
    assert header["--gpus-per-node"] == "4" and header["--ntasks-per-node"] == "4"


def test_tasks_of_a_multi_task_slurm_job_get_torchrun_variables(monkeypatch):
    slurm = {
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_NTASKS": "8",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
    }
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    env = slurm_task_env()
    assert env["MASTER_ADDR"] == "gpu07" and 20000 <= int(env["MASTER_PORT"]) <= 60000
    ctx = launch_env(env)
    assert (ctx.rank, ctx.world_size, ctx.local_rank) == (5, 8, 1)
    assert env["LOCAL_WORLD_SIZE"] == "4"

    monkeypatch.setenv("SLURM_NTASKS", "1")  # one task: one process, nothing to join
    assert slurm_task_env() == {}
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("RANK", "5")  # torchrun inside the job already set them
    assert slurm_task_env() == {}
    monkeypatch.delenv("SUBMITIT_EXECUTOR")
    monkeypatch.delenv("RANK")
    assert slurm_task_env() == {}  # not a submitit job


def test_ranks_above_zero_keep_the_run_folder_but_not_its_records():
    assert rank_overrides({}) == []
    assert rank_overrides({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}) == []
    extra = rank_overrides({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    task = ["finetune.epochs=2", "seed=3"]
    main, other = _compose(task), _compose(task + extra)
    # the run folder is named by the task overrides only (hydra.job.override_dirname)
    assert list(other.hydra.overrides.task) == list(main.hydra.overrides.task) == task
    assert main.hydra.output_subdir == ".hydra" and other.hydra.output_subdir is None
    handler = OmegaConf.to_container(other.hydra.job_logging.handlers.file, resolve=False)
    assert handler["filename"] == "${hydra.runtime.output_dir}/${hydra.job.name}_rank1.log"
