#!/usr/bin/env bash
# Run every setting of one of the paper's benchmarks as one Hydra multirun, then print the
# paper-style table (per setting and averaged). See README.md.
#
#   benchmarks/paper/run.sh BENCHMARK ROOT [calib-run overrides...]
#
#   BENCHMARK  office_home | imagenet_r | imagenet_s | vtab
#   ROOT       the dataset on disk: Office-Home's folder (Art/ Clipart/ ...), the folder holding
#              imagenet-r/ (resp. imagenet-s/), or the VTAB-1k folder holding one folder per task
#
# Runs land in $CALIB_PAPER_DIR/BENCHMARK/<experiment name>/<overrides> (default
# multirun/paper/...); rerunning the same command resumes killed runs and skips finished ones.
# $PYTHON (default: python) must have calib installed.
set -euo pipefail

usage="usage: $0 office_home|imagenet_r|imagenet_s|vtab ROOT [calib-run overrides...]"
benchmark=${1:?$usage}
root=${2:?$usage}
shift 2

case $benchmark in
  office_home)
    experiments=office_home_ar_cl,office_home_ar_pr,office_home_ar_rw,office_home_rw_ar,office_home_rw_cl,office_home_rw_pr
    root_var=OFFICE_HOME_ROOT ;;
  imagenet_r)
    experiments=imagenet_r
    root_var=IMAGENET_R_ROOT ;;
  imagenet_s)
    experiments=imagenet_s
    root_var=IMAGENET_S_ROOT ;;
  vtab)
    experiments=vtab_caltech101,vtab_cifar100,vtab_dtd,vtab_flowers102,vtab_pets,vtab_svhn,vtab_eurosat,vtab_resisc45
    root_var=VTAB_ROOT ;;
  *)
    echo "$usage" >&2
    exit 2 ;;
esac

python=${PYTHON:-python}
out=${CALIB_PAPER_DIR:-multirun/paper}/$benchmark

# The dataset yaml reads its root from this variable: a `dataset.root=...` override would not
# compose in a multirun over experiments (Hydra builds the sweep's base config from the default
# experiment, which has no such key) and would end up in every run's folder name.
export "$root_var=$root"

# One folder per setting: <experiment name>/<extra overrides, or `defaults`>.
"$python" -m calib.experiments.run -m "experiment=$experiments" "hydra.sweep.dir=$out" "$@"

"$python" -m calib.experiments.collate "$out" --paper
